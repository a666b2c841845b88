"""Layers that learn their state from the training data (adapt), class weights, sample weights and stratified
validation: each equal to what Keras itself computes on the same data."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_same_checkpoint
from tests.conftest import run_seq as run

BATCH, SEED = 8, 3

# A tabular binary task as keras.io's structured-data example has it: raw features of very different scales,
# one sigmoid unit, binary_crossentropy on a CSV's 0/1 labels.
TABULAR = """\
layers:
  - Input: {{shape: [3]}}
  - Rescaling: {{scale: 0.5}}
  - Normalization: {{}}
  - Discretization: {{num_bins: 4, output_mode: one_hot}}
  - Flatten: {{}}
  - Dense: {{units: 1, activation: sigmoid}}
compile: {{optimizer: adam, loss: binary_crossentropy, metrics: [accuracy]}}
data:
  train: table.csv
  batch_size: {batch}
{data_extra}train:
  epochs: {epochs}
  seed: {seed}
{train_extra}"""


def table(count: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(count, 3)) * [1, 10, 100] + [0, 5, 50]).round(3).astype(np.float32)
    y = (x[:, 0] + x[:, 1] / 10 > 0.5).astype(np.int64)
    return x, y


def write_table(directory: Path, count: int = 48, *, weights: np.ndarray | None = None) -> Path:
    x, y = table(count)
    columns = ["a", "b", "c", "label"] + (["w"] if weights is not None else [])
    rows = [",".join(columns)]
    for index in range(count):
        cells = [*(f"{v:.3f}" for v in x[index]), str(y[index])]
        cells += [f"{weights[index]:g}"] if weights is not None else []
        rows.append(",".join(cells))
    (directory / "table.csv").write_text("\n".join(rows) + "\n")
    return directory / "table.csv"


def write_project(directory: Path, *, epochs: int = 1, data_extra: str = "", train_extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_table(directory)
    spec = directory / "spec.yaml"
    spec.write_text(
        TABULAR.format(batch=BATCH, epochs=epochs, seed=SEED, data_extra=data_extra, train_extra=train_extra)
    )
    return spec


@pytest.fixture(scope="module")
def adapted_run(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("adapted")
    spec = write_project(directory)
    result = run("train", spec, "--output", directory / "run")
    assert result.exit_code == 0, result.output
    adapted = "layers[2] Normalization (mean, variance); layers[3] Discretization (bin_boundaries): on 48 samples"
    assert adapted in result.stdout
    return directory / "run"


def keras_adapted(x: np.ndarray):
    """Keras's own adapt of the tabular spec's layers, each on the data as it arrives there."""
    from seqcli.keras_env import import_keras, import_tensorflow

    keras, tf = import_keras(), import_tensorflow()
    rescaled = x * np.float32(0.5)
    normalization = keras.layers.Normalization()
    normalization.adapt(tf.data.Dataset.from_tensor_slices(rescaled).batch(BATCH))
    discretization = keras.layers.Discretization(num_bins=4, output_mode="one_hot")
    normalized = normalization(rescaled).numpy()
    discretization.adapt(tf.data.Dataset.from_tensor_slices(normalized).batch(BATCH))
    return normalization, discretization


def model_layers(run_dir: Path) -> dict:
    from seqcli.keras_env import import_keras

    model = import_keras().saving.load_model(run_dir / "model.keras")
    return {type(layer).__name__: layer for layer in model.layers}


def test_adapted_statistics_equal_keras_adapt_on_the_data_as_it_arrives(adapted_run):
    """Normalization after Rescaling adapts on rescaled values; Discretization after it on normalized ones;
    model.keras carries both states, equal to the bit to Keras's adapt on the same batches."""
    normalization, discretization = keras_adapted(table()[0])
    layers = model_layers(adapted_run)
    config = layers["Normalization"].get_config()
    np.testing.assert_array_equal(np.asarray(config["mean"], np.float32), normalization.adapt_mean.numpy())
    np.testing.assert_array_equal(np.asarray(config["variance"], np.float32), normalization.adapt_variance.numpy())
    assert layers["Discretization"].bin_boundaries == discretization.bin_boundaries


def test_predict_and_evaluate_use_the_adapted_state(adapted_run, tmp_path):
    """A CSV of features only feeds predict whole (no column taken as the label); the predictions are the
    saved model's own on those features, adapted state included."""
    x, y = table()
    features = tmp_path / "features.csv"
    features.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in x) + "\n")
    result = run("predict", adapted_run, "--data", features, "--output", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    from seqcli.keras_env import import_keras

    model = import_keras().saving.load_model(adapted_run / "model.keras")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(x, verbose=0), rtol=1e-6)
    evaluated = run("evaluate", adapted_run, "--data", adapted_run.parent / "table.csv", "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.slow
def test_a_sample_cap_adapts_on_a_seeded_subset(tmp_path):
    from seqcli.data.pipeline import adapt_indices

    spec = write_project(tmp_path, data_extra="  adapt: {samples: 20}\n")
    result = run("train", spec, "--output", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "on 20 samples of data.train" in result.stdout
    chosen = adapt_indices(np.arange(48), 20, SEED)
    assert len(chosen) == 20 and np.array_equal(chosen, adapt_indices(np.arange(48), 20, SEED))
    normalization, _ = keras_adapted(table()[0][chosen])
    mean = model_layers(tmp_path / "run")["Normalization"].get_config()["mean"]
    np.testing.assert_array_equal(np.asarray(mean, np.float32), normalization.adapt_mean.numpy())


def test_a_resumed_adapted_run_equals_an_uninterrupted_one_and_never_adapts_again(tmp_path, monkeypatch):
    from seqcli.training import loop, preprocess

    extra = "  checkpoint_every: 1\n"
    reference = write_project(tmp_path / "reference", epochs=2, train_extra=extra)
    assert run("train", reference, "--output", tmp_path / "reference" / "run", "-q").exit_code == 0

    spec = write_project(tmp_path / "stopped", epochs=2, train_extra=extra)
    steps_done = loop.Trainer.steps_done

    def stop_at_step_3(self, done, logs):
        if done == 3 and self.setup.state.epoch == 0:
            self.guard.received = signal.SIGINT
        steps_done(self, done, logs)

    monkeypatch.setattr(preprocess, "_ADAPTED", {})  # the reference's state would be reused: adapt again
    monkeypatch.setattr(loop.Trainer, "steps_done", stop_at_step_3)
    stopped = run("train", spec, "--output", tmp_path / "stopped" / "run")
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.undo()

    def no_adapting(*args, **kwargs):
        raise AssertionError("a resumed run adapted again")

    monkeypatch.setattr(preprocess, "adapt_layers", no_adapting)
    resumed = run("train", spec, "--output", tmp_path / "stopped" / "run", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "Discretization (bin_boundaries): from the checkpoint" in resumed.stdout
    assert_same_checkpoint(tmp_path / "reference" / "run", tmp_path / "stopped" / "run")
    first = model_layers(tmp_path / "reference" / "run")["Discretization"].bin_boundaries
    assert model_layers(tmp_path / "stopped" / "run")["Discretization"].bin_boundaries == first


# ----------------------------------------------------------------------------- class and sample weights

WEIGHTED = """\
layers:
  - Input: {shape: [3]}
  - Dense: {units: 4, activation: relu, kernel_initializer: {GlorotUniform: {seed: 1}}}
  - Dense: {units: 2, activation: softmax, kernel_initializer: {GlorotUniform: {seed: 2}}}
compile: {optimizer: {SGD: {learning_rate: 0.1}}, loss: sparse_categorical_crossentropy}
data: {train: {path: table.csv, weights: w}, batch_size: 8, shuffle: false}
train: {epochs: 2, seed: 3, class_weight: balanced}
"""


def keras_reference(x: np.ndarray, y: np.ndarray, **fit_arguments) -> list[np.ndarray]:
    """The weights Keras's own fit gives the WEIGHTED model on the same data, batches and order."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
            keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, **fit_arguments)
    return [np.asarray(weight) for weight in model.weights]


def assert_same_weights(run_dir: Path, expected: list[np.ndarray]) -> None:
    from seqcli.keras_env import import_keras

    trained = import_keras().saving.load_model(run_dir / "model.keras")
    assert len(trained.weights) == len(expected)
    for ours, theirs in zip(trained.weights, expected):
        np.testing.assert_array_equal(np.asarray(ours), theirs, err_msg=ours.path)


def test_balanced_class_weights_train_as_keras_fit_does(tmp_path):
    """class_weight: balanced is scikit-learn's n_samples / (n_classes * count), printed in the header; the
    run's weights equal Keras fit(class_weight=...) on the same data to the bit."""
    x, y = table()
    write_table(tmp_path)
    (tmp_path / "spec.yaml").write_text(WEIGHTED.replace("{path: table.csv, weights: w}", "table.csv"))
    result = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "run")
    assert result.exit_code == 0, result.output
    counts = np.bincount(y)
    balanced = {label: len(y) / (2 * counts[label]) for label in (0, 1)}
    assert f"Class weights  0: {balanced[0]:.4g}, 1: {balanced[1]:.4g} (balanced)" in result.stdout
    assert_same_weights(tmp_path / "run", keras_reference(x, y, class_weight=balanced))


def test_a_weights_column_trains_as_keras_sample_weights(tmp_path):
    x, y = table()
    weights = np.resize(np.array([0.5, 1, 1.5, 2], np.float32), len(y))  # exact in the CSV's text
    write_table(tmp_path, weights=weights)
    (tmp_path / "spec.yaml").write_text(WEIGHTED.replace("class_weight: balanced", "class_weight: null"))
    result = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    assert_same_weights(tmp_path / "run", keras_reference(x, y, sample_weight=weights))
    (tmp_path / "spec.yaml").write_text(WEIGHTED)
    both = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "other")
    assert both.exit_code == 1
    assert "spec.yaml:7:43: train.class_weight: train.class_weight and sample weights" in both.stderr


def test_class_weights_by_id_and_a_name_without_class_names(tmp_path):
    write_table(tmp_path)
    spec = WEIGHTED.replace("{path: table.csv, weights: w}", "table.csv")
    (tmp_path / "spec.yaml").write_text(spec.replace("class_weight: balanced", "class_weight: {0: 1, yes: 2}"))
    result = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert "spec.yaml:7:50: train.class_weight.yes: class name 'yes', but data.train has no class names" in (
        result.stderr
    )
    (tmp_path / "spec.yaml").write_text(spec.replace("class_weight: balanced", "class_weight: {0: 1, 1: 2.5}"))
    result = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "Class weights  0: 1, 1: 2.5" in result.stdout


def test_a_stratified_split_keeps_each_class_share_deterministically(tmp_path):
    from seqcli.data import load_datasets

    y = np.array([0] * 40 + [1] * 10 + [2] * 30)
    np.savez(tmp_path / "d.npz", x=np.arange(len(y), dtype=np.float32).reshape(-1, 1), y=y)
    section = {"train": "d.npz", "validation": {"fraction": 0.2, "stratify": True}}
    first = load_datasets(section, tmp_path, seed=5)
    assert np.bincount(y[np.setdiff1d(np.arange(len(y)), [])])[1] == 10
    assert np.array_equal(np.bincount(first.train_labels), [32, 8, 24])
    assert first.validation_count == 16
    again = load_datasets(section, tmp_path, seed=5)
    assert np.array_equal(first.train_labels, again.train_labels)
    other = load_datasets(section, tmp_path, seed=6)
    validation = np.concatenate([batch[0].numpy().ravel() for batch in other.validation])
    assert np.array_equal(np.bincount(y[validation.astype(int)]), [8, 2, 6])


# ----------------------------------------------------------------------------- what check and summary say


def test_summary_and_check_name_the_layers_that_adapt_and_a_spec_without_training_data(tmp_path):
    spec = write_project(tmp_path)
    summary = run("summary", spec)
    assert summary.exit_code == 0, summary.output
    assert "Adapts before training: layers[2] Normalization learns its mean, variance from data.train" in (
        summary.stdout
    )
    checked = run("check", spec, "--format", "json")
    assert '"learns": "bin_boundaries"' in checked.stdout
    bare = tmp_path / "bare.yaml"
    bare.write_text("layers:\n  - Input: {shape: [3]}\n  - Normalization: {axis: -1}\n  - Dense: {units: 1}\n")
    result = run("check", bare)
    assert result.exit_code == 1
    assert (
        "bare.yaml:3:5: layers[1].Normalization: Normalization learns its mean, variance from the training data, "
        "but the spec has no data.train" in result.stderr
    )


def test_a_pandas_index_column_is_named_not_widened(tmp_path):
    x, y = table(10)
    lines = [",a,b,c,label"] + [f"{i}," + ",".join(f"{v:.3f}" for v in x[i]) + f",{y[i]}" for i in range(10)]
    (tmp_path / "indexed.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "spec.yaml").write_text(
        WEIGHTED.replace("{path: table.csv, weights: w}", "indexed.csv").replace("class_weight: balanced", "")
    )
    result = run("train", tmp_path / "spec.yaml", "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert "the first column of" in result.stderr and "holds the row numbers 0..9" in result.stderr
    assert "to_csv(..., index=False), or list the features: `features: [a, b, c]`" in result.stderr
    assert "make the input shape" not in result.stderr


@pytest.mark.parametrize(
    ("class_name", "args", "data"),
    [
        ("StringLookup", {"output_mode": "tf_idf"}, [["a"], ["b"], ["a"], ["c"], ["d"], ["a"], ["b"]]),
        ("IntegerLookup", {"num_oov_indices": 2}, [3, 3, 5, 7, 7, 7, 9]),
        ("TextVectorization", {"max_tokens": 8, "output_sequence_length": 4}, ["the cat sat", "a dog ran", "the cat"]),
        ("Discretization", {"num_bins": 3}, [[0.5], [1.5], [2.5], [3.5], [9.0]]),
    ],
)
def test_a_learned_state_rebuilds_the_adapted_layer_exactly(class_name, args, data):
    """What a checkpoint keeps of an adapted layer (its constructor arguments) makes a layer that gives the
    adapted one's outputs, for every kind of layer that adapts."""
    from seqcli.keras_env import import_keras, import_tensorflow
    from seqcli.modelbuild.adapt import adapted_arguments, layer_state
    from seqcli.specfile import LayerEntry

    keras, tf = import_keras(), import_tensorflow()
    data = np.array(data)
    adapted = getattr(keras.layers, class_name)(**args)
    adapted.adapt(tf.data.Dataset.from_tensor_slices(data).batch(3))
    entry = LayerEntry(1, class_name, dict(args), None, ("layers", 1))
    rebuilt = getattr(keras.layers, class_name)(**adapted_arguments(entry, {"1": layer_state(adapted, class_name)}))
    np.testing.assert_array_equal(np.asarray(rebuilt(data)), np.asarray(adapted(data)))


def test_extract_from_the_spec_takes_the_learned_state_from_the_runs_model(adapted_run, tmp_path):
    """seq extract SPEC --weights RUN/model.keras: the adapting layers take the state the run learned (read
    from the model's config), so the features are the trained model's; a .weights.h5 cannot hold it."""
    from seqcli.keras_env import import_keras

    x, _ = table()
    features = tmp_path / "features.csv"
    features.write_text("a,b,c\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in x) + "\n")
    spec = adapted_run.parent / "spec.yaml"
    model_file = adapted_run / "model.keras"
    result = run("extract", spec, "--weights", model_file, "--data", features, "--all", "-o", tmp_path / "f.npz")
    assert result.exit_code == 0, result.output
    model = import_keras().saving.load_model(model_file)
    with np.load(tmp_path / "f.npz") as extracted:
        np.testing.assert_allclose(extracted[model.layers[-1].name], model.predict(x, verbose=0), rtol=1e-6)
    model.save_weights(tmp_path / "only.weights.h5")
    refused = run(
        "extract",
        spec,
        "--weights",
        tmp_path / "only.weights.h5",
        "--data",
        features,
        "--all",
        "-o",
        tmp_path / "g.npz",
    )
    assert refused.exit_code == 1
    assert "spec.yaml:4:5: layers[2].Normalization: a .weights.h5 file cannot hold the state" in refused.stderr


def test_runs_of_one_process_adapt_once_for_the_same_data_and_layers(tmp_path, monkeypatch):
    """As tune's trials do: a second run that changes only what adapting does not depend on (epochs, the
    optimizer) reuses the state; changed data adapts again."""
    from seqcli.training import preprocess

    calls = []
    adapt_layers = preprocess.adapt_layers
    monkeypatch.setattr(preprocess, "_ADAPTED", {})
    monkeypatch.setattr(preprocess, "adapt_layers", lambda *args: calls.append(1) or adapt_layers(*args))
    spec = write_project(tmp_path)
    assert run("train", spec, "--output", tmp_path / "a", "-q").exit_code == 0
    assert run("train", spec, "--output", tmp_path / "b", "-q", "--set", "compile.optimizer=sgd").exit_code == 0
    assert len(calls) == 1
    assert (
        model_layers(tmp_path / "a")["Normalization"].get_config()
        == model_layers(tmp_path / "b")["Normalization"].get_config()
    )
    table_file = tmp_path / "table.csv"
    table_file.write_text(table_file.read_text().replace("\n0.", "\n1.", 1))
    assert run("train", spec, "--output", tmp_path / "c", "-q").exit_code == 0
    assert len(calls) == 2
