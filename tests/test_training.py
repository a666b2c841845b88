"""seqcli.training: resume checks, early stopping, outputs, signals, and training in process that resumes
exactly and gives the same weights for the same seed. CLI behaviour is in test_cli_train.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqcli.specfile import read_spec, spec_from_text
from seqcli.specfile.dump import dump_spec
from seqcli.training import TrainOptions, train_spec
from seqcli.training.checkpoint import TrainingState, read_state
from seqcli.training.early_stopping import EarlyStopper
from seqcli.training.results import write_history
from seqcli.training.resume import run_fingerprint
from tests.conftest import assert_same_checkpoint, spec_text, write_tiny_project

# ----------------------------------------------------------------------------- pieces


def test_fingerprint_ignores_what_may_change_on_resume(tmp_path):
    spec_path = write_tiny_project(tmp_path)
    base = run_fingerprint(read_spec(spec_path), 3)
    assert (
        run_fingerprint(
            read_spec(spec_path, ["train.epochs=9", "train.checkpoint_every=2", "distribute.strategy=mirrored"]), 3
        )
        == base
    )
    assert run_fingerprint(read_spec(spec_path, ["data.batch_size=4"]), 3) != base
    assert run_fingerprint(read_spec(spec_path), 4) != base
    copy = tmp_path / "elsewhere" / "copy.yaml"
    copy.parent.mkdir()
    copy.write_text(spec_path.read_text().replace("train: tiny.npz", f"train: {tmp_path / 'tiny.npz'}"))
    assert run_fingerprint(read_spec(copy), 3) == base  # same data, written as an absolute path


def test_early_stopping_rules():
    spec = spec_from_text(
        spec_text("compile: {loss: mse}\ntrain:\n  early_stopping: {monitor: val_loss, patience: 2, min_delta: 0.1}\n")
    )
    stopper = EarlyStopper.create(spec, None)
    stopper.resolve_mode()
    assert stopper.mode == "min"
    rows = [
        {"epoch": 1, "val_loss": 1.0},
        {"epoch": 2, "val_loss": 0.95},
        {"epoch": 3, "val_loss": 0.5},
        {"epoch": 4, "val_loss": 0.45},
        {"epoch": 5, "val_loss": 0.6},
    ]
    assert [stopper.update(row) for row in rows] == [False, False, False, False, True]
    assert (stopper.best, stopper.best_epoch) == (0.5, 3)
    restored = EarlyStopper.create(spec, stopper.as_dict())
    assert (restored.best, restored.best_epoch, restored.wait) == (0.5, 3, 2)
    accuracy = spec_from_text(spec_text("compile: {loss: mse}\ntrain:\n  early_stopping: {monitor: val_accuracy}\n"))
    stopper = EarlyStopper.create(accuracy, None)
    stopper.resolve_mode()  # no model: the name decides
    assert stopper.mode == "max"


def test_resolved_spec_is_written_like_a_spec():
    text = dump_spec({"layers": [{"Input": {"shape": [8, 8, 1]}}], "compile": {"metrics": ["accuracy"]}})
    assert text == "layers:\n- Input:\n    shape: [8, 8, 1]\ncompile:\n  metrics: [accuracy]\n"


def test_history_csv(tmp_path):
    write_history(
        tmp_path / "history.csv",
        [{"epoch": 1, "loss": 0.123456789, "seconds": 1.5}, {"epoch": 2, "loss": 0.1, "val_loss": 0.2, "seconds": 1.0}],
    )
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,seconds,val_loss\n1,0.123457,1.5,\n2,0.1,1,0.2\n"


# ----------------------------------------------------------------------------- training in process


def test_same_seed_same_weights(tmp_path):
    spec = write_tiny_project(tmp_path)
    first = train_spec(TrainOptions(str(spec), output=str(tmp_path / "one")))
    second = train_spec(TrainOptions(str(spec), output=str(tmp_path / "two")))
    assert first.epochs_done == 2 and first.metrics == second.metrics
    assert_same_checkpoint(tmp_path / "one", tmp_path / "two")


def test_training_longer_continues_exactly(tmp_path):
    """A finished run resumed with more epochs ends where a longer run from scratch ends."""
    spec = write_tiny_project(tmp_path, extra="  checkpoint_every: 3\n")
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "long"), epochs=3))
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "short"), epochs=1))
    result = train_spec(TrainOptions(str(spec), output=str(tmp_path / "short"), epochs=3, resume=True))
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert_same_checkpoint(tmp_path / "long", tmp_path / "short")
    metrics = json.loads((tmp_path / "short" / "metrics.json").read_text())
    assert metrics["epochs_done"] == 3 and metrics["seed"] == 3


def test_live_progress_on_a_terminal(tmp_path):
    import io

    from rich.console import Console

    from seqcli.views.progress import make_reporter

    spec = write_tiny_project(tmp_path)
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "run")), make_reporter(console))
    text = console.file.getvalue()
    assert "Distribution  default; on " in text
    assert "epoch 1/2  12/12 steps" in text and "epoch 2/2  12/12 steps" in text
    assert "━" in text  # the bar


def test_signals_stop_at_a_step_boundary_and_twice_at_once(monkeypatch):
    import os
    import signal
    import time

    from seqcli.training.signals import SignalGuard, TrainingInterrupted

    def deliver(signum):
        """Send ``signum`` to this process; Python runs its handler before the next statement."""
        os.kill(os.getpid(), signum)
        time.sleep(0.01)

    with pytest.raises(TrainingInterrupted) as before, SignalGuard():
        deliver(signal.SIGTERM)  # before training starts: stop right away
    assert before.value.signum == signal.SIGTERM and "nothing was trained" in before.value.message
    exits = []
    monkeypatch.setattr("seqcli.training.signals.os._exit", exits.append)
    with SignalGuard() as guard:
        guard.armed = True
        deliver(signal.SIGINT)
        assert guard.stop_requested and guard.received == signal.SIGINT and exits == []  # checkpoint, then stop
        deliver(signal.SIGINT)
        assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are given back


def test_steps_per_execution_only_groups_steps(tmp_path):
    """One fit over all epochs (3 steps per execution divide the 12-step epoch) and one fit per epoch
    (5 do not) take the same optimizer steps: the same weights, optimizer state and metrics."""
    spec = write_tiny_project(tmp_path)
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "whole"), overrides=["compile.steps_per_execution=3"]))
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "epochs"), overrides=["compile.steps_per_execution=5"]))
    assert_same_checkpoint(tmp_path / "whole", tmp_path / "epochs")


def test_resume_never_trains_fewer_epochs_than_started(tmp_path):
    from seqcli.training import RunDirectoryError
    from seqcli.training.resume import check_epochs

    spec = read_spec(write_tiny_project(tmp_path))  # train.epochs: 2
    check_epochs(spec, tmp_path, TrainingState("f", seed=3, epochs=5, steps_per_epoch=12, epoch=2))
    with pytest.raises(RunDirectoryError) as mid_epoch:
        check_epochs(spec, tmp_path, TrainingState("f", seed=3, epochs=5, steps_per_epoch=12, epoch=2, step=4))
    assert mid_epoch.value.message == (
        f"cannot resume {tmp_path} with train.epochs 2: the run stands at epoch 3/5, "
        "step 4/12, so it needs at least 3 epochs"
    )
    assert mid_epoch.value.hint.startswith("resume with --epochs 5 (or any number from 3)")
    with pytest.raises(RunDirectoryError, match="needs at least 36 epochs"):
        check_epochs(spec, tmp_path, TrainingState("f", seed=3, epochs=200, steps_per_epoch=12, epoch=36))


def test_input_files_are_recorded_by_content(tmp_path):
    from seqcli.training.resume import changed_file, input_files

    spec_path = write_tiny_project(tmp_path)
    (tmp_path / "w.weights.h5").write_bytes(b"weights")
    spec = read_spec(spec_path, ["transfer.weights=w.weights.h5", "data.test=missing.npz"])
    files = input_files(spec)
    data, weights = str(tmp_path.resolve() / "tiny.npz"), str(tmp_path.resolve() / "w.weights.h5")
    assert sorted(files) == sorted([data, weights])  # data.test decides no step, and missing files are left out
    assert files[weights] == {"size": 7, "sha256": __import__("hashlib").sha256(b"weights").hexdigest()}
    assert changed_file(files, files) is None and changed_file(None, files) is None
    (tmp_path / "w.weights.h5").write_bytes(b"WEIGHTS")
    assert changed_file(files, input_files(spec)) == f"{weights} (same size, other contents)"
    (tmp_path / "w.weights.h5").write_bytes(b"more weights")
    assert changed_file(files, input_files(spec)) == f"{weights} (7 bytes -> 12)"


def test_a_run_is_finished_only_once_its_files_are_written(tmp_path, monkeypatch):
    """A failure writing model.keras leaves the checkpoint unfinished; --resume then writes the files."""
    from seqcli.training import RunDirectoryError, results

    spec = write_tiny_project(tmp_path)

    def full_disk(model, target, class_names=None):
        raise RunDirectoryError(f"cannot write {target}: No space left on device")

    monkeypatch.setattr(results, "save_model", full_disk)
    with pytest.raises(RunDirectoryError):
        train_spec(TrainOptions(str(spec), output=str(tmp_path / "run")))
    state = read_state(tmp_path / "run" / "checkpoints" / "last.npz")
    assert (state.epoch, state.finished) == (2, False)
    monkeypatch.undo()
    result = train_spec(TrainOptions(str(spec), output=str(tmp_path / "run"), resume=True))
    assert result.epochs_done == 2 and (tmp_path / "run" / "model.keras").exists()
    assert read_state(tmp_path / "run" / "checkpoints" / "last.npz").finished
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "whole")))
    assert_same_checkpoint(tmp_path / "whole", tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_resumes_exactly(tmp_path, precision):
    """Layers compute in 16 bits with float32 weights; a run resumed from its checkpoint ends where an
    uninterrupted one ends (for float16 the loss scale is optimizer state, and skipped steps still count)."""
    from seqcli.keras_env import import_keras

    spec = write_tiny_project(tmp_path, extra=f"  precision: {precision}\n  checkpoint_every: 3\n")
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "long"), epochs=2))
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "short"), epochs=1))
    result = train_spec(TrainOptions(str(spec), output=str(tmp_path / "short"), epochs=2, resume=True))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert_same_checkpoint(tmp_path / "long", tmp_path / "short")
    assert read_state(tmp_path / "short" / "checkpoints" / "last.npz").global_step == 2 * 12
    keras = import_keras()
    model = keras.saving.load_model(tmp_path / "short" / "model.keras", safe_mode=True)
    dense = model.layers[-1]
    assert dense.dtype_policy.name == precision and dense.kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the process's policy is left as it was
    optimizer_state = [
        name for name in np.load(tmp_path / "short" / "checkpoints" / "last.npz").files if name.startswith("optimizer")
    ]
    # Keras's LossScaleOptimizer adds its loss scale and counters to the inner optimizer's variables.
    baseline = len(baseline_optimizer_state(tmp_path))
    assert len(optimizer_state) > baseline if precision == "mixed_float16" else len(optimizer_state) == baseline


def baseline_optimizer_state(tmp_path: Path) -> list[str]:
    """The optimizer variables of the tiny project's float32 run."""
    run = tmp_path / "float32"
    if not run.exists():
        train_spec(TrainOptions(str(write_tiny_project(tmp_path / "plain")), output=str(run), epochs=1))
    return [name for name in np.load(run / "checkpoints" / "last.npz").files if name.startswith("optimizer")]


def test_tensorboard_holds_every_epoch_though_written_with_checkpoints(tmp_path):
    """Scalars are written on the checkpoint cadence (a few epochs at a time), yet none is lost."""
    import tensorflow as tf

    spec = write_tiny_project(tmp_path)
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "run"), overrides=["train.epochs=4"]))
    for split, tag in (("train", "epoch_loss"), ("validation", "epoch_loss")):
        steps = [
            event.step
            for path in sorted((tmp_path / "run" / "logs" / split).iterdir())
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value
            if value.tag == tag
        ]
        assert steps == [1, 2, 3, 4], split
