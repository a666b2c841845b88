"""seqcli.training, seqcli.compile and seqcli.training.checkpoint: names resolved through Keras, checkpoints that
resume exactly, the same seed giving the same weights. CLI behaviour is in test_cli_train.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqcli.compile import choose_steps_per_execution, resolve_compile
from seqcli.errors import SpecError
from seqcli.spec import read_spec, spec_from_text
from seqcli.spec.dump import dump_spec
from seqcli.training import TrainOptions, train_spec
from seqcli.training.checkpoint import CheckpointError, TrainingState, read_state
from seqcli.training.early_stopping import EarlyStopper
from seqcli.training.outputs import write_history
from seqcli.training.resume import run_fingerprint
from tests.conftest import ROOT

TINY_SPEC = """\
name: tiny
layers:
  - Input: {{shape: [4, 4, 1]}}
  - Flatten: {{}}
{dropout}  - Dense: {{units: 3, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.05}}}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
data:
  train: tiny.npz
  validation: 0.25
  batch_size: 8
train:
  epochs: {epochs}
  seed: 3
{extra}"""


def write_tiny_project(directory: Path, *, epochs: int = 2, extra: str = "", samples: int = 128,
                       dropout: float | None = 0.2) -> Path:
    """A spec and 4x4 'images' of 3 classes (the brightest third of the image is the class): trains in
    a second. Returns the spec's path. The Dropout layer (``dropout=None``: none) puts a seed generator's
    state into checkpoints; under several replicas its masks differ from one device's."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, samples)
    x = rng.uniform(0, 0.3, (samples, 4, 4, 1)).astype(np.float32)
    for index, label in enumerate(y):
        x[index].reshape(-1)[label * 5:(label + 1) * 5] += 0.7
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "tiny.npz", x=x, y=y)
    spec = directory / "tiny.yaml"
    layer = f"  - Dropout: {{rate: {dropout}}}\n" if dropout is not None else ""
    spec.write_text(TINY_SPEC.format(epochs=epochs, extra=extra, dropout=layer))
    return spec


def checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / "last.npz") as archive:
        return {name: archive[name] for name in archive.files if name != "meta"}


def assert_same_checkpoint(first: Path, second: Path) -> None:
    """Weights, optimizer state and metric totals all equal, to the bit."""
    a, b = checkpoint_arrays(first), checkpoint_arrays(second)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def spec_text(compile_yaml: str) -> str:
    return ("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, activation: softmax}\n" + compile_yaml)


# ----------------------------------------------------------------------------- compile


def test_compile_names_resolve_through_keras():
    import keras

    spec = spec_from_text(spec_text(
        "compile:\n  optimizer: {Adam: {learning_rate: 0.001}}\n  loss: {SparseCategoricalCrossentropy: {}}\n"
        "  metrics: [accuracy, {SparseTopKCategoricalAccuracy: {k: 2}}, mae]\n"))
    settings, problems = resolve_compile(spec, steps_per_epoch=10)
    assert problems == []
    assert isinstance(settings.optimizer, keras.optimizers.Adam)
    assert float(settings.optimizer.learning_rate) == pytest.approx(0.001)
    assert isinstance(settings.loss, keras.losses.SparseCategoricalCrossentropy)
    assert settings.metric_names == ["accuracy", "sparse_top_k_categorical_accuracy", "mae"]
    assert settings.log_names(validation=True)[-1] == "val_mae"
    assert settings.steps_per_execution == 10


@pytest.mark.parametrize("optimizer, cls", [("adam", "Adam"), ("rmsprop", "RMSprop"), ("SGD", "SGD"),
                                            ("adamw", "AdamW")])
def test_optimizer_strings(optimizer, cls):
    spec = spec_from_text(spec_text(f"compile:\n  optimizer: {optimizer}\n  loss: mse\n"))
    settings, problems = resolve_compile(spec)
    assert problems == [] and type(settings.optimizer).__name__ == cls


def test_learning_rate_schedules_nest_or_come_from_train():
    import keras

    schedule = "{ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 10, decay_rate: 0.5}}"
    nested = spec_from_text(spec_text(f"compile:\n  optimizer: {{SGD: {{learning_rate: {schedule}}}}}\n"
                                      "  loss: mse\n"))
    from_train = spec_from_text(spec_text(f"compile:\n  loss: mse\ntrain:\n  learning_rate_schedule: {schedule}\n"))
    for spec in (nested, from_train):
        settings, problems = resolve_compile(spec)
        assert problems == []
        assert isinstance(settings.optimizer.learning_rate, keras.optimizers.schedules.ExponentialDecay) or \
            isinstance(settings.optimizer._learning_rate, keras.optimizers.schedules.ExponentialDecay)


COMPILE_ERRORS = [
    ("compile:\n  optimizer: adm\n  loss: mse\n", "5:14: compile.optimizer: unknown optimizer 'adm'",
     "did you mean 'adam'?"),
    ("compile:\n  optimizer: {Adam: {learning_rte: 0.1}}\n  loss: mse\n",
     "5:22: compile.optimizer.Adam.learning_rte: unknown argument for Adam", "did you mean 'learning_rate'?"),
    ("compile:\n  optimizer: {Adam: {learning_rate: -1}}\n  loss: mse\n",
     "5:15: compile.optimizer.Adam: Keras rejected Adam: Argument `learning_rate` should be float", None),
    ("compile:\n  loss: sparse_categorical_crossentropyy\n",
     "5:9: compile.loss: unknown loss 'sparse_categorical_crossentropyy'",
     "did you mean 'sparse_categorical_crossentropy'?"),
    ("compile:\n  loss: {MeanSquaredErr: {}}\n", "5:10: compile.loss.MeanSquaredErr: unknown loss class",
     "did you mean 'MeanSquaredError'?"),
    ("compile:\n  loss: mse\n  metrics: [acuracy]\n", "6:13: compile.metrics[0]: unknown metric 'acuracy'",
     "did you mean 'accuracy'?"),
    ("compile:\n  loss: mse\n  metrics: [{AUC: {curv: ROC}}]\n", "6:20: compile.metrics[0].AUC.curv: unknown argument",
     "did you mean 'curve'?"),
    ("compile:\n  optimizer: {SGD: {learning_rate: 0.1}}\n  loss: mse\ntrain:\n  learning_rate_schedule: "
     "{CosineDecay: {initial_learning_rate: 0.1, decay_steps: 5}}\n",
     "8:27: train.learning_rate_schedule: train.learning_rate_schedule conflicts with SGD's learning_rate", None),
    ("compile:\n  optimizer: adam\n", "4:1: compile: compile.loss is missing", "name a Keras loss"),
]


@pytest.mark.parametrize("compile_yaml, where, hint", COMPILE_ERRORS)
def test_compile_problems_point_into_the_spec(compile_yaml, where, hint):
    spec = spec_from_text(spec_text(compile_yaml), "spec.yaml")
    settings, problems = resolve_compile(spec)
    assert settings is None and len(problems) == 1
    text = SpecError(problems, spec.document.source).render()
    assert text.startswith(f"spec.yaml:{where}"), text
    if hint:
        assert f"hint: {hint}" in text


def test_all_compile_problems_at_once():
    spec = spec_from_text(spec_text("compile:\n  optimizer: adm\n  loss: msee\n  metrics: [acc, f1]\n"))
    _, problems = resolve_compile(spec)
    assert [p.path for p in problems] == ["compile.optimizer", "compile.loss", "compile.metrics[1]"]


@pytest.mark.parametrize("setting, steps, every, expected", [
    ("auto", 23, None, 23),  # a short epoch: one execution
    ("auto", 90, None, 30),  # a divisor of the epoch near 32
    ("auto", 1009, None, 32),  # no divisor near 32: 32, epoch by epoch
    ("auto", 90, 5, 5),  # never more than checkpoint_every, and dividing it
    ("auto", None, None, 32),
    (7, 23, None, 7),
])
def test_steps_per_execution_auto(setting, steps, every, expected):
    assert choose_steps_per_execution(setting, steps, every) == expected


# ----------------------------------------------------------------------------- pieces


def test_fingerprint_ignores_what_may_change_on_resume(tmp_path):
    spec_path = write_tiny_project(tmp_path)
    base = run_fingerprint(read_spec(spec_path), 3)
    assert run_fingerprint(read_spec(spec_path, ["train.epochs=9", "train.checkpoint_every=2",
                                                 "distribute.strategy=mirrored"]), 3) == base
    assert run_fingerprint(read_spec(spec_path, ["data.batch_size=4"]), 3) != base
    assert run_fingerprint(read_spec(spec_path), 4) != base
    copy = tmp_path / "elsewhere" / "copy.yaml"
    copy.parent.mkdir()
    copy.write_text(spec_path.read_text().replace("train: tiny.npz", f"train: {tmp_path / 'tiny.npz'}"))
    assert run_fingerprint(read_spec(copy), 3) == base  # same data, written as an absolute path


def test_early_stopping_rules():
    spec = spec_from_text(spec_text("compile: {loss: mse}\ntrain:\n  early_stopping: {monitor: val_loss, "
                                    "patience: 1, min_delta: 0.1}\n"))
    stopper = EarlyStopper.create(spec, None)
    assert stopper.mode == "min"
    rows = [{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.95}, {"epoch": 3, "val_loss": 0.5},
            {"epoch": 4, "val_loss": 0.45}, {"epoch": 5, "val_loss": 0.6}]
    assert [stopper.update(row) for row in rows] == [False, False, False, False, True]
    assert (stopper.best, stopper.best_epoch) == (0.5, 3)
    restored = EarlyStopper.create(spec, stopper.as_dict())
    assert (restored.best, restored.best_epoch, restored.wait) == (0.5, 3, 2)
    accuracy = spec_from_text(spec_text("compile: {loss: mse}\ntrain:\n  early_stopping: {monitor: val_accuracy}\n"))
    assert EarlyStopper.create(accuracy, None).mode == "max"


def test_resolved_spec_is_written_like_a_spec():
    text = dump_spec({"layers": [{"Input": {"shape": [8, 8, 1]}}], "compile": {"metrics": ["accuracy"]}})
    assert text == "layers:\n- Input:\n    shape: [8, 8, 1]\ncompile:\n  metrics: [accuracy]\n"


def test_history_csv(tmp_path):
    write_history(tmp_path / "history.csv", [{"epoch": 1, "loss": 0.123456789, "seconds": 1.5},
                                             {"epoch": 2, "loss": 0.1, "val_loss": 0.2, "seconds": 1.0}])
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,seconds,val_loss\n1,0.123457,1.5,\n2,0.1,1,0.2\n"


def test_checkpoint_state_reads_without_tensorflow(tmp_path):
    state = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10, epoch=1, step=4, history=[{"epoch": 1}])
    np.savez(tmp_path / "last.npz", meta=np.array(state.to_json()))
    code = ("import sys; from seqcli.training.checkpoint import read_state; "
            f"s = read_state({str(tmp_path / 'last.npz')!r}); "
            "assert (s.epoch, s.step, s.global_step) == (1, 4, 14), s; "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert read_state(tmp_path / "last.npz").position() == "epoch 2/3, step 4/10"


def test_damaged_checkpoint_is_reported(tmp_path):
    (tmp_path / "last.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state(tmp_path / "last.npz")


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from seqcli.training import checkpoint

    state = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10)
    checkpoint.write_snapshot(tmp_path / "last.npz", {"meta": np.array(state.to_json()), "model/00000": np.ones(3)})
    before = (tmp_path / "last.npz").read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.write_snapshot(tmp_path / "last.npz", {"meta": np.array("{}")})
    assert (tmp_path / "last.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]  # no temporary file left behind


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

    from seqcli.progress import make_reporter

    spec = write_tiny_project(tmp_path)
    console = Console(file=io.StringIO(), force_terminal=True, width=100, color_system=None)
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "run")), make_reporter(console))
    text = console.file.getvalue()
    assert "Distribution  default; on " in text
    assert "epoch 1/2  12/12 steps" in text and "epoch 2/2  12/12 steps" in text
    assert "━" in text  # the bar


def test_signals_stop_at_a_step_boundary_and_twice_at_once(monkeypatch):
    import signal

    from seqcli.training.signals import SignalGuard, TrainingInterrupted

    guard = SignalGuard()
    with pytest.raises(TrainingInterrupted) as before:
        guard._handle(signal.SIGTERM, None)  # before training starts: stop right away
    assert before.value.signum == signal.SIGTERM and "nothing was trained" in before.value.message
    guard = SignalGuard()
    guard.armed = True
    exits = []
    monkeypatch.setattr("seqcli.training.signals.os._exit", exits.append)
    guard._handle(signal.SIGINT, None)
    assert guard.received == signal.SIGINT and exits == []  # training saves a checkpoint, then stops
    guard._handle(signal.SIGINT, None)
    assert exits == [130]


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
    assert mid_epoch.value.message == (f"cannot resume {tmp_path} with train.epochs 2: the run stands at epoch 3/5, "
                                       "step 4/12, so it needs at least 3 epochs")
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


def test_bad_optimizer_arguments_are_found_by_applying_the_optimizer():
    from seqcli.compile import probe_optimizer

    spec = spec_from_text(spec_text("compile:\n  optimizer: {Adam: {beta_1: abc}}\n  loss: mse\n"), "spec.yaml")
    assert resolve_compile(spec)[1] == []  # Keras constructs it
    problems = probe_optimizer(spec)
    text = SpecError(problems, spec.document.source).render()
    assert text.startswith("spec.yaml:5:15: compile.optimizer.Adam: Keras rejected Adam when applying it: Cast "
                           "string to float is not supported. Received: beta_1='abc'"), text
    assert probe_optimizer(spec_from_text(spec_text("compile:\n  optimizer: adam\n  loss: mse\n"))) == []
    assert probe_optimizer(spec_from_text(spec_text("compile:\n  optimizer: adm\n  loss: mse\n"))) == []


def test_a_run_is_finished_only_once_its_files_are_written(tmp_path, monkeypatch):
    """A failure writing model.keras leaves the checkpoint unfinished; --resume then writes the files."""
    from seqcli.training import RunDirectoryError, loop

    spec = write_tiny_project(tmp_path)

    def full_disk(model, target):
        raise RunDirectoryError(f"cannot write {target}: No space left on device")

    monkeypatch.setattr(loop, "save_model", full_disk)
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
