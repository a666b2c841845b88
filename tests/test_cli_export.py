"""`seq export`: SavedModel, LiteRT and ONNX artifacts, verified in their own runtime before they appear."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli

FORMATS = ["saved_model", "tflite", "onnx"]
LITERT = "ai_edge_litert" if importlib.util.find_spec("ai_edge_litert") else "tf.lite"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_artifact(fmt: str, path, inputs: np.ndarray) -> np.ndarray:
    """The artifact's predictions, computed here independently of seqcli.export."""
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path / "1")).signatures["serving_default"]
        return serve(inputs=tf.constant(inputs))["outputs"].numpy()
    if fmt == "tflite":
        from seqcli.export_formats import litert_interpreter

        interpreter, _ = litert_interpreter(path)
        return interpreter.get_signature_runner("serving_default")(inputs=inputs)["outputs"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["outputs"], {"inputs": inputs})[0]


def problems(result) -> str:
    """stderr without the stage lines ('export: converting to tflite'...) a log shows while it works."""
    return "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("export: "))


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "staging" in p.name or p.name.startswith("."))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_run_exports_and_predicts_like_keras(trained, tmp_path, fmt):
    import keras

    output = tmp_path / {"saved_model": "model", "tflite": "model.tflite", "onnx": "model.onnx"}[fmt]
    result = run("export", trained / "run", "--format", fmt, "--output", output)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    artifact = output / "1" if fmt == "saved_model" else output
    assert lines[0].startswith(f"Exported model 'tiny' as {fmt} to {artifact} (")
    assert lines[1] == "  input  inputs: (None, 4, 4, 1) float32"
    assert lines[2] == "  output outputs: (None, 3) float32"
    runtime = {"saved_model": "tf.saved_model", "tflite": LITERT, "onnx": "onnxruntime"}[fmt]
    source = trained / "run" / "spec.yaml"
    assert lines[3].startswith(
        f"Verified in {runtime} on 32 samples of data.train of {source} and 32 random inputs in their range: "
        "max difference "
    )
    assert output.exists() and leftovers(tmp_path) == []
    x = np.load(trained / "tiny.npz")["x"][:20]
    expected = keras.saving.load_model(trained / "run" / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(run_artifact(fmt, output, x), expected, atol=1e-5)


def test_json_report(trained, tmp_path):
    result = run("export", trained / "run", "--output", tmp_path / "m.tflite", "--json", "--samples", "5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "tflite" and report["samples"] == 5 and report["runtime"] == LITERT
    assert report["random_inputs"] == 5 and report["warnings"] == []
    assert report["bytes"] == (tmp_path / "m.tflite").stat().st_size
    assert 0 <= report["max_difference"] <= 1e-5
    assert report["inputs"][0]["shape"] == [None, 4, 4, 1] and report["inputs"][0]["dtype"] == "float32"
    assert report["outputs"][0]["shape"] == [None, 3]


def test_an_existing_output_needs_overwrite(trained, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"earlier")
    refused = run("export", trained / "run", "--output", tmp_path / "m.onnx")
    assert refused.exit_code == 1
    assert problems(refused) == (
        f"error: {tmp_path / 'm.onnx'} exists\n  hint: add --overwrite to replace it, or choose another --output\n"
    )
    assert (tmp_path / "m.onnx").read_bytes() == b"earlier"
    replaced = run("export", trained / "run", "--output", tmp_path / "m.onnx", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert (tmp_path / "m.onnx").read_bytes() != b"earlier" and leftovers(tmp_path) == []


def test_a_folder_seq_did_not_write_is_never_replaced(trained, tmp_path):
    """--overwrite replaces a SavedModel seq exported, never a folder holding the user's own files."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    refused = run("export", trained / "run", "--format", "saved_model", "--output", tmp_path / "out", "--overwrite")
    assert refused.exit_code == 1 and "notes.txt" in problems(refused), refused.output
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    first = run("export", trained / "run", "--format", "saved_model", "--output", tmp_path / "model")
    assert first.exit_code == 0, first.output
    again = run("export", trained / "run", "--format", "saved_model", "--output", tmp_path / "model", "--overwrite")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "model" / "1" / "saved_model.pb").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_an_unverified_export_leaves_nothing_behind(trained, tmp_path, monkeypatch, fmt):
    from seqcli import export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference is small enough
    result = run("export", trained / "run", "--format", fmt, "--output", tmp_path / "out")
    assert result.exit_code == 1
    differ = "error: the exported model's predictions differ from the Keras model's by up to "
    assert problems(result).startswith(differ)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_keeps_what_was_there(trained, tmp_path, monkeypatch):
    from seqcli import export

    (tmp_path / "m.tflite").write_bytes(b"earlier")

    def half_written(model, names, artifact, scratch):
        artifact.write_bytes(b"half")
        raise export.ExportError("the converter failed")

    row = dataclasses.replace(export.FORMATS["tflite"], write=half_written)
    monkeypatch.setitem(export.FORMATS, "tflite", row)
    result = run("export", trained / "run", "--output", tmp_path / "m.tflite", "--overwrite")
    assert result.exit_code == 1 and problems(result) == "error: the converter failed\n"
    assert (tmp_path / "m.tflite").read_bytes() == b"earlier" and leftovers(tmp_path) == []


def test_onnx_without_its_packages_says_what_to_install(trained, tmp_path, monkeypatch):
    from seqcli import export

    row = dataclasses.replace(export.FORMATS["onnx"], packages=("tf2onnx", "no_such_package_seq"))
    monkeypatch.setitem(export.FORMATS, "onnx", row)
    result = run("export", trained / "run", "--output", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert problems(result) == (
        "error: onnx export needs no_such_package_seq, which is not installed\n"
        "  hint: pip install 'seqcli[onnx]'  (or: pip install tf2onnx no_such_package_seq)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_model_file_needs_data_to_verify_with(trained, tmp_path):
    result = run("export", trained / "run" / "model.keras", "--output", tmp_path / "m.tflite")
    assert result.exit_code == 1
    assert "error: no inputs to verify the export of" in result.stderr and "pass --data SOURCE" in result.stderr
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 5), np.float32))
    result = run("export", trained / "run" / "model.keras", "--output", tmp_path / "m.tflite", "--data", wrong)
    assert result.exit_code == 1
    assert problems(result).startswith(f"error: {wrong}: samples have shape (5,), but the model takes (4, 4, 1)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.npy"]


def save_model(model, tmp_path, x):
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_frozen_batch_norm_and_rescaling_export(tmp_path, fmt):
    import keras

    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Rescaling(1 / 255, offset=-0.5),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    norm = model.layers[2]
    rng = np.random.default_rng(1)
    norm.set_weights([w + rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in norm.get_weights()])
    norm.trainable = False
    x = rng.uniform(0, 255, (8, 6, 6, 3)).astype(np.float32)
    path = save_model(model, tmp_path, x)
    output = tmp_path / f"out.{fmt}"
    result = run("export", path, "--format", fmt, "--output", output, "--data", tmp_path / "x.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(run_artifact(fmt, output, x), model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_application_base_exports(tmp_path, fmt):
    import keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.applications.MobileNetV2(
                weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3), alpha=0.35
            ),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    x = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    path = save_model(model, tmp_path, x)
    output = tmp_path / f"out.{fmt}"
    result = run("export", path, "--format", fmt, "--output", output, "--data", tmp_path / "x.npy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_difference"] <= 1e-5
    np.testing.assert_allclose(run_artifact(fmt, output, x), model.predict(x, verbose=0), atol=1e-5)
