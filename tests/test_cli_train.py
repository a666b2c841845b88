"""`seq train`: the run directory, every problem before training, and never losing a run: kill -9,
SIGINT and SIGTERM, exact resume (on one device and on a mirrored strategy), a changed spec refused."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.training.checkpoint import read_state
from tests.conftest import SPECS, assert_same_checkpoint, snapshot, write_tiny_project
from tests.conftest import run_seq as run
from tests.conftest import seq_process as seq

RESUMABLE = "  checkpoint_every: 3\n"  # executions of 3 steps: checkpoints inside epochs
EPOCHS, SAMPLES = 10, 256  # 24 steps an epoch: long enough to be interrupted after the first checkpoint


def interrupt(args: list, cwd: Path, signum: int) -> subprocess.CompletedProcess:
    """Start `seq train`, send ``signum`` as soon as its first checkpoint exists, and wait for it."""
    output = Path(cwd) / args[args.index("--output") + 1]
    process = subprocess.Popen(
        [sys.executable, "-m", "seqcli", "train", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (output / "checkpoints" / "last.npz").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=240)
    state = read_state(output / "checkpoints" / "last.npz")
    assert not state.finished, "the run finished before the signal; make it longer"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def project(tmp_path):
    write_tiny_project(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the resumable spec: what every interrupted run must end up equal to."""
    directory = tmp_path_factory.mktemp("reference")
    write_tiny_project(directory, epochs=EPOCHS, extra=RESUMABLE, samples=SAMPLES)
    result = seq("train", "tiny.yaml", "--output", "run", "--quiet", cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory / "run"


# ----------------------------------------------------------------------------- a run


def test_train_writes_the_run_directory(project):
    result = run("train", project / "tiny.yaml", "--output", project / "run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Training", "tiny", "from", str(project / "tiny.yaml"), "→", str(project / "run")]
    assert any(line.startswith("Distribution  default; on ") and "global batch 8" in line for line in lines)
    assert [line.split()[:2] for line in lines if line.startswith("epoch ")] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert "Trained 2/2 epochs" in result.stdout
    names = sorted(p.name for p in (project / "run").iterdir())
    assert names == [
        ".seq-lock",
        ".seq-run.json",
        "checkpoints",
        "curves.png",
        "history.csv",
        "logs",
        "metrics.json",
        "model.keras",
        "spec.yaml",
    ]
    history = (project / "run" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy,seconds" and len(history) == 3
    metrics = json.loads((project / "run" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"} and metrics["seed"] == 3
    copy = (project / "run" / "spec.yaml").read_text()
    assert f"train: {project / 'tiny.npz'}" in copy and "shape: [4, 4, 1]" in copy
    assert (project / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert {p.name for p in (project / "run" / "logs").iterdir()} == {"train", "validation"}
    assert read_state(project / "run" / "checkpoints" / "last.npz").finished


def test_epochs_set_and_quiet(project):
    result = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--epochs",
        "1",
        "--set",
        "data.batch_size=16",
        "--quiet",
    )
    assert result.exit_code == 0 and result.output == ""
    state = read_state(project / "run" / "checkpoints" / "last.npz")
    assert (state.epoch, state.steps_per_epoch) == (1, 6)


def test_format_json_prints_the_final_metrics_alone_on_stdout(project):
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    recorded = json.loads((project / "run" / "metrics.json").read_text())
    assert report["metrics"] == pytest.approx(recorded["metrics"])
    assert set(report["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert (report["output"], report["epochs_done"], report["epochs"]) == (str(project / "run"), 1, 1)
    assert str(project / "run" / "model.keras") in report["files"]
    assert "epoch 1/1" in result.stderr  # the progress, off stdout
    quiet = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--format",
        "json",
        "--quiet",
        "--overwrite",
        "--epochs",
        "1",
    )
    assert quiet.exit_code == 0 and quiet.stderr == "" and json.loads(quiet.stdout)["epochs_done"] == 1


def test_early_stopping_restores_the_best_weights(project):
    result = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--epochs",
        "5",
        "--set",
        "train.early_stopping={monitor: val_loss, patience: 1, min_delta: 10, restore_best_weights: true}",
    )
    assert result.exit_code == 0, result.output
    assert "note: early stopping after epoch 2: val_loss has not improved for 1 epoch " in result.stdout
    assert "note: restored the weights of epoch 1, the best val_loss" in result.stdout
    assert "Trained 2/5 epochs" in result.stdout and "stopped early (best epoch 1)" in result.stdout
    first = (project / "run" / "history.csv").read_text().splitlines()[1].split(",")
    metrics = json.loads((project / "run" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["metrics"]["val_loss"] == pytest.approx(float(first[3]), 1e-5)
    evaluated = json.loads(run("evaluate", project / "run", "--format", "json").stdout)
    assert evaluated["metrics"]["loss"] == pytest.approx(float(first[3]), 1e-4)  # the saved model is epoch 1's
    again = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--resume",
        "--epochs",
        "5",
        "--set",
        "train.early_stopping={monitor: val_loss, patience: 1, min_delta: 10, restore_best_weights: true}",
    )
    assert again.exit_code == 0 and "is already complete (2 epochs)" in again.stdout


def test_logits_with_a_probability_loss_are_flagged(project):
    result = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--epochs",
        "1",
        "--set",
        "layers[3].Dense.activation=linear",
    )
    assert result.exit_code == 0
    assert (
        "warning: the last layer has no activation (it outputs logits), but loss 'sparse_categorical_"
        "crossentropy' expects probabilities; write 'loss: {SparseCategoricalCrossentropy: {from_logits: "
        "true}}'" in result.stdout
    )


def test_every_problem_is_reported_before_training(project):
    (project / "tiny.yaml").write_text(
        (project / "tiny.yaml")
        .read_text()
        .replace("shape: [4, 4, 1]", "shape: [8, 8, 1]")
        .replace("optimizer: {Adam:", "optimizer: {Adamm:")
        .replace("  seed: 3\n", "  seed: 3\n  early_stopping: {monitor: val_acc}\n")
    )
    result = run("train", project / "tiny.yaml", "--output", project / "run")
    assert result.exit_code == 1
    headlines = [line for line in result.stderr.splitlines() if line.startswith(str(project))]
    assert [line.split(": ")[1] for line in headlines] == [
        "compile.optimizer.Adamm",
        "train.early_stopping.monitor",
        "layers[0].Input.shape",
    ]
    assert "hint: did you mean 'val_accuracy'?" in result.stderr
    assert "but data.train's samples have shape (4, 4, 1)" in result.stderr
    assert not (project / "run").exists()


def test_a_bad_freeze_selector_is_reported_once(project):
    """The freeze: section is applied once, by the build: one problem, as seq check reports it."""
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--set", "freeze.layers=[nope*]")
    assert result.exit_code == 1
    assert result.stderr.count("'nope*' matches no layer") == 1, result.stderr
    check = run("check", project / "tiny.yaml")
    assert check.exit_code == 0
    assert not (project / "run").exists()


def test_a_loss_that_does_not_fit_the_labels(project):
    result = run(
        "train", project / "tiny.yaml", "--output", project / "run", "--set", "compile.loss=categorical_crossentropy"
    )
    assert result.exit_code == 1
    assert "compile.loss: the loss does not fit the data and model" in result.stderr
    assert "use 'sparse_categorical_crossentropy'" in result.stderr
    narrow = run("train", project / "tiny.yaml", "--output", project / "run", "--set", "layers[3].Dense.units=2")
    assert "data.train: label 2 of sample 0 is out of range: the model outputs 2 class scores" in narrow.stderr


def test_unwritable_output_is_reported_before_training(project):
    (project / "file").write_text("not a directory")
    result = seq("train", "tiny.yaml", "--output", "file/run", cwd=project)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot create the folder file for run: file is a file")
    assert "Training" not in result.stdout


def test_an_existing_run_is_kept_unless_asked(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0
    again = run("train", project / "tiny.yaml", "--output", project / "run")
    assert again.exit_code == 1
    assert f"error: {project / 'run'} already holds a run (finished)" in again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr
    assert run("train", project / "tiny.yaml", "--output", project / "run", "--overwrite", "-q").exit_code == 0
    complete = run("train", project / "tiny.yaml", "--output", project / "run", "--resume")
    assert complete.exit_code == 0 and "is already complete (2 epochs)" in complete.stdout


def test_resuming_a_changed_spec_is_refused(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0
    result = run(
        "train",
        project / "tiny.yaml",
        "--output",
        project / "run",
        "--resume",
        "--epochs",
        "3",
        "--set",
        "layers[3].Dense.activation=sigmoid",
    )
    assert result.exit_code == 1
    assert (
        "the spec changed since the checkpoint was written:\n  layers[3].Dense.activation: 'softmax' -> "
        "'sigmoid'" in result.stderr
    )
    assert "only train.epochs, train.checkpoint_every and distribute may change on resume" in result.stderr
    nothing = run("train", project / "tiny.yaml", "--output", project / "other", "--resume")
    assert nothing.exit_code == 1 and "nothing to resume" in nothing.stderr


def test_a_finished_run_gets_its_lost_files_back(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0
    before = json.loads((project / "run" / "metrics.json").read_text())
    for name in ("model.keras", "metrics.json", "history.csv"):
        (project / "run" / name).unlink()
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--resume")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert (
        f"note: {project / 'run'} had finished but lacked some of its files; wrote them again from "
        f"{project / 'run' / 'checkpoints' / 'last.npz'}" in text
    )
    assert "is already complete (2 epochs)" in text and "Training" not in text
    after = json.loads((project / "run" / "metrics.json").read_text())
    assert after["metrics"] == before["metrics"] and (project / "run" / "history.csv").exists()
    evaluated = json.loads(run("evaluate", project / "run", "--format", "json").stdout)
    assert evaluated["metrics"]["loss"] == pytest.approx(before["metrics"]["val_loss"], rel=1e-5)


def test_resuming_with_fewer_epochs_than_done_is_refused(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "3", "-q").exit_code == 0
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "2", "--resume")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot resume {project / 'run'} with train.epochs 2: the run stands at end of "
        "epoch 3/3, so it needs at least 3 epochs\n  hint: resume with --epochs 3 (or any "
        "number from 3), or start a new run with --overwrite or another --output\n"
    )
    assert "Trained" not in result.stdout


def test_bad_optimizer_arguments_are_reported_before_training(project):
    result = run(
        "train", project / "tiny.yaml", "--output", project / "run", "--set", "compile.optimizer={Adam: {beta_1: abc}}"
    )
    assert result.exit_code == 1
    assert (
        "compile.optimizer.Adam: Keras rejected Adam when applying it: Cast string to float is not supported. "
        "Received: beta_1='abc'" in result.stderr
    ), result.stderr
    assert "unexpected" not in result.stderr and not (project / "run").exists()
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0


def test_only_a_checkpoint_or_a_model_makes_a_run(project):
    from seqcli.training import RunDirectory

    (project / "run").mkdir()
    RunDirectory(project / "run").claim()
    (project / "run" / "spec.yaml").write_text("# left by a run that failed before its first step\n")
    result = run("train", project / "tiny.yaml", "--output", project / "run", "-q")
    assert result.exit_code == 0, result.output
    assert "seed: 3" in (project / "run" / "spec.yaml").read_text()


def test_the_spec_copy_repeats_the_run_from_anywhere(project, tmp_path):
    from seqcli.modelbuild import model_from_spec
    from seqcli.specfile import load_spec

    model_from_spec(load_spec(project / "tiny.yaml")).save_weights(project / "start.weights.h5")
    with open(project / "tiny.yaml", "a") as handle:
        handle.write("transfer:\n  weights: start.weights.h5\n")
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0
    copy = (project / "run" / "spec.yaml").read_text()
    assert f"weights: {(project / 'start.weights.h5').resolve()}" in copy
    refused = run("train", project / "run" / "spec.yaml", "--output", project / "again", "-q")
    assert refused.exit_code == 1 and "is an absolute path outside the spec's folder" in refused.stderr
    assert not (project / "again").exists()
    again = run("train", project / "run" / "spec.yaml", "--output", project / "again", "-q", "--allow-path", project)
    assert again.exit_code == 0, again.output
    assert_same_checkpoint(project / "run", project / "again")
    resumed = run(
        "train", project / "run" / "spec.yaml", "--output", project / "run", "--resume", "--allow-path", project
    )
    assert resumed.exit_code == 0 and "is already complete (2 epochs)" in resumed.stdout


def test_resuming_after_the_data_changed_is_refused(project):
    import numpy as np

    assert run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "-q").exit_code == 0
    with np.load(project / "tiny.npz") as archive:
        x, y = archive["x"], archive["y"]
    np.savez(project / "tiny.npz", x=x[::-1], y=y[::-1])
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--resume")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: cannot resume {project / 'run'}: a file the run reads changed since the "
        f"checkpoint was written: {(project / 'tiny.npz').resolve()} (same size, other "
        "contents)\n  hint: restore the file to resume"
    )
    np.savez(project / "tiny.npz", x=x, y=y)
    assert run("train", project / "tiny.yaml", "--output", project / "run", "--resume", "-q").exit_code == 0


def test_digits_spec_is_checked():
    result = run("check", SPECS / "digits.yaml")
    assert result.exit_code == 0


# ----------------------------------------------------------------------------- interruptions


@pytest.mark.slow
def test_kill_9_then_resume_takes_exactly_the_same_steps(reference, tmp_path):
    write_tiny_project(tmp_path, epochs=EPOCHS, extra=RESUMABLE, samples=SAMPLES)
    killed = interrupt(["tiny.yaml", "--output", "run", "--quiet"], tmp_path, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = seq("train", "tiny.yaml", "--output", "run", "--resume", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_checkpoint(reference, tmp_path / "run")
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == EPOCHS + 1


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_prints_the_resume_command(reference, tmp_path, monkeypatch):
    write_tiny_project(tmp_path, epochs=EPOCHS, extra=RESUMABLE, samples=SAMPLES)
    stopped = interrupt(["tiny.yaml", "--output", "run"], tmp_path, signal.SIGINT)
    assert stopped.returncode == 130
    assert f"interrupted: SIGINT: training stopped at epoch 1/{EPOCHS}, step" in stopped.stderr
    assert stopped.stderr.rstrip().endswith("resume with:\n  seq train tiny.yaml --output run --resume")
    assert "Traceback" not in stopped.stderr
    monkeypatch.chdir(tmp_path)  # the resume command is relative to where seq ran
    resumed = run("train", "tiny.yaml", "--output", "run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"(resuming at epoch 1/{EPOCHS}, step" in resumed.stdout
    assert_same_checkpoint(reference, tmp_path / "run")


@pytest.mark.slow
def test_sigterm_then_resume_on_two_devices(tmp_path):
    write_tiny_project(tmp_path, epochs=4, extra=RESUMABLE, samples=SAMPLES)
    stopped = interrupt(["tiny.yaml", "--output", "run", "--quiet"], tmp_path, signal.SIGTERM)
    assert stopped.returncode == 143 and "interrupted: SIGTERM" in stopped.stderr
    resumed = seq(
        "train",
        "tiny.yaml",
        "--output",
        "run",
        "--resume",
        "--strategy",
        "mirrored",
        "--virtual-cpus",
        "2",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Distribution  mirrored; on /device:CPU:0, /device:CPU:1; replicas 2" in resumed.stdout
    assert "global batch 8; per-replica batch 4" in resumed.stdout
    assert read_state(tmp_path / "run" / "checkpoints" / "last.npz").epoch == 4


@pytest.mark.slow
def test_interrupted_mirrored_run_resumes_to_the_same_result(tmp_path):
    """Two virtual CPUs (a process-wide setting, hence subprocesses): kill -9 and resume equals no kill."""
    write_tiny_project(tmp_path, epochs=4, extra=RESUMABLE, samples=SAMPLES)
    mirrored = ["--strategy", "mirrored", "--virtual-cpus", "2", "--quiet"]
    whole = seq("train", "tiny.yaml", "--output", "whole", *mirrored, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    killed = interrupt(["tiny.yaml", "--output", "run", *mirrored], tmp_path, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = seq("train", "tiny.yaml", "--output", "run", "--resume", *mirrored, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_checkpoint(tmp_path / "whole", tmp_path / "run")


# ----------------------------------------------------------------------------- what seq may write over


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def test_a_folder_of_the_users_files_is_never_a_run(project, tmp_path_factory):
    mine = tmp_path_factory.mktemp("mine")
    (mine / "spec.yaml").write_text("mine\n")
    (mine / "metrics.json").write_text("{}\n")
    before = tree(mine)
    for extra in ([], ["--overwrite"]):
        result = run("train", project / "tiny.yaml", "--output", mine, "-q", *extra)
        assert result.exit_code == 1
        assert "metrics.json, spec.yaml that seq did not write" in result.stderr, result.stderr
        assert tree(mine) == before
    assert result.stderr.startswith(
        f"error: cannot overwrite {mine}: it holds metrics.json, spec.yaml that seq did "
        "not write; nothing was removed\n  hint: move those out"
    )


@pytest.mark.parametrize("output", [".", "/", "~"])
def test_the_current_folder_root_and_home_are_never_a_run(project, monkeypatch, output):
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(project if output == "~" else project / "elsewhere"))
    (project / "spec.yaml").write_text("mine\n")
    (project / "metrics.json").write_text("{}\n")
    before = tree(project)
    result = run("train", "tiny.yaml", "--output", output.replace("~", str(project)), "-q")
    assert result.exit_code == 1
    what = {".": "the current folder", "/": "the filesystem root", "~": "your home folder"}[output]
    assert result.stderr.startswith(
        f"error: --output {output.replace('~', str(project))} is {what}; seq never "
        "writes its files loose in such a folder\n  hint: name a new folder"
    ), result.stderr
    assert tree(project) == before


def test_a_run_directory_never_holds_its_inputs(project, monkeypatch):
    (project / "specs" / "data").mkdir(parents=True)
    (project / "tiny.npz").rename(project / "specs" / "data" / "tiny.npz")
    text = (project / "tiny.yaml").read_text().replace("train: tiny.npz", "train: data/tiny.npz")
    (project / "specs" / "tiny.yaml").write_text(text)
    (project / "tiny.yaml").unlink()
    monkeypatch.chdir(project)
    before = tree(project)
    for output, held in (("specs", "specs/tiny.yaml"), ("specs/data", f"{project}/specs/data/tiny.npz")):
        result = run("train", "specs/tiny.yaml", "--output", output, "--overwrite")
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: --output {output} holds an input of this command: {held}\n"), (
            result.stderr
        )
        assert tree(project) == before
    assert run("train", "specs/tiny.yaml", "-q").exit_code == 0  # the default, runs/tiny, is beside specs/
    assert (project / "runs" / "tiny" / "model.keras").exists()


def test_overwrite_refuses_a_run_holding_a_file_seq_did_not_write(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "-q").exit_code == 0
    (project / "run" / "logs" / "notes.txt").write_text("mine")
    before = tree(project / "run")
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--overwrite", "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot overwrite {project / 'run'}: it holds logs/notes.txt that seq did not "
        "write; nothing was removed\n  hint: move those out of the folder, or choose another "
        "--output\n"
    )
    assert tree(project / "run") == before
    (project / "run" / "logs" / "notes.txt").unlink()
    replaced = run("train", project / "tiny.yaml", "--output", project / "run", "--overwrite", "--epochs", "1", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((project / "run" / "metrics.json").read_text())["epochs_done"] == 1
    assert len(list((project / "run" / "logs" / "train").iterdir())) == 1  # the old run's event file is gone


def test_stale_temporaries_in_a_run_are_cleaned_by_the_next_run(project):
    assert run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "-q").exit_code == 0
    stale = [
        project / "run" / ".seq-tmp-4194304-model.keras.x1y2.keras",
        project / "run" / "checkpoints" / ".seq-tmp-4194304-last.npz.x1y2.npz",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    resumed = run("train", project / "tiny.yaml", "--output", project / "run", "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert not [path for path in stale if path.exists()]
    assert not [p for p in (project / "run").rglob(".seq-tmp-*")]


@pytest.mark.slow
def test_a_second_train_into_a_running_one_is_refused_and_kill_9_frees_it(tmp_path):
    write_tiny_project(tmp_path, epochs=500, samples=SAMPLES)
    first = subprocess.Popen(
        [sys.executable, "-m", "seqcli", "train", "tiny.yaml", "--output", "run", "-q"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "run" / "checkpoints" / "last.npz").exists():  # a run --resume could continue
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never checkpointed"
            time.sleep(0.01)
        holder = json.loads((tmp_path / "run" / ".seq-lock").read_text())
        for extra in ([], ["--overwrite"], ["--resume"]):
            second = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "run", "-q", *extra)
            assert second.exit_code == 3  # busy: ExitStatus.ENVIRONMENT
            assert second.stderr == (
                f"error: {tmp_path / 'run'} is in use: seq train (PID {first.pid} on "
                f"{holder['host']}, started {holder['started']}) is writing it\n"
                "  hint: wait for that run to end, or choose another --output\n"
            )
        assert first.poll() is None, "the first run ended while the second was refused"
    finally:
        first.kill()
        first.wait()
    after = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "run", "--overwrite", "--epochs", "1", "-q")
    assert after.exit_code == 0, after.output


def damage(checkpoint: Path, member: str = "model/00000.npy") -> None:
    """Flip the last byte of one array in a checkpoint, as a bad disk would: its CRC no longer matches."""
    with zipfile.ZipFile(checkpoint) as archive:
        info = archive.getinfo(member)
    data = bytearray(checkpoint.read_bytes())
    with checkpoint.open("rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", handle.read(4))
    data[info.header_offset + 30 + name_length + extra_length + info.compress_size - 1] ^= 0xFF
    checkpoint.write_bytes(bytes(data))


def test_a_damaged_last_checkpoint_resumes_from_the_one_before_it_exactly(tmp_path):
    write_tiny_project(tmp_path, epochs=3, extra=RESUMABLE, samples=SAMPLES)
    straight = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "straight", "-q")
    assert straight.exit_code == 0, straight.output
    checkpoints = tmp_path / "run" / "checkpoints"
    first = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "run", "--epochs", "1", "-q")
    assert first.exit_code == 0, first.output
    epoch_1 = (checkpoints / "last.npz").read_bytes()
    second = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "run", "--epochs", "2", "--resume", "-q")
    assert second.exit_code == 0, second.output
    # The checkpoint before the last is a whole epoch back (as after a kill during an epoch's end): resuming
    # from it replays epoch 2, with the same batches, to the same bits.
    (checkpoints / "previous.npz").write_bytes(epoch_1)
    assert (read_state(checkpoints / "previous.npz").epoch, read_state(checkpoints / "last.npz").epoch) == (1, 2)
    damage(checkpoints / "last.npz")

    resumed = run("train", tmp_path / "tiny.yaml", "--output", tmp_path / "run", "--resume", "--epochs", "3")
    assert resumed.exit_code == 0, resumed.output
    assert (
        f"warning: resumed from {checkpoints / 'previous.npz'}, the checkpoint before the last: checkpoint "
        f"{checkpoints / 'last.npz'} is damaged: model/00000.npy fails its CRC check"
    ) in " ".join(resumed.stdout.split())
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "run")
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 3 + 1


def test_a_damaged_checkpoint_with_none_before_it_is_named(project):
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "-q")
    assert result.exit_code == 0, result.output
    checkpoints = project / "run" / "checkpoints"
    checkpoints.joinpath("previous.npz").unlink(missing_ok=True)
    damage(checkpoints / "last.npz")
    before = snapshot(project)
    result = CliRunner().invoke(
        cli, ["train", str(project / "tiny.yaml"), "--output", str(project / "run"), "--resume"]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: checkpoint {checkpoints / 'last.npz'} is damaged: model/00000.npy fails its CRC check\n"
        "  hint: the file changed after seq wrote it; start the run again with --overwrite\n"
    )
    assert snapshot(project) == before


def test_resume_in_a_folder_without_a_run_writes_nothing(project):
    (project / "mine").mkdir()
    (project / "mine" / "a.txt").write_text("mine")
    result = run("train", project / "tiny.yaml", "--output", project / "mine", "--resume")
    assert result.exit_code == 1 and "nothing to resume" in result.stderr
    assert sorted(p.name for p in (project / "mine").iterdir()) == ["a.txt"]


def test_a_none_in_the_input_shape_takes_any_size_there(tmp_path):
    """Variable-length sequences: Input [null, 3] trains on (10, 3) samples, and still refuses (10, 4)."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seqs.npz", x=rng.random((32, 10, 3), np.float32), y=rng.integers(0, 2, 32))
    np.savez(tmp_path / "wide.npz", x=rng.random((32, 10, 4), np.float32), y=rng.integers(0, 2, 32))
    spec = tmp_path / "rnn.yaml"
    spec.write_text(
        "layers:\n  - Input: {shape: [null, 3]}\n  - LSTM: {units: 4}\n  - Dense: {units: 2, activation: softmax}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
        "data: {train: seqs.npz, batch_size: 16}\ntrain: {epochs: 1}\n"
    )
    trained = run("train", spec, "--output", tmp_path / "run", "-q")
    assert trained.exit_code == 0, trained.output
    refused = CliRunner().invoke(
        cli, ["train", str(spec), "--output", str(tmp_path / "wide"), "--set", "data.train=wide.npz"]
    )
    assert refused.exit_code == 1
    assert "takes inputs of shape (None, 3), but data.train's samples have shape (10, 4)" in refused.stderr


def test_a_finished_run_resumed_past_a_damaged_checkpoint_says_so(project):
    result = run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "-q")
    assert result.exit_code == 0, result.output
    checkpoints = project / "run" / "checkpoints"
    (checkpoints / "previous.npz").write_bytes((checkpoints / "last.npz").read_bytes())  # finished, too
    damage(checkpoints / "last.npz")
    resumed = run("train", project / "tiny.yaml", "--output", project / "run", "--epochs", "1", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "note: resumed from" in resumed.stdout and "fails its CRC check" in resumed.stdout
    assert read_state(checkpoints / "last.npz").finished
