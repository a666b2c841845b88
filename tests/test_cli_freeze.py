"""`seq freeze`: a spec with weights, or a .keras model, in; the frozen .keras model out, checked before
building, written atomically, never over its source or another file without --overwrite."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.modelbuild import model_from_spec
from seqcli.specfile import load_spec
from tests.bases import BASE_NAME, TINY_BASE, keras, save_tiny_mobilenet_weights
from tests.bases import GUIDE_TRANSFER as GUIDE
from tests.conftest import run_seq as run


def trainable_names(model):
    return [layer.name for layer in model.layers if layer.trainable]


def test_seq_freeze_writes_a_frozen_keras_model(write_spec, tmp_path):
    spec = write_spec(GUIDE)
    source = model_from_spec(load_spec(spec))
    source.save_weights(tmp_path / "trained.weights.h5")
    result = run(
        "freeze",
        str(spec),
        "--weights",
        str(tmp_path / "trained.weights.h5"),
        "--all-but-last",
        "1",
        "--output",
        str(tmp_path / "frozen.keras"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Frozen: 3 of 4 layers; trainable params 27,562 → 330 (of 27,562)\nWrote {tmp_path / 'frozen.keras'}\n"
    )
    frozen = keras().saving.load_model(tmp_path / "frozen.keras", safe_mode=True)
    assert trainable_names(frozen) == ["dense_3"]
    for mine, theirs in zip(frozen.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_format_json_reports_what_was_frozen(tmp_path, write_spec):
    spec = write_spec(GUIDE)
    result = run(
        "freeze", str(spec), "--all-but-last", "1", "--output", str(tmp_path / "frozen.keras"), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "output": str(tmp_path / "frozen.keras"),
        "frozen": ["dense", "dense_1", "dense_2"],
        "trainable": ["dense_3"],
        "batchnorm_inference": [],
        "params": 27_562,
        "trainable_params_before": 27_562,
        "trainable_params_after": 330,
    }
    assert (tmp_path / "frozen.keras").exists()


def test_seq_freeze_a_model_file_by_glob(tmp_path, write_spec):
    save_tiny_mobilenet_weights(tmp_path / "base.weights.h5")
    spec = write_spec(TINY_BASE.replace("weights: null", "weights: base.weights.h5"))
    model_from_spec(load_spec(spec)).save(tmp_path / "model.keras")
    result = run(
        "freeze",
        str(tmp_path / "model.keras"),
        "--layer",
        BASE_NAME,
        "--unfreeze",
        f"{BASE_NAME}/Conv_1",
        "--output",
        str(tmp_path / "frozen.keras"),
    )
    assert result.exit_code == 0, result.output
    assert "52 BatchNormalization layers are frozen" in result.stdout
    frozen = keras().saving.load_model(tmp_path / "frozen.keras", safe_mode=True)
    base = frozen.get_layer(BASE_NAME)
    assert [layer.name for layer in base.layers if layer.trainable and layer.weights] == ["Conv_1"]


def test_seq_freeze_needs_a_keras_output_and_a_request(write_spec, tmp_path):
    spec = str(write_spec(GUIDE))
    result = CliRunner().invoke(cli, ["freeze", spec, "--output", str(tmp_path / "x.keras")])
    assert result.exit_code == 2 and "give --all-but-last N or --layer NAME_OR_GLOB" in result.stderr
    result = CliRunner().invoke(cli, ["freeze", spec, "--all-but-last", "1", "--output", str(tmp_path / "x.h5")])
    assert result.exit_code == 1
    assert "error: --output must be a .keras file; received" in result.stderr


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/proc/frozen.keras", "error: cannot write /proc/frozen.keras: No such file or directory\n"),
        (
            "{tmp}/spec.yaml/frozen.keras",
            "error: cannot create the folder {tmp}/spec.yaml for frozen.keras: {tmp}/spec.yaml is a file\n",
        ),
    ],
)
def test_seq_freeze_checks_the_output_before_building(write_spec, tmp_path, monkeypatch, output, message):
    import seqcli.modelbuild

    def must_not_build(*args, **kwargs):
        raise AssertionError("built the model before checking --output")

    monkeypatch.setattr(seqcli.modelbuild, "model_from_spec", must_not_build)
    spec = write_spec(GUIDE)
    result = run("freeze", str(spec), "--all-but-last", "1", "--output", output.format(tmp=tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(tmp=tmp_path)) and "  hint: " in result.stderr
    assert "unexpected" not in result.stderr
    assert spec.read_text() == GUIDE


def test_seq_freeze_a_failed_save_keeps_the_previous_file(write_spec, tmp_path, monkeypatch):
    spec = write_spec(GUIDE)
    (tmp_path / "frozen.keras").write_bytes(b"previous")

    def full_disk(self, filepath, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras().Model, "save", full_disk)
    result = run("freeze", str(spec), "--all-but-last", "1", "--output", str(tmp_path / "frozen.keras"), "--overwrite")
    assert result.exit_code == 3  # a full disk: ExitStatus.ENVIRONMENT
    assert result.stderr == (
        f"error: cannot write {tmp_path / 'frozen.keras'}: No space left on device\n"
        "  hint: the previous file, if any, is intact; free some space, or choose another "
        "--output\n"
    )
    assert (tmp_path / "frozen.keras").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frozen.keras", "spec.yaml"]


def test_seq_freeze_replaces_an_output_only_with_overwrite_and_never_its_source(write_spec, tmp_path):
    spec = write_spec(GUIDE)
    model_from_spec(load_spec(spec)).save(tmp_path / "model.keras")
    source = (tmp_path / "model.keras").read_bytes()
    (tmp_path / "frozen.keras").write_bytes(b"mine")
    kept = run(
        "freeze", str(tmp_path / "model.keras"), "--all-but-last", "1", "--output", str(tmp_path / "frozen.keras")
    )
    assert kept.exit_code == 1
    assert kept.stderr == (
        f"error: {tmp_path / 'frozen.keras'} exists\n"
        "  hint: add --overwrite to replace it, or choose another --output\n"
    )
    assert (tmp_path / "frozen.keras").read_bytes() == b"mine"
    itself = run(
        "freeze",
        str(tmp_path / "model.keras"),
        "--all-but-last",
        "1",
        "--output",
        str(tmp_path / "model.keras"),
        "--overwrite",
    )
    assert itself.exit_code == 1
    assert itself.stderr.startswith(f"error: --output {tmp_path / 'model.keras'} is an input of this command\n")
    assert (tmp_path / "model.keras").read_bytes() == source
    replaced = run(
        "freeze",
        str(tmp_path / "model.keras"),
        "--all-but-last",
        "1",
        "--output",
        str(tmp_path / "frozen.keras"),
        "--overwrite",
    )
    assert replaced.exit_code == 0, replaced.output
    assert keras().saving.load_model(tmp_path / "frozen.keras").layers[0].trainable is False
