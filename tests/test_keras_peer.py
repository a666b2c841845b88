"""seq against Keras itself: each case runs the same thing through seq and through Keras directly and compares
what a Keras user would see (when training stops and which weights it keeps; built or not, shapes, parameter
counts, layer names, initial weights). A departure from Keras is a bug in seq."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from seqcli.specfile import spec_from_text
from seqcli.training.early_stopping import EarlyStopper
from tests.conftest import run_in, spec_text

# ----------------------------------------------------------------------------- early stopping

HISTORIES = {
    "falls then rises": [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.95, 0.99, 1.2],
    "plateau": [1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
    "small steps": [1.0, 0.99, 0.985, 0.98, 0.9, 0.899, 0.898, 0.897, 0.896],
    "keeps improving": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
    "late best": [1.0, 1.1, 1.2, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "nan": [1.0, float("nan"), 0.9, 0.95, 0.96],
    "ends past its best": [1.0, 0.5, 0.6, 0.7],
}
SETTINGS = {
    "patience 0": {"patience": 0},
    "patience 1": {"patience": 1},
    "patience 4": {"patience": 4},
    "min_delta": {"patience": 1, "min_delta": 0.05},
    "baseline": {"patience": 2, "baseline": 0.85},
    "baseline never beaten": {"patience": 3, "baseline": 0.1},
    "restore_best_weights": {"patience": 2, "restore_best_weights": True},
    "restore, patience 4": {"patience": 4, "restore_best_weights": True},
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


def test_auto_direction_follows_the_compiled_metrics_direction():
    """Keras reads a metric's direction from the compiled metric, not its name: cosine similarity rises, an
    error falls. Early stopping's mode: auto and tune's direction: auto go the way Keras's EarlyStopping goes."""
    from seqcli.keras_env import import_keras
    from seqcli.tune.space import direction_of

    keras = import_keras()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(
        loss="mse",
        metrics=["mae", "accuracy", keras.metrics.CosineSimilarity(name="closeness")],
        run_eagerly=True,  # no graph to trace: the metrics only need one step to be built
    )
    model.fit(np.ones((2, 2)), np.ones((2, 2)), verbose=0)
    metrics = "[mae, accuracy, {CosineSimilarity: {name: closeness}}]"
    for monitor in ("val_closeness", "mae", "val_accuracy", "val_loss"):
        callback = keras.callbacks.EarlyStopping(monitor=monitor)
        callback.set_model(model)
        callback._set_monitor_op()
        expected = "max" if callback.monitor_op is keras.ops.greater else "min"
        stopper = EarlyStopper(monitor, "auto", 0, 0.0, False)
        stopper.resolve_mode(model)
        spec = spec_from_text(
            spec_text(
                f"compile: {{loss: mse, metrics: {metrics}}}\n"
                f"tune: {{objective: {monitor}, parameters: {{compile.optimizer: {{choice: [adam, sgd]}}}}}}\n"
            )
        )
        assert (stopper.mode, direction_of(spec)) == (expected, f"{expected}imize"), monitor


# ----------------------------------------------------------------------------- building: Keras's sequential_test.py
# and keras.io examples, each written as a spec and built by Keras directly, compared as `seq summary` shows them.


def _mnist_convnet(keras, folder):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def _dcgan_discriminator(keras, folder):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(64, 64, 3)),
            layers.Conv2D(64, kernel_size=4, strides=2, padding="same"),
            layers.LeakyReLU(alpha=0.2),
            layers.Conv2D(128, kernel_size=4, strides=2, padding="same"),
            layers.LeakyReLU(alpha=0.2),
            layers.Flatten(),
            layers.Dropout(0.2),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )


def _saved_base(keras, folder):
    return keras.Sequential([keras.models.load_model(folder / "base.keras"), keras.layers.Dense(2)])


BUILDS = {
    "basic flow with input": (
        "- Input: {shape: [2], batch_size: 3}\n- Dense: {units: 4}\n- Dense: {units: 5}",
        lambda keras, folder: keras.Sequential(
            [keras.Input(shape=(2,), batch_size=3), keras.layers.Dense(4), keras.layers.Dense(5)]
        ),
    ),
    "legacy input_shape": (
        "- Dense: {units: 4, input_shape: [2]}\n- Dense: {units: 5}",
        lambda keras, folder: keras.Sequential([keras.layers.Dense(4, input_shape=(2,)), keras.layers.Dense(5)]),
    ),
    "input_dim works too": (
        "- Dense: {units: 4, input_dim: 2}\n- Dense: {units: 5}",
        lambda keras, folder: keras.Sequential([keras.layers.Dense(4, input_dim=2), keras.layers.Dense(5)]),
    ),
    "deferred": (
        "- Dense: {units: 4}\n- Dense: {units: 5}",
        lambda keras, folder: keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(5)]),
    ),
    "names after an explicit name": (
        "- Input: {shape: [8, 8, 1]}\n- Conv2D: {filters: 2, kernel_size: 3, name: first}\n"
        "- Conv2D: {filters: 2, kernel_size: 3}\n- Conv2D: {filters: 2, kernel_size: 1}\n- Flatten: {}\n"
        "- Dense: {units: 2, name: head}\n- Dense: {units: 2}",
        lambda keras, folder: keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(2, 3, name="first"),
                keras.layers.Conv2D(2, 3),
                keras.layers.Conv2D(2, 1),
                keras.layers.Flatten(),
                keras.layers.Dense(2, name="head"),
                keras.layers.Dense(2),
            ]
        ),
    ),
    "names of wrapped layers": (
        "- Input: {shape: [6, 4]}\n- Bidirectional: {layer: {LSTM: {units: 2, return_sequences: true}}}\n"
        "- TimeDistributed: {layer: {Dense: {units: 3}}}\n- LSTM: {units: 2}\n- Dense: {units: 1}",
        lambda keras, folder: keras.Sequential(
            [
                keras.Input((6, 4)),
                keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True)),
                keras.layers.TimeDistributed(keras.layers.Dense(3)),
                keras.layers.LSTM(2),
                keras.layers.Dense(1),
            ]
        ),
    ),
    "keras.io mnist convnet": (
        "- Input: {shape: [28, 28, 1]}\n- Conv2D: {filters: 32, kernel_size: [3, 3], activation: relu}\n"
        "- MaxPooling2D: {pool_size: [2, 2]}\n- Conv2D: {filters: 64, kernel_size: [3, 3], activation: relu}\n"
        "- MaxPooling2D: {pool_size: [2, 2]}\n- Flatten: {}\n- Dropout: {rate: 0.5}\n"
        "- Dense: {units: 10, activation: softmax}",
        _mnist_convnet,
    ),
    "keras.io dcgan discriminator (LeakyReLU alpha)": (
        "- Input: {shape: [64, 64, 3]}\n- Conv2D: {filters: 64, kernel_size: 4, strides: 2, padding: same}\n"
        "- LeakyReLU: {alpha: 0.2}\n- Conv2D: {filters: 128, kernel_size: 4, strides: 2, padding: same}\n"
        "- LeakyReLU: {alpha: 0.2}\n- Flatten: {}\n- Dropout: {rate: 0.2}\n- Dense: {units: 1, activation: sigmoid}",
        _dcgan_discriminator,
    ),
    "embedding with input_length": (
        "- Input: {shape: [10]}\n- Embedding: {input_dim: 100, output_dim: 8, input_length: 10}\n"
        "- GlobalAveragePooling1D: {}\n- Dense: {units: 1}",
        lambda keras, folder: keras.Sequential(
            [
                keras.Input((10,)),
                keras.layers.Embedding(100, 8, input_length=10),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(1),
            ]
        ),
    ),
    "guide's Xception base and Dense head": (
        "- Xception: {weights: null, include_top: false, pooling: avg}\n- Dense: {units: 1000}",
        lambda keras, folder: keras.Sequential(
            [keras.applications.Xception(weights=None, include_top=False, pooling="avg"), keras.layers.Dense(1000)]
        ),
    ),
    "classifier application first": (
        "- MobileNetV2: {weights: null, alpha: 0.35, classes: 4}\n- Dense: {units: 2}",
        lambda keras, folder: keras.Sequential(
            [keras.applications.MobileNetV2(weights=None, alpha=0.35, classes=4), keras.layers.Dense(2)]
        ),
    ),
    "a saved model first": ("- Model: {path: base.keras}\n- Dense: {units: 2}", _saved_base),
}


def _keras_view(model) -> dict:
    """What `seq summary --format json` reports, read from a Keras model."""
    built = bool(model.built)
    return {
        "built": built,
        "names": [layer.name for layer in model.layers],
        "output_shape": list(model.output_shape) if built else None,
        "params": model.count_params() if built else None,
    }


def _seq_view(report: dict) -> dict:
    return {
        "built": report["params"] is not None,
        "names": [row["name"] for row in report["layers"]],
        "output_shape": report["output_shape"],
        "params": report["params"],
    }


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory):
    """A folder holding base.keras, a small built model for `Model: {path: ...}`."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    folder = tmp_path_factory.mktemp("peer")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)], name="small_base")
    model.save(folder / "base.keras")
    return folder


@pytest.mark.parametrize("layers_yaml, make", BUILDS.values(), ids=BUILDS.keys())
def test_spec_builds_what_keras_builds(saved_base, layers_yaml, make):
    from seqcli.keras_env import fresh_layer_names, import_keras, weightless_scope

    (saved_base / "spec.yaml").write_text("layers:\n" + "".join(f"  {line}\n" for line in layers_yaml.splitlines()))
    result = run_in(saved_base, "summary", "spec.yaml", "--format", "json")
    assert result.exit_code == 0, result.output
    with fresh_layer_names(), weightless_scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's warnings for input_shape, alpha...: seq's notes are tested apart
        expected = _keras_view(make(import_keras(), saved_base))
    assert _seq_view(json.loads(result.stdout)) == expected


def test_a_deprecated_argument_is_taken_with_keras_warning_as_a_note(saved_base):
    (saved_base / "dcgan.yaml").write_text("layers:\n  - Input: {shape: [4]}\n  - LeakyReLU: {alpha: 0.2}\n")
    result = run_in(saved_base, "check", "dcgan.yaml")
    assert result.exit_code == 0, result.output
    assert (
        "note: dcgan.yaml:3:17: layers[1].LeakyReLU.alpha: Argument `alpha` is deprecated. "
        "Use `negative_slope` instead." in result.stderr
    )
    summary = json.loads(run_in(saved_base, "summary", "dcgan.yaml", "--format", "json").stdout)
    assert [note["path"] for note in summary["notes"]] == ["layers[1].LeakyReLU.alpha"]


# ----------------------------------------------------------------------------- seeds

SEEDED_SPEC = """\
layers:
  - Input: {shape: [6, 6, 1]}
  - Conv2D: {filters: 2, kernel_size: 3, kernel_initializer: {HeNormal: {}}}
  - Dropout: {rate: 0.5}
  - Flatten: {}
  - Dense: {units: 3, activation: softmax}
compile: {loss: sparse_categorical_crossentropy}
data: {train: tiny.npz, validation: 0.25, batch_size: 4}
train: {seed: 7, epochs: 1}
"""


def test_train_seed_gives_the_initial_weights_of_a_keras_script(tmp_path):
    """keras.utils.set_random_seed(7), then the same model built in Keras: the weights seq starts training from."""
    from seqcli.keras_env import import_keras
    from seqcli.specfile import read_spec
    from seqcli.training.rundir import RunDirectory
    from seqcli.training.setup import prepare_training

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tiny.npz", x=rng.random((16, 6, 6, 1), dtype=np.float32), y=rng.integers(0, 3, 16))
    (tmp_path / "spec.yaml").write_text(SEEDED_SPEC)
    (tmp_path / "run").mkdir()
    setup = prepare_training(read_spec(tmp_path / "spec.yaml"), RunDirectory(tmp_path / "run"), None)
    keras = import_keras()
    keras.utils.set_random_seed(7)
    script = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(2, 3, kernel_initializer=keras.initializers.HeNormal()),
            keras.layers.Dropout(0.5),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    ours, theirs = setup.model.get_weights(), script.get_weights()
    assert len(ours) == len(theirs) == 4
    for mine, keras_weights in zip(ours, theirs):
        np.testing.assert_array_equal(mine, keras_weights)


def test_a_base_draws_its_seeds_before_the_head_as_in_a_keras_script(saved_base):
    """The guide's pattern (a base, then a new head): a Keras script makes the base first, so the initializers
    made while loading it take their seeds before the head's do; seq makes it in the same turn."""
    from seqcli.keras_env import import_keras
    from seqcli.modelbuild import build_model
    from seqcli.specfile import read_spec

    keras = import_keras()
    (saved_base / "head.yaml").write_text(
        "layers:\n  - Input: {shape: [3]}\n  - Model: {path: base.keras}\n  - Dense: {units: 2}\n"
    )
    keras.utils.set_random_seed(5)
    ours = build_model(read_spec(saved_base / "head.yaml")).model.get_weights()
    keras.utils.set_random_seed(5)
    base = keras.models.load_model(saved_base / "base.keras")
    theirs = keras.Sequential([keras.Input((3,)), base, keras.layers.Dense(2)]).get_weights()
    assert len(ours) == len(theirs) == 4
    for mine, keras_weights in zip(ours, theirs):
        np.testing.assert_array_equal(mine, keras_weights)


# ----------------------------------------------------------------------------- a whole run

REPRODUCED_SPEC = """\
layers:
  - Input: {shape: [4, 4, 1]}
  - Flatten: {}
  - Dropout: {rate: 0.2}
  - Dense: {units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
data: {train: tiny.npz, batch_size: 8, shuffle: false}
train:
  seed: 11
  epochs: 3
  learning_rate_schedule: {ExponentialDecay: {initial_learning_rate: 0.05, decay_steps: 3, decay_rate: 0.5}}
"""


@pytest.mark.slow
def test_a_keras_script_with_the_same_seed_reproduces_a_run(tmp_path):
    """keras.utils.set_random_seed(11), the same model, fit on the same data in the same order: the same
    weights to the bit, the same loss and accuracy each epoch (metrics reset every epoch), and a schedule that
    took the same steps (38 samples in batches of 8: the last one partial)."""
    from seqcli.keras_env import import_keras

    rng = np.random.default_rng(0)
    x, y = rng.random((38, 4, 4, 1), dtype=np.float32), rng.integers(0, 3, 38)
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    (tmp_path / "spec.yaml").write_text(REPRODUCED_SPEC)
    result = run_in(tmp_path, "train", "spec.yaml", "--output", "run", "--quiet")
    assert result.exit_code == 0, result.output
    keras = import_keras()
    keras.utils.set_random_seed(11)
    script = keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    decay = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    script.compile(optimizer=keras.optimizers.Adam(decay), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = script.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    for mine, keras_weights in zip(trained.get_weights(), script.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, keras_weights)
    with open(tmp_path / "run" / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["loss"]) for row in rows] == pytest.approx(history["loss"], abs=1e-5)
    assert [float(row["accuracy"]) for row in rows] == pytest.approx(history["accuracy"], abs=1e-5)
    assert int(trained.optimizer.iterations) == int(script.optimizer.iterations) == 15
    assert float(trained.optimizer.learning_rate) == float(script.optimizer.learning_rate)
