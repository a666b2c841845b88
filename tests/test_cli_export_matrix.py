"""Every layer family seq trains x every export format: each cell is verified in its runtime, or refused
before any work with a named reason (never an unexpected error). The README's table is this matrix."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from seqcli.verbs.export_formats import FORMATS
from tests.conftest import run_seq as run

README = Path(__file__).resolve().parents[1] / "README.md"
ANY_LENGTH = "reads sequences of any length"
STRINGS = "cannot hold string preprocessing"


def dense(keras, rng):
    layers = [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3, "softmax")]
    return layers, rng.normal(0, 1, (8, 6))


def conv(keras, rng):
    layers = [keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, padding="same"), keras.layers.SeparableConv2D(2, 2)]
    return layers + [keras.layers.Flatten(), keras.layers.Dense(2)], rng.normal(0, 1, (8, 8, 8, 2))


def pooling(keras, rng):
    layers = [keras.Input((8, 8, 2)), keras.layers.MaxPooling2D(), keras.layers.AveragePooling2D(2)]
    return layers + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)], rng.normal(0, 1, (8, 8, 8, 2))


def normalization(keras, rng):
    x = rng.normal(3, 2, (8, 6))
    norm = keras.layers.Normalization()
    norm.adapt(x)
    batch = keras.layers.BatchNormalization()
    return [keras.Input((6,)), norm, keras.layers.Dense(4), batch, keras.layers.Dense(2)], x


def augmentation(keras, rng):
    layers = [
        keras.Input((8, 8, 3)),
        keras.layers.RandomFlip(),
        keras.layers.RandomRotation(0.1),
        keras.layers.RandomZoom(0.1),
        keras.layers.RandomContrast(0.2),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Dropout(0.5),
    ]
    return layers + [keras.layers.Flatten(), keras.layers.Dense(2)], rng.uniform(0, 255, (8, 8, 8, 3))


def recurrent(keras, rng):
    layers = [
        keras.Input((3, 2)),
        keras.layers.LSTM(4, return_sequences=True),
        keras.layers.GRU(3, return_sequences=True),
    ]
    return layers + [keras.layers.SimpleRNN(2), keras.layers.Dense(2)], rng.normal(0, 1, (8, 3, 2))


def bidirectional(keras, rng):
    layers = [keras.Input((3, 2)), keras.layers.Bidirectional(keras.layers.LSTM(3)), keras.layers.Dense(2)]
    return layers, rng.normal(0, 1, (8, 3, 2))


def embedding(keras, rng):
    layers = [keras.Input((5,), dtype="int32"), keras.layers.Embedding(20, 4), keras.layers.SimpleRNN(3)]
    return layers + [keras.layers.Dense(2)], rng.integers(0, 20, (8, 5))


def recurrent_any_length(keras, rng):
    layers = [keras.Input((None, 2)), keras.layers.GRU(3), keras.layers.Dense(2)]
    return layers, rng.normal(0, 1, (8, 3, 2))


FAMILIES = {
    "dense": dense,
    "conv": conv,
    "pooling": pooling,
    "normalization": normalization,
    "augmentation": augmentation,
    "recurrent": recurrent,
    "bidirectional": bidirectional,
    "embedding": embedding,
    "recurrent, any length": recurrent_any_length,
}
REFUSED = {("recurrent, any length", "tflite"): ANY_LENGTH}
# The cells that once failed (ONNX with Normalization or augmentation, LiteRT with LSTM) and the refusals
# stay in the quick suite; the rest of the matrix is slow.
QUICK = {("normalization", "onnx"), ("augmentation", "onnx"), ("bidirectional", "tflite"), *REFUSED}


def cells():
    for family in FAMILIES:
        for fmt in FORMATS:
            marks = [] if (family, fmt) in QUICK else [pytest.mark.slow]
            yield pytest.param(family, fmt, marks=marks, id=f"{family}-{fmt}")


def save(family: str, folder: Path) -> tuple[Path, Path, object]:
    import keras

    rng = np.random.default_rng(3)
    layers, x = FAMILIES[family](keras, rng)
    model = keras.Sequential(layers, name=re.sub(r"\W+", "_", family))
    x = x.astype(model.inputs[0].dtype)
    model(x[:2])
    model.save(folder / "model.keras")
    np.save(folder / "x.npy", x)
    return folder / "model.keras", folder / "x.npy", model


@pytest.mark.parametrize(("family", "fmt"), cells())
def test_each_family_exports_or_is_refused_up_front(tmp_path, family, fmt):
    model_path, data, model = save(family, tmp_path)
    output = tmp_path / f"out.{fmt}"
    result = run("export", model_path, "--to", fmt, "--output", output, "--data", data, "--samples", 8)
    reason = REFUSED.get((family, fmt))
    if reason is not None:
        assert result.exit_code == 1 and reason in result.stderr, result.output
        assert "export: converting" not in result.stderr  # refused before any work
        assert not output.exists()
        return
    assert result.exit_code == 0, result.output
    assert "bug in seq" not in result.stderr and "warning:" not in result.stderr
    assert "  input  inputs: " in result.stdout and "  output outputs: " in result.stdout


def test_string_preprocessing_is_refused_by_name_for_tflite_and_onnx(tmp_path):
    import keras

    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], name="words")
    model = keras.Sequential([keras.Input((3,), dtype="string"), lookup, keras.layers.Embedding(4, 2)])
    model.save(tmp_path / "model.keras")
    for fmt in ("tflite", "onnx"):
        result = run("export", tmp_path / "model.keras", "--to", fmt, "--output", tmp_path / f"m.{fmt}")
        assert result.exit_code == 1
        assert f"as {fmt}: StringLookup layer 'words': this format {STRINGS}" in result.stderr, result.output
        assert "hint: export with --to saved_model" in result.stderr


def test_the_readme_table_is_the_matrix():
    text = README.read_text()
    rows = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| Layer family") and "---" not in line
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
        if cells[0] in FAMILIES or cells[0] == "string preprocessing"
    }
    assert set(rows) == {*FAMILIES, "string preprocessing"}
    for family in FAMILIES:
        for fmt, cell in zip(FORMATS, rows[family]):
            expected = "refused: fixed length needed" if (family, fmt) in REFUSED else "verified"
            assert cell == expected, (family, fmt, cell)
    assert rows["string preprocessing"] == ["(later)", "refused: strings", "refused: strings"]
