"""seq against Keras itself: each case runs the same thing through seq and through Keras directly and compares
what a Keras user would see (when training stops and which weights it keeps; built or not, shapes, parameter
counts, layer names, initial weights). A departure from Keras is a bug in seq."""

from __future__ import annotations

import numpy as np
import pytest

from seqcli.spec import spec_from_text
from seqcli.training.early_stopping import EarlyStopper
from tests.conftest import spec_text

# ----------------------------------------------------------------------------- early stopping

HISTORIES = {
    "falls then rises": [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.95, 0.99, 1.2],
    "plateau": [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
    "small steps": [1.0, 0.99, 0.985, 0.98, 0.9, 0.899, 0.898, 0.897, 0.896],
    "keeps improving": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
    "late best": [1.0, 1.1, 1.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "nan": [1.0, float("nan"), 0.9, 0.95, 0.96],
}
SETTINGS = {
    "patience 0": {"patience": 0},
    "patience 1": {"patience": 1},
    "patience 4": {"patience": 4},
    "min_delta": {"patience": 1, "min_delta": 0.05},
    "baseline": {"patience": 2, "baseline": 0.85},
    "baseline never beaten": {"patience": 3, "baseline": 0.1},
    "restore_best_weights": {"patience": 2, "restore_best_weights": True},
    "restore, min_delta": {"patience": 1, "min_delta": 0.02, "restore_best_weights": True},
    "restore, baseline": {"patience": 2, "baseline": 0.6, "restore_best_weights": True},
    "start_from_epoch": {"patience": 1, "start_from_epoch": 3},
    "max mode": {"patience": 1, "mode": "max"},
}


class _EpochTaggedModel:
    """What keras.callbacks.EarlyStopping touches on a model; its "weights" are the epoch that made them."""

    def __init__(self):
        self.epoch = 0
        self.stop_training = False

    def get_weights(self):
        return [self.epoch]

    def set_weights(self, weights):
        self.epoch = weights[0]


def _keras_run(values: list[float], settings: dict) -> tuple[int, int]:
    """(epochs trained, epoch whose weights the model ends with) under keras.callbacks.EarlyStopping."""
    from seqcli.keras_env import import_keras

    callback = import_keras().callbacks.EarlyStopping(monitor="val_loss", **settings)
    model = _EpochTaggedModel()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        model.epoch = epoch + 1
        callback.on_epoch_end(epoch, {"loss": 0.0, "val_loss": value})
        if model.stop_training:
            break
    trained = model.epoch
    callback.on_train_end()
    return trained, model.epoch


def _seq_run(values: list[float], settings: dict) -> tuple[int, int]:
    """The same through seq's early stopping, set up from a spec's train.early_stopping section."""
    arguments = ", ".join(f"{key}: {str(value).lower()}" for key, value in settings.items())
    spec = spec_from_text(
        spec_text(f"compile: {{loss: mse}}\ntrain:\n  early_stopping: {{monitor: val_loss, {arguments}}}\n")
    )
    stopper = EarlyStopper.create(spec, None)
    trained = 0
    for epoch, value in enumerate(values, start=1):
        trained = epoch
        if stopper.update({"epoch": epoch, "loss": 0.0, "val_loss": value}):
            break
    return trained, stopper.restored_epoch(trained) or trained


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
@pytest.mark.parametrize("values", HISTORIES.values(), ids=HISTORIES.keys())
def test_early_stopping_stops_and_restores_like_keras(values, settings):
    assert _seq_run(values, settings) == _keras_run(values, settings)


def test_early_stopping_carries_its_state_across_a_resume():
    values, settings = HISTORIES["falls then rises"], SETTINGS["patience 4"]
    spec = spec_from_text(spec_text("compile: {loss: mse}\ntrain:\n  early_stopping: {patience: 4}\n"))
    first = EarlyStopper.create(spec, None)
    for epoch, value in enumerate(values[:5], start=1):
        assert not first.update({"epoch": epoch, "val_loss": value})
    resumed = EarlyStopper.create(spec, first.as_dict())
    stops = [resumed.update({"epoch": epoch, "val_loss": value}) for epoch, value in enumerate(values[5:], start=6)]
    assert 6 + stops.index(True) == _keras_run(values, settings)[0] == 7


def test_auto_mode_follows_the_compiled_metrics_direction():
    """Keras reads a metric's direction from the compiled metric, not its name: cosine similarity rises."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(
        loss="mse",
        metrics=[keras.metrics.CosineSimilarity(name="closeness"), keras.metrics.MeanAbsoluteError(name="gap")],
    )
    model.fit(np.ones((2, 2)), np.ones((2, 2)), verbose=0)
    for monitor in ("val_closeness", "gap", "val_loss"):
        callback = keras.callbacks.EarlyStopping(monitor=monitor)
        callback.set_model(model)
        callback._set_monitor_op()
        stopper = EarlyStopper(monitor, "auto", 0, 0.0, False)
        stopper.resolve_mode(model)
        assert stopper.mode == ("max" if callback.monitor_op is keras.ops.greater else "min"), monitor
