"""The pre-commit hook and the GitHub workflow this repository ships run `seq check` on the specs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

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


def test_pre_commit_accepts_the_manifest():
    """pre-commit's own schema check of .pre-commit-hooks.yaml (pre-commit is in the test extra)."""
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", ".pre-commit-hooks.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
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


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_readme_pre_commit_snippet_is_a_valid_config_that_runs_seq_check(tmp_path):
    (snippet,) = [block for block in readme_blocks("yaml") if "repos:" in block]
    (tmp_path / ".pre-commit-config.yaml").write_text(snippet)
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", ".pre-commit-config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (hook,) = yaml.safe_load(snippet)["repos"][0]["hooks"]
    (shipped,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert (hook["entry"], hook["files"], hook["types"]) == (shipped["entry"], shipped["files"], shipped["types"])


def test_the_readme_workflow_snippet_is_the_shipped_workflow():
    (snippet,) = [block for block in readme_blocks("yaml") if "runs-on:" in block]
    readme = [step.get("run") for step in yaml.safe_load(snippet)["jobs"]["specs"]["steps"]]
    shipped = yaml.safe_load((ROOT / ".github" / "workflows" / "check.yml").read_text())
    assert readme == [step.get("run") for step in shipped["jobs"]["specs"]["steps"]]
    assert "pip install -e ." in readme


def test_ci_runs_the_readme_test_command_and_the_workflow_runs_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    (first_commands,) = readme_blocks("bash")[:1]
    test_command = first_commands.splitlines()[1].split("#")[0].split("&&")[1].strip()
    assert test_command == "python -m pytest" and ci.rstrip().endswith(test_command)
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert "bash .ci/run" in [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]]


def test_ci_and_pre_commit_type_check_the_package():
    """mypy at zero errors is a rail: CI runs it before the tests, pre-commit on every commit, with the
    configuration and the checker the test extra installs."""
    ci = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci.index("python -m mypy") < ci.index("python -m pytest")
    hooks = {hook["id"]: hook for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
             for hook in repo["hooks"]}  # fmt: skip
    assert hooks["mypy"]["entry"].startswith("python -m mypy") and hooks["mypy"]["pass_filenames"] is False
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+; seq supports 3.10
    assert "[tool.mypy]\n" in pyproject and '\nfiles = ["seqcli"]\n' in pyproject
    assert re.search(r'^test = \[[^]]*\n    "mypy>=', pyproject, re.MULTILINE)


def test_no_tracked_file_holds_a_merge_conflict_marker():
    """A conflict resolved in code but not in a document still ships; git knows which files it tracks."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    marker = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".json"} and path.is_file():
            if marker.search(path.read_text(errors="replace")):
                found.append(name)
    assert not found, f"merge conflict markers in: {found}"
