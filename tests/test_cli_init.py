"""`seq init`: commented starter specs that pass `seq check`, with the editor schema modeline first."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.specfile import read_spec
from tests.conftest import run_seq as run

MODELINE = "# yaml-language-server: $schema=./seq.schema.json"


@pytest.mark.parametrize("kind, dataset", [("mlp", "mnist"), ("cnn", "fashion_mnist"), ("transfer", "cifar10")])
def test_each_starter_passes_check_and_names_a_keras_dataset(tmp_path, kind, dataset):
    path = tmp_path / f"my-{kind}.yaml"
    result = run("init", kind, path)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Wrote the {kind} starter 'my_{kind}' to {path}\nNext: seq check {path} && seq train {path}\n"
    )
    text = path.read_text()
    assert text.splitlines()[0] == MODELINE and text.count("\n# ") >= 3  # commented
    checked = run("check", path, "--format", "json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)["specs"][0]
    assert report["ok"] and report["model"] == f"my_{kind}" and report["output_shape"] == [None, 10]
    spec = read_spec(path)
    assert spec.resolved()["data"]["train"] == dataset


def test_an_existing_file_is_kept_without_force(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text("mine\n")
    refused = run("init", "cnn", path)
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: {path} already exists\n  hint: pass --force to replace it, or choose another file name\n"
    )
    assert path.read_text() == "mine\n"
    assert run("init", "cnn", path, "--force").exit_code == 0
    assert path.read_text().startswith(MODELINE)


def test_the_modeline_points_at_what_seq_schema_writes(tmp_path):
    """The modeline's relative path resolves beside the spec, where 'seq schema -o seq.schema.json' writes."""
    import jsonschema

    from seqcli.specfile.yamlload import parse_spec_text

    assert run("schema", "-o", tmp_path / "seq.schema.json").exit_code == 0
    assert run("init", "mlp", tmp_path / "model.yaml").exit_code == 0
    schema_path = MODELINE.split("$schema=")[1]
    schema = json.loads((tmp_path / schema_path).read_text())
    data = parse_spec_text((tmp_path / "model.yaml").read_bytes()).data
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(data))


def test_the_mlp_starter_trains_on_its_keras_dataset(tmp_path, monkeypatch):
    """Offline: a fake mnist.npz in the Keras cache stands in for the download; the starter trains as written
    (one epoch) and evaluates on mnist:test."""
    import numpy as np
    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras-home"))  # where get_file looks
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)  # a fake file's hash
    rng = np.random.default_rng(0)
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    images, labels = rng.integers(0, 256, (60, 28, 28), np.uint8), rng.integers(0, 10, 60).astype(np.uint8)
    np.savez(cache / "mnist.npz", x_train=images, y_train=labels, x_test=images[:20], y_test=labels[:20])
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "mlp", str(tmp_path / "mlp.yaml")]).exit_code == 0
    trained = runner.invoke(
        cli,
        ["train", str(tmp_path / "mlp.yaml"), "--output", str(tmp_path / "run"), "--epochs", "1", "--format", "json"],
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["epochs_done"] == 1
    evaluated = runner.invoke(cli, ["evaluate", str(tmp_path / "run"), "--format", "json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert 0.0 <= json.loads(evaluated.stdout)["metrics"]["accuracy"] <= 1.0
