"""`seq export`: SavedModel, LiteRT and ONNX artifacts, verified in their own runtime before they appear."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from tests.conftest import run_seq as run

FORMATS = ["saved_model", "tflite", "onnx"]
LITERT = "ai_edge_litert" if importlib.util.find_spec("ai_edge_litert") else "tf.lite"


def run_artifact(fmt: str, path, inputs: np.ndarray) -> np.ndarray:
    """The artifact's predictions, computed here independently of seqcli.verbs.export."""
    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path / "1")).signatures["serving_default"]
        return serve(inputs=tf.constant(inputs))["outputs"].numpy()
    if fmt == "tflite":
        from seqcli.verbs.export_formats import litert_interpreter

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
    result = run("export", trained / "run", "--to", fmt, "--output", output)
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
    result = run("export", trained / "run", "--output", tmp_path / "m.tflite", "--format", "json", "--samples", "5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "tflite" and report["samples"] == 5 and report["runtime"] == LITERT
    assert report["random_inputs"] == 5 and report["warnings"] == []
    assert report["bytes"] == (tmp_path / "m.tflite").stat().st_size
    assert 0 <= report["max_difference"] <= 1e-5
    assert report["inputs"][0]["shape"] == [None, 4, 4, 1] and report["inputs"][0]["dtype"] == "float32"
    assert report["outputs"][0]["shape"] == [None, 3]


def test_the_older_spellings_still_work_and_say_the_new_one(trained, tmp_path):
    """--format ARTIFACT (now --to) and --json (now --format json): the same export, one note each."""
    result = run("export", trained / "run", "--format", "tflite", "--json", "-o", tmp_path / "m.bin", "--samples", 2)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "tflite"
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: '--format tflite' is now spelled '--to tflite'",
        "note: '--json' is now spelled '--format json'",
    ]
    clash = run("export", trained / "run", "--format", "onnx", "--to", "tflite", "-o", tmp_path / "m.x")
    assert clash.exit_code == 2 and "--format onnx and --to tflite name two artifacts" in clash.stderr


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
    refused = run("export", trained / "run", "--to", "saved_model", "--output", tmp_path / "out", "--overwrite")
    assert refused.exit_code == 1 and "notes.txt" in problems(refused), refused.output
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    first = run("export", trained / "run", "--to", "saved_model", "--output", tmp_path / "model")
    assert first.exit_code == 0, first.output
    again = run("export", trained / "run", "--to", "saved_model", "--output", tmp_path / "model", "--overwrite")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "model" / "1" / "saved_model.pb").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_an_unverified_export_leaves_nothing_behind(trained, tmp_path, monkeypatch, fmt):
    from seqcli.verbs import export

    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference is small enough
    result = run("export", trained / "run", "--to", fmt, "--output", tmp_path / "out")
    assert result.exit_code == 1
    differ = "error: the exported model's predictions differ from the Keras model's by up to "
    assert problems(result).startswith(differ)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_keeps_what_was_there(trained, tmp_path, monkeypatch):
    from seqcli.verbs import export

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
    from seqcli.verbs import export

    row = dataclasses.replace(export.FORMATS["onnx"], packages=("tf2onnx", "no_such_package_seq"))
    monkeypatch.setitem(export.FORMATS, "onnx", row)
    result = run("export", trained / "run", "--output", tmp_path / "m.onnx")
    assert result.exit_code == 3  # the environment lacks something, not the input
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
    result = run("export", path, "--to", fmt, "--output", output, "--data", tmp_path / "x.npy")
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
    result = run("export", path, "--to", fmt, "--output", output, "--data", tmp_path / "x.npy", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_difference"] <= 1e-5
    np.testing.assert_allclose(run_artifact(fmt, output, x), model.predict(x, verbose=0), atol=1e-5)


# ----------------------------------------------------------------------------- names a client can rely on


def signature(result) -> dict:
    report = json.loads(result.stdout)
    return {"inputs": report["inputs"], "outputs": report["outputs"]}


@pytest.fixture(scope="module")
def transferred(trained, tmp_path_factory):
    """A `seq transfer` run (blueprint one) of the tiny project, from the trained run's weights."""
    output = tmp_path_factory.mktemp("transfer") / "tr"
    result = run("transfer", trained / "tiny.yaml", "--weights", trained / "run" / "model.keras", "--output", output)
    assert result.exit_code == 0, result.output
    return output


@pytest.mark.parametrize(
    "fmt", [pytest.param("saved_model", marks=pytest.mark.slow), pytest.param("tflite", marks=pytest.mark.slow), "onnx"]
)
def test_train_and_transfer_exports_have_the_same_names(trained, transferred, tmp_path, fmt):
    """Keras names the Input of every model it builds anew (input_layer, input_layer_4...): the export must not."""
    import keras

    sources = (trained / "run", transferred / "phase1")
    assert len({keras.saving.load_model(source / "model.keras").inputs[0].name for source in sources}) == 2
    exported = [
        run("export", source, "--to", fmt, "--output", tmp_path / f"{fmt}-{i}", "--format", "json", "--samples", 4)
        for i, source in enumerate(sources)
    ]
    assert all(result.exit_code == 0 for result in exported), [r.output for r in exported]
    assert signature(exported[0]) == signature(exported[1])
    assert signature(exported[0])["inputs"] == [{"name": "inputs", "shape": [None, 4, 4, 1], "dtype": "float32"}]
    assert signature(exported[0])["outputs"] == [{"name": "outputs", "shape": [None, 3], "dtype": "float32"}]


def test_a_transfer_folder_is_a_run_for_export_evaluate_and_plot(transferred, tmp_path):
    exported = run("export", transferred, "--output", tmp_path / "m.onnx", "--samples", 4, "--format", "json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["data"] == f"data.train of {transferred / 'spec.yaml'}"
    evaluated = run("evaluate", transferred, "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    plotted = run("plot", transferred, "--output", tmp_path / "curves.png")
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_an_unfinished_transfer_folder_names_its_phases(tmp_path):
    (tmp_path / "tr" / "phase1").mkdir(parents=True)
    result = run("export", tmp_path / "tr", "--output", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert "hint: a 'seq transfer' folder gets its model.keras when its last phase (phase1, or phase2" in result.stderr


def test_a_named_input_names_the_served_input(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,), name="pixels"), keras.layers.Dense(2)])
    x = np.random.default_rng(4).normal(0, 1, (6, 3)).astype(np.float32)
    path = save_model(model, tmp_path, x)
    result = run("export", path, "--output", tmp_path / "m.onnx", "--data", tmp_path / "x.npy", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [t["name"] for t in json.loads(result.stdout)["inputs"]] == ["pixels"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(["outputs"], {"pixels": x})
    np.testing.assert_allclose(output, model.predict(x, verbose=0), atol=1e-5)


# ----------------------------------------------------------------------------- TF Serving's layout


def test_saved_model_versions_sit_beside_each_other_and_the_manifest_stays_out(trained, tmp_path):
    served = tmp_path / "served"
    first = run("export", trained / "run", "--to", "saved_model", "--output", served, "--samples", 4)
    assert first.exit_code == 0, first.output
    second = run("export", trained / "run", "--to", "saved_model", "-o", served, "--version", "2", "--samples", 4)
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in served.iterdir()) == [".seq-lock", ".seq-run.json", "1", "2"]
    for version in ("1", "2"):
        assert sorted(p.name for p in (served / version).iterdir()) == [
            "assets",
            "fingerprint.pb",
            "saved_model.pb",
            "variables",
        ]
    again = run("export", trained / "run", "--to", "saved_model", "-o", served, "--version", "2", "--samples", 4)
    assert again.exit_code == 1
    assert problems(again) == (
        f"error: {served / '2'} exists\n"
        "  hint: add --overwrite to replace version 2, or give a new --version (next: 3)\n"
    )
    stamp = (served / "1" / "saved_model.pb").stat().st_mtime_ns
    replaced = run("export", trained / "run", "--to", "saved_model", "-o", served, "--version", "2", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert (served / "1" / "saved_model.pb").stat().st_mtime_ns == stamp  # version 1 untouched
    assert sorted(p.name for p in served.iterdir()) == [".seq-lock", ".seq-run.json", "1", "2"]
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- what verification proves


def test_a_model_with_one_output_for_every_input_is_flagged(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    x = np.random.default_rng(5).normal(0, 1, (6, 3)).astype(np.float32)
    path = save_model(model, tmp_path, x)
    result = run("export", path, "--output", tmp_path / "m.tflite", "--data", tmp_path / "x.npy", "--format", "json")
    assert result.exit_code == 0, result.output
    warning = (
        "the model predicts the same output for all 12 verification inputs, so the match proves little; a frozen "
        "base built with 'weights: null' or dead units do this: check the model's weights"
    )
    assert f"warning: {warning}" in result.stderr.replace("\n", " ")
    assert json.loads(result.stdout)["warnings"] == [warning]


def test_verification_reaches_beyond_the_samples(trained, tmp_path):
    """One real sample still gives inputs that vary: random ones within the range of the data."""
    result = run("export", trained / "run", "--output", tmp_path / "m.onnx", "--samples", 2, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 2 and report["random_inputs"] == 4 and report["warnings"] == []


def test_stages_go_to_stderr_one_line_each_in_a_log(trained, tmp_path):
    result = run("export", trained / "run", "--output", tmp_path / "m.tflite", "--format", "json", "--samples", 4)
    assert result.exit_code == 0, result.output
    stages = [line.split(":", 1)[1].strip().split(" ")[0] for line in result.stderr.splitlines()]
    assert stages == ["loading", "running", "converting", "verifying", "writing"]
    json.loads(result.stdout)  # stdout holds the JSON report alone


def test_on_a_terminal_stages_show_as_a_spinner_that_goes_away():
    import io

    from rich.console import Console

    from seqcli.views.progress import stage_display

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with stage_display(console, "export") as stage:
        stage("converting to tflite\x1b[2J")
    shown = screen.getvalue()
    assert "export: converting to tflite\ufffd[2J (0s so far)" in shown and "\x1b[2J" not in shown


def test_an_output_among_the_data_shards_is_refused(trained, tmp_path):
    """--data names inputs as a list or glob too: an export may never write over one of them, --overwrite or not."""
    for part in ("a", "b"):
        (tmp_path / part / "cat").mkdir(parents=True)
        (tmp_path / part / "cat" / "mine.txt").write_text("not seq's")
    data = f"{{path: [{tmp_path / 'a'}, {tmp_path / 'b'}]}}"
    output = tmp_path / "b"
    result = run("export", trained / "run", "--data", data, "--to", "saved_model", "--output", output, "--overwrite")
    assert result.exit_code == 1, result.output
    assert f"--output {output} is an input of this command" in result.stderr, result.stderr
    assert (output / "cat" / "mine.txt").read_text() == "not seq's"
