"""Where a command's time goes: seq's stage timer (``seqcli.stages``), the hook benches use instead of patching
seq's functions, reported by ``SEQ_PROFILE`` for a whole command."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

from click.testing import CliRunner

from seqcli import stages
from seqcli.cli import cli
from tests.conftest import write_tiny_project

BENCH = Path(__file__).resolve().parents[1] / "bench"
# What a run's profile names, whichever thread ran it: the fit, the checkpoint (copy, then write), the results.
RUN_STAGES = {
    "training: fit",
    "checkpoint: copy the variables",
    "checkpoint: write",
    "results: save the model",
    "results: write the history",
}


def train(tmp_path: Path, env: dict):
    spec = write_tiny_project(tmp_path, epochs=1, samples=32)
    runner = CliRunner(env={"COLUMNS": "120", **env})
    return runner.invoke(cli, ["train", str(spec), "--output", str(tmp_path / "run"), "--quiet"])


def test_seq_profile_writes_each_stage_of_a_run_and_the_command_wall_time(tmp_path):
    profile = tmp_path / "profile.json"
    result = train(tmp_path, {"SEQ_PROFILE": str(profile)})
    assert result.exit_code == 0, result.output
    found = json.loads(profile.read_text())
    assert RUN_STAGES <= set(found["stages"]), found["stages"]
    assert found["stages"]["training: fit"]["threads"] == ["MainThread"]
    assert any(name.startswith("seq-writer") for name in found["stages"]["checkpoint: write"]["threads"])
    assert 0 < found["stages"]["training: fit"]["seconds"] < found["wall_seconds"]
    assert result.stderr == ""


def test_seq_profile_prints_a_table_on_stderr(tmp_path):
    shown = train(tmp_path, {"SEQ_PROFILE": "1"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stderr.splitlines()
    assert lines[0].split() == ["stage", "seconds", "calls", "thread"]
    assert any(line.startswith("training: fit") for line in lines)
    assert lines[-1].startswith("the whole command (wall)")


def test_a_profile_seq_cannot_write_is_a_note_and_the_command_stands(tmp_path):
    target = tmp_path / "missing" / "profile.json"
    result = CliRunner(env={"SEQ_PROFILE": str(target)}).invoke(cli, ["schema"])
    assert result.exit_code == 0 and result.stdout.startswith("{")
    assert result.stderr.startswith("note: SEQ_PROFILE: cannot write ") and not target.parent.exists()


def test_a_listener_hears_stages_from_every_thread_only_while_it_listens():
    totals, heard = stages.StageTotals(), []
    with stages.listen(totals), stages.listen(heard.append):
        with stages.stage("here"):
            pass
        helper = threading.Thread(target=stages.stage("there")(lambda: None))  # a stage is a decorator too
        helper.start()
        helper.join()
    with stages.stage("unheard"):
        pass
    assert [record.name for record in heard] == ["here", "there"]
    assert heard[0].thread == "MainThread" and heard[1].thread == helper.name
    assert totals.as_dict()["here"]["calls"] == 1 and "unheard" not in totals.as_dict()


def test_benches_time_seq_through_its_hook_never_by_patching_it():
    """No bench assigns to an attribute of a seqcli module or class, calls setattr, or imports a private name."""
    found = []
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        seqcli_names = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and (getattr(node, "module", None) or node.names[0].name).startswith("seqcli")
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(target, ast.Attribute) and isinstance(root, ast.Name) and root.id in seqcli_names:
                    found.append(f"{path.name}:{node.lineno}: assigns {ast.unparse(target)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                found.append(f"{path.name}:{node.lineno}: setattr")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seqcli"):
                found += [f"{path.name}:{node.lineno}: imports {a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, "\n".join(found)
