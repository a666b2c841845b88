"""The pre-commit hook and the GitHub workflow this repository ships run `seq check` on the specs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import yaml

from tests.conftest import ROOT, SPECS


def test_the_pre_commit_hook_checks_spec_files():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "seq-check" and hook["entry"] == "seq check" and hook["language"] == "python"
    pattern = re.compile(hook["files"])
    assert all(pattern.search(f"specs/{p.name}") for p in SPECS.glob("*.yaml"))
    assert pattern.search("models/cnn.seq.yaml") and not pattern.search(".github/workflows/check.yml")


def test_the_workflow_runs_check_with_github_annotations():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "check.yml").read_text())
    commands = [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]]
    assert "seq check specs/*.yaml --format github" in commands


def test_pre_commit_accepts_the_manifest():
    """pre-commit's own schema check of .pre-commit-hooks.yaml (pre-commit is in the test extra)."""
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", ".pre-commit-hooks.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_hook_fails_a_commit_with_a_broken_spec(tmp_path):
    """What pre-commit runs: the hook's entry with the staged files its pattern selects."""
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "ok.yaml").write_text((SPECS / "three_layers.yaml").read_text())
    (tmp_path / "specs" / "bad.yaml").write_text("layers:\n  - Dense: {units: 2, activaton: relu}\n")
    (tmp_path / "notes.yaml").write_text("not: a spec\n")
    staged = ["specs/ok.yaml", "specs/bad.yaml", "notes.yaml"]
    selected = [name for name in staged if re.search(hook["files"], name)]
    assert selected == ["specs/ok.yaml", "specs/bad.yaml"]
    entry = [sys.executable, "-m", "seqcli", *shlex.split(hook["entry"])[1:]]
    result = subprocess.run([*entry, *selected], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "specs/bad.yaml:2:" in result.stdout + result.stderr
    assert subprocess.run([*entry, "specs/ok.yaml"], cwd=tmp_path, capture_output=True).returncode == 0
