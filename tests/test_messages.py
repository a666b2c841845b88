"""Every message says what and where: reachable input never ends in 'unexpected <Exception>'."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from seqcli.errors import clean_text
from seqcli.verbs.predict import predictions_csv
from tests.conftest import run_in, snapshot, write_tiny_project

SET_CASES = [
    ("layers.Dense.units=3", "--set #1: layers is a list: 'Dense' cannot index it"),
    ("[0]=1", "--set #1: the spec is a mapping: [0] cannot index it"),
    ("layers[1].Flatten[0]=1", "--set #1: layers[1].Flatten is a mapping: [0] cannot index it"),
    ("train[2]=1", "--set #1: train is a mapping: [2] cannot index it"),
]


@pytest.mark.parametrize(("override", "message"), SET_CASES, ids=[c for c, _ in SET_CASES])
def test_malformed_set_paths_say_what_and_where(tmp_path, override, message):
    write_tiny_project(tmp_path, epochs=1)
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "train", "tiny.yaml", "--output", "run", "-q", "--set", override)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "unexpected" not in result.stderr
    assert snapshot(tmp_path) == before


def test_a_bad_crc_in_an_npz_names_the_file_and_array(trained, tmp_path):
    data = bytearray((trained / "tiny.npz").read_bytes())
    data[200] ^= 0xFF  # inside x.npy's stored bytes: the zip's CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "predict", trained / "run", "--data", "bad.npz", "--output", "out.csv")
    assert result.exit_code == 1
    damaged = f"error: --data: member 'x.npy' of {tmp_path / 'bad.npz'} is damaged: its CRC-32 checksum does not match"
    assert damaged in result.stderr
    assert snapshot(tmp_path) == before


def test_predicted_class_names_cannot_become_spreadsheet_formulas():
    values = np.array([[0.9, 0.1], [-0.2, 0.7]], np.float32)
    text = predictions_csv(values, ["=cmd|' /C calc'!A0", "@SUM(A1)"])
    assert text.splitlines() == [
        "class,class_name,probability,output_0,output_1",
        "0,'=cmd|' /C calc'!A0,0.6899745,0.9,0.1",  # a row below 0: the outputs are logits
        "1,'@SUM(A1),0.7109495,-0.2,0.7",
    ]


# ----------------------------------------------------------------------------- Keras's own words, cause first

HEAD = "layers:\n  - Input: {shape: [4]}\n"
KERAS_CASES = {
    "a kernel larger than the input": (
        "layers:\n  - Input: {shape: [4, 4, 1]}\n  - Conv2D: {filters: 2, kernel_size: 9}\n",
        "bad.yaml:3:5: layers[1].Conv2D: Keras rejected Conv2D on input of shape (None, 4, 4, 1): "
        "Computed output size would be zero or negative.",
    ),
    "a Reshape that changes the size": (
        HEAD + "  - Reshape: {target_shape: [3]}\n",
        "bad.yaml:3:5: layers[1].Reshape: Keras rejected Reshape on input of shape (None, 4): The total size of "
        "the tensor must be unchanged. Received: input_shape=(4,), target_shape=(3,)\n",
    ),
    "units 0": (
        HEAD + "  - Dense: {units: 0}\n",
        "bad.yaml:3:5: layers[1].Dense: Keras rejected Dense: Received an invalid value for `units`, "
        "expected a positive integer. Received: units=0\n",
    ),
    "an input of the wrong rank": (
        HEAD + "  - Conv2D: {filters: 2, kernel_size: 3}\n",
        "bad.yaml:3:5: layers[1].Conv2D: Conv2D cannot take input of shape (None, 4): Input 0 with name 'None' of "
        "layer 'conv2d' is incompatible with the layer: expected min_ndim=4, found ndim=2.",
    ),
}


@pytest.mark.parametrize("name", KERAS_CASES)
def test_a_layer_keras_rejects_says_what_keras_said(tmp_path, name):
    text, message = KERAS_CASES[name]
    (tmp_path / "bad.yaml").write_text(text)
    result = run_in(tmp_path, "check", "bad.yaml")
    shown = result.stdout + result.stderr
    assert result.exit_code == 1
    assert message in shown
    assert ("cannot take input of shape" in shown) == ("incompatible" in message)
    for wrapper in ("Exception encountered", "Arguments received", "\x1b["):
        assert wrapper not in shown


def test_a_saved_model_keras_cannot_rebuild_shows_the_cause(tmp_path):
    """Keras dumps the whole config (thousands of characters) before the cause; the cause is what is shown."""
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")]).save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as good, zipfile.ZipFile(tmp_path / "base.keras", "w") as bad:
        for name in good.namelist():
            data = good.read(name)
            bad.writestr(name, data.replace(b'"units": 2', b'"units": -3') if name == "config.json" else data)
    (tmp_path / "bad.yaml").write_text(HEAD + "  - Model: {path: base.keras}\n")
    cause = "Sequential could not be deserialized: Received an invalid value for `units`, expected a positive integer"
    for args in (["check", "bad.yaml"], ["evaluate", "base.keras", "--data", "x.npy"]):
        result = run_in(tmp_path, *args)
        shown = result.stdout + result.stderr
        assert result.exit_code == 1
        assert cause in shown and "Received: units=-3" in shown, shown
        assert "config={" not in shown


def test_long_error_text_keeps_its_start_and_its_end():
    text = "Layer failed. " + "x" * 5000 + " The cause: units=-3"
    cleaned = clean_text(text, 400)
    assert len(cleaned) == 400
    assert cleaned.startswith("Layer failed. ") and cleaned.endswith("The cause: units=-3")
    assert " ... " in cleaned


# ----------------------------------------------------------------------------- each prefix once


def test_an_unreadable_data_file_is_named_once(trained, tmp_path, monkeypatch):
    """OSError's text repeats the path ("[Errno 13] Permission denied: '...'"): the message says it once.
    (Tests run as root, which reads any file: the refusal is simulated, for the data files only.)"""
    import os
    import types

    from seqcli import inputs

    def refusing(real):
        def call(path, *args, **kwargs):
            if Path(path).parent == tmp_path:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)

        return call

    np.save(tmp_path / "x.npy", np.ones((2, 4, 4, 1), np.float32))
    (tmp_path / "d.npz").write_bytes((trained / "tiny.npz").read_bytes())
    os_module = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
    os_module.open = refusing(os.open)
    monkeypatch.setattr(inputs, "os", os_module)  # the one open door: every data file is opened there
    for name in ("x.npy", "d.npz"):
        result = run_in(tmp_path, "predict", trained / "run", "--data", name, "--output", "p.npy")
        assert result.exit_code == 1
        assert f"error: --data: cannot read {tmp_path / name}: Permission denied\n" in result.stderr
        assert result.stderr.count(name) == 1, result.stderr
        assert "hint: check the file's permissions" in result.stderr


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_terminal_escapes_in_a_spec_never_reach_the_terminal(tmp_path, fmt):
    """A key holding an escape sequence (OSC sets the terminal's title, BEL rings) is shown as U+FFFD in
    the error's first line too, not only in the quoted source line."""
    (tmp_path / "bad.yaml").write_text('layers:\n  - Input: {shape: [4]}\n  - "Dens\\e]0;pwned\\a": {units: 2}\n')
    result = run_in(tmp_path, "check", "bad.yaml", "--format", fmt)
    shown = result.stdout + result.stderr
    assert result.exit_code == 1 and ("bad.yaml:3:5" if fmt == "text" else "line=3,col=5") in shown
    assert "\x1b" not in shown and "\x07" not in shown
    assert "Dens\ufffd]0;pwned\ufffd" in shown
