"""seqcli.models: the one door for model files. Safe-mode loading, the one weights-file check, weights that
do not fit, atomic saving, and the data-shape-against-input check."""

import zipfile

import numpy as np
import pytest

from seqcli.budget import LimitError
from seqcli.files import OutputError
from seqcli.modelbuild import model_from_spec
from seqcli.models import (
    ModelLoadError,
    WeightsError,
    check_data_shape,
    check_weights_file,
    load_model_file,
    load_weights,
    save_model,
)
from seqcli.shapes import DataShapeError, shape_fits
from seqcli.specfile import spec_from_text
from tests.conftest import run_in, write_tiny_project

SPEC = "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3}\n"


def small_model(units: int = 3):
    return model_from_spec(spec_from_text(SPEC.replace("units: 3", f"units: {units}")))


def test_save_then_load_gives_the_same_model(tmp_path):
    model = small_model()
    save_model(model, tmp_path / "m.keras")
    loaded = load_model_file(tmp_path / "m.keras")
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for mine, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # no temporary left behind


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    (tmp_path / "m.keras").write_bytes(b"previous")
    model = small_model()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(model), "save", full_disk)
    with pytest.raises(OutputError, match="No space left on device"):
        save_model(model, tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == b"previous"


def test_loading_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model_file(tmp_path / "missing.keras")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(LimitError, match="is not a readable zip archive"):  # refused before Keras reads it
        load_model_file(tmp_path / "broken.keras")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ModelLoadError) as broken:  # its config, read as JSON, is not a model's
        load_model_file(tmp_path / "empty.keras")
    assert broken.value.message.startswith(f"{tmp_path / 'empty.keras'} is not a model: ")


def test_the_weights_file_check(tmp_path):
    with pytest.raises(WeightsError) as missing:
        check_weights_file(tmp_path / "w.weights.h5", written_as="w.weights.h5", base_dir=tmp_path)
    assert missing.value.hint == f"'w.weights.h5' is relative to the spec's folder, {tmp_path}"
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"weights must be a \.weights\.h5 file .* received '.*w\.npz'"):
        check_weights_file(tmp_path / "w.npz")


def test_weights_of_another_model_are_refused_with_a_hint(tmp_path):
    small_model(5).save_weights(tmp_path / "five.weights.h5")
    with pytest.raises(WeightsError) as refused:
        load_weights(small_model(3), tmp_path / "five.weights.h5")
    assert "the weights must come from a model built from the same spec" in refused.value.hint
    model = small_model(3)
    model.save_weights(tmp_path / "three.weights.h5")
    other = small_model(3)
    load_weights(other, tmp_path / "three.weights.h5")
    np.testing.assert_array_equal(other.weights[0].numpy(), model.weights[0].numpy())


@pytest.mark.parametrize(
    ("model_shape", "shape", "fits"),
    [
        ((4,), (4,), True),
        ((None, 3), (7, 3), True),
        ((4,), (5,), False),
        ((4,), (4, 1), False),
        ((None,), (None,), True),
        ((), (), True),
        ((4,), (None,), False),  # a None in the model's shape takes any size; a size it names, that size only
        ([None, 3], (None, 3), True),
    ],
)
def test_shape_fits(model_shape, shape, fits):
    assert shape_fits(model_shape, shape) is fits


def refuse_every_shape(model_shape, shape) -> bool:
    return False


def compiled_model_file(folder) -> None:
    """The tiny project's spec as a compiled, untrained model.keras (no training needed to run it)."""
    from seqcli.specfile import load_spec

    model = model_from_spec(load_spec(folder / "tiny.yaml"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    save_model(model, folder / "model.keras")


EXPECTING = """layers:
  - Input: {shape: [4]}
    expect: [4]
  - Dense: {units: 3}
    expect: [3]
expect: {output: [3]}
"""
# Every path that compares samples (or a built shape) with what a model takes, and the words it says so in.
SHAPE_PATHS = {
    "check: expect": (
        ["check", "expecting.yaml"],
        "expected output shape (4,), but Input gives (4,)",
        "expected output shape (3,), built (3,)",
        "expected model output (3,), built (3,)",
    ),
    "train: the data file's header": (["train", "tiny.yaml", "--output", "run"], "but data.train's samples"),
    "train: a shape taken from the data": (["train", "shapeless.yaml", "--output", "run"], "but data.train's"),
    "predict": (["predict", "model.keras", "--data", "x.npy", "--output", "p.npy"], "have shape (4, 4, 1), but"),
    "evaluate": (["evaluate", "model.keras", "--data", "tiny.npz"], "have shape (4, 4, 1), but the model"),
    "extract": (["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "f.npz"], "have shape (4, 4, 1)"),
    "export": (["export", "model.keras", "--data", "x.npy", "--output", "m.tflite"], "have shape (4, 4, 1), but"),
}


@pytest.fixture(scope="module")
def shape_project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    spec = write_tiny_project(folder)
    (folder / "shapeless.yaml").write_text(spec.read_text().replace("  - Input: {shape: [4, 4, 1]}\n", ""))
    (folder / "expecting.yaml").write_text(EXPECTING)
    np.save(folder / "x.npy", np.load(folder / "tiny.npz")["x"][:8])
    compiled_model_file(folder)
    return folder


@pytest.mark.parametrize("path", SHAPE_PATHS)
def test_every_path_asks_the_one_shape_rule(shape_project, monkeypatch, path):
    """Plant a rule that refuses every shape in the one shape check: each path must then refuse shapes that
    do fit, so a path with a comparison of its own fails here."""
    command, *words = SHAPE_PATHS[path]
    monkeypatch.setattr(shape_fits, "__code__", refuse_every_shape.__code__)
    result = run_in(shape_project, *command)
    assert result.exit_code == 1, result.output
    assert all(word in result.stderr for word in words), result.stderr
    assert not (shape_project / "run").exists() and not (shape_project / "p.npy").exists()


def test_data_shape_against_the_model_input():
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    model = small_model()
    check_data_shape(model, tf.data.Dataset.from_tensor_slices(np.zeros((8, 4), np.float32)).batch(2), "data")
    wrong = tf.data.Dataset.from_tensor_slices((np.zeros((8, 5), np.float32), np.zeros(8))).batch(2)
    with pytest.raises(DataShapeError) as raised:
        check_data_shape(model, wrong, "data.train")
    assert raised.value.message == "data.train: samples have shape (5,), but the model takes (4,)"


def test_a_long_sequential_model_loads_in_one_pass(tmp_path, monkeypatch):
    """Keras's own Sequential.from_config rebuilds the model after each layer it adds: n**2/2 layer calls
    (500 layers took minutes); seq builds it once, after the last."""
    import keras

    count = 60
    save_model(
        keras.Sequential([keras.Input((4,)), *(keras.layers.ReLU() for _ in range(count))]), tmp_path / "l.keras"
    )
    calls = []
    original = keras.layers.ReLU.__call__

    def call(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.ReLU, "__call__", call)
    loaded = load_model_file(tmp_path / "l.keras")
    assert len(loaded.layers) == count
    assert len(calls) <= 3 * count, f"{len(calls)} layer calls to load {count} layers"


def test_class_names_in_a_model_file_are_read_within_their_bound(tmp_path):
    """The names seq keeps inside model.keras are JSON read through the archive door: a member declared larger
    than its bound is not read (no names), and a small one gives its names."""
    import json

    from seqcli.models import SEQ_MEMBER, SEQ_MEMBER_LIMIT, saved_class_names

    small, large = tmp_path / "small.keras", tmp_path / "large.keras"
    with zipfile.ZipFile(small, "w") as archive:
        archive.writestr(SEQ_MEMBER, json.dumps({"class_names": ["cat", "dog"]}))
    with zipfile.ZipFile(large, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SEQ_MEMBER, json.dumps({"class_names": ["a"] * (SEQ_MEMBER_LIMIT // 4)}))
    assert saved_class_names(small) == ["cat", "dog"]
    assert saved_class_names(large) is None
