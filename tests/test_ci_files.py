"""The pre-commit hook and the GitHub workflow this repository ships run `seq check` on the specs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pre-commit") is None, reason="pre-commit is not installed")
def test_pre_commit_try_repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "ok.yaml").write_text((SPECS / "three_layers.yaml").read_text())
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    result = subprocess.run(["pre-commit", "try-repo", str(ROOT), "seq-check", "--all-files"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
