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


def test_overwrite_takes_the_event_files_a_killed_run_made_before_it_could_claim_them(tmp_path):
    """kill -9 can land between TensorFlow creating an event file and the manifest claiming it: the file is
    named for its writer's host and PID, which the manifest's writing mark names, so it is that run's."""
    import socket
    import subprocess
    import sys

    from click.testing import CliRunner

    from seqcli.cli import cli
    from tests.conftest import write_tiny_project

    spec = write_tiny_project(tmp_path, epochs=1, samples=32)
    run = tmp_path / "run"
    assert CliRunner().invoke(cli, ["train", str(spec), "-o", str(run), "--quiet"]).exit_code == 0
    code = (  # a writer that marked the run as being written, then was gone
        "import os, pathlib\nfrom seqcli.manifest import open_writing\n"
        f"open_writing(pathlib.Path({str(run)!r}), 'seq train')\nprint(os.getpid())"
    )
    pid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    host = socket.gethostname()
    (run / "logs" / "train" / f"events.out.tfevents.1.{host}.{pid}.0.v2").write_bytes(b"the killed run's")
    user_file = run / "logs" / "train" / f"events.out.tfevents.1.{host}.{pid + 1}.0.v2"
    user_file.write_bytes(b"not that run's")
    refused = CliRunner().invoke(cli, ["train", str(spec), "-o", str(run), "--overwrite", "--quiet"])
    assert refused.exit_code == 1 and user_file.name in refused.stderr and f".{pid}.0.v2" not in refused.stderr
    user_file.unlink()
    replaced = CliRunner().invoke(cli, ["train", str(spec), "-o", str(run), "--overwrite", "--quiet"])
    assert replaced.exit_code == 0, replaced.output


def layout_names() -> set[str]:
    """Every file and folder name of a run's and a study's layout (``checkpoints/last.npz`` as both parts),
    less TensorBoard's split folders (``train``, ``validation``: words every data section uses too)."""
    from seqcli.tune.folder import StudyFolder

    members = (*RunDirectory.MEMBERS, *StudyFolder.MEMBERS)
    parts = {part for member in members for part in member.split("/") if part} - {"train", "validation"}
    return parts | {member.rstrip("/") for member in members} | {"phase1", "phase2"}


def test_the_layout_is_spelled_only_where_it_lives():
    """A run's and a study's file names appear as strings only in their homes (rundir.py, tune/folder.py);
    everywhere else reads them as properties, so the layout can change in one place. Docstrings and help text
    that mention a name are prose, not paths: only a string that is exactly a name counts."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "seqcli"
    homes = {package / "training" / "rundir.py", package / "tune" / "folder.py"}
    names = layout_names()
    texts = {path: path.read_text() for path in sorted(package.rglob("*.py")) if path not in homes}
    spelled = [
        f"{path.relative_to(package.parent)}:{node.lineno}: {node.value!r}"
        for path, text in texts.items()
        if any(name in text for name in names)  # parse only the files that mention a name
        for node in ast.walk(ast.parse(text, str(path)))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not spelled, "use RunDirectory's or StudyFolder's properties:\n  " + "\n  ".join(spelled)


def test_a_transfer_folder_holds_each_phase_as_a_run(tmp_path):
    transfer = RunDirectory(tmp_path / "transfer")
    assert transfer.phase(2) == RunDirectory(tmp_path / "transfer" / "phase2")
    assert transfer.phase(1).model == tmp_path / "transfer" / "phase1" / "model.keras"


def test_a_study_folder_layout(tmp_path):
    from seqcli.tune.folder import TRIAL_NAME, StudyFolder, trial_name

    study = StudyFolder(str(tmp_path))
    assert (study.trials, study.description, study.plot, study.best, study.database) == (
        tmp_path / "trials.csv",
        tmp_path / "study.json",
        tmp_path / "trials.png",
        tmp_path / "best.yaml",
        tmp_path / "study.db",
    )
    assert study.storage_url == f"sqlite:///{tmp_path.resolve() / 'study.db'}"
    assert trial_name(7) == "trial-0007" and TRIAL_NAME.fullmatch(trial_name(12345))
    assert study.trial(trial_name(7)) == RunDirectory(tmp_path / "trial-0007")
    assert not study.holds_study()
    study.trials.write_text("trial,state,value\n")
    assert study.holds_study()
