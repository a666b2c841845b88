"""seqcli.training.rundir: the one run-directory layout. Where each file lives, when a folder holds a run
or its results, how far a run got, and that creating it proves the folder writable."""

import pytest

from seqcli.outputs import read_manifest
from seqcli.training import RunDirectory
from seqcli.training.checkpoint import read_state
from seqcli.training.rundir import RunDirectoryError


def test_the_layout(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert [
        p.relative_to(tmp_path).as_posix()
        for p in (run.model, run.spec, run.history, run.metrics, run.curves, run.checkpoint, run.best, run.logs)
    ] == [
        "run/model.keras",
        "run/spec.yaml",
        "run/history.csv",
        "run/metrics.json",
        "run/curves.png",
        "run/checkpoints/last.npz",
        "run/checkpoints/best.npz",
        "run/logs",
    ]


def test_an_empty_folder_holds_no_run_and_a_model_makes_one(tmp_path):
    run = RunDirectory(str(tmp_path))
    assert not run.holds_run() and not run.has_results() and run.files() == []
    run.model.write_text("m")
    assert run.holds_run() and not run.has_results() and run.describe() == "model.keras"
    for path in (run.spec, run.history, run.metrics):
        path.write_text("x")
    assert run.has_results() and [p.name for p in run.files()] == [
        "model.keras",
        "spec.yaml",
        "history.csv",
        "metrics.json",
    ]


def test_a_finished_run_describes_itself_from_its_checkpoint(trained):
    run = RunDirectory(trained / "run")
    assert read_state(run.checkpoint).finished and run.describe() == "finished"
    assert run.has_results() and run.curves in run.files()
    manifest = read_manifest(run.path)
    assert {m.rstrip("/") for m in RunDirectory.MEMBERS if (run.path / m).exists()} <= set(manifest.members)
    assert manifest.writing is None and manifest.members["model.keras"].size == run.model.stat().st_size
    assert any(path.startswith("logs/train/events.out.tfevents.") for path in manifest.members)


def test_create_proves_the_folder_writable_and_claim_records_the_members(tmp_path):
    run = RunDirectory(tmp_path / "a" / "run")
    run.create()
    assert run.path.is_dir() and [p.name for p in run.path.iterdir()] == []
    run.claim()
    assert list(read_manifest(run.path).members) == [m.rstrip("/") for m in RunDirectory.MEMBERS]
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirectoryError, match="it is a file"):
        RunDirectory(tmp_path / "file").create()


def test_remove_run_removes_only_the_members(tmp_path):
    run = RunDirectory(tmp_path)
    run.claim()
    run.model.write_text("m")
    run.remove_run()
    assert not run.model.exists()
