"""`seq evaluate`: a run (or a .keras file) on its own validation data or any source, as a table or JSON;
models load in Keras safe mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_seq as run
from tests.conftest import write_tiny_project


def test_a_run_is_evaluated_on_its_validation_data(trained):
    result = run("evaluate", trained / "run", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"] == "the validation data" and report["samples"] == 32
    final = json.loads((trained / "run" / "metrics.json").read_text())["metrics"]
    assert report["metrics"]["accuracy"] == pytest.approx(final["val_accuracy"])
    assert report["metrics"]["loss"] == pytest.approx(final["val_loss"], rel=1e-5)


def test_a_model_file_on_a_data_source_as_a_table(trained):
    result = run("evaluate", trained / "run" / "model.keras", "--data", trained / "tiny.npz")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"tiny on {trained / 'tiny.npz'} (128 samples)"
    assert lines[2].split() == ["┃", "Metric", "┃", "Value", "┃"]
    assert [line.split()[1] for line in lines[4:6]] == ["accuracy", "loss"]


def test_data_that_does_not_fit_the_model(trained, tmp_path):
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 5, 5, 1), np.float32), y=np.zeros(4, np.int64))
    result = run("evaluate", trained / "run", "--data", tmp_path / "wide.npz")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: --data: samples in {tmp_path / 'wide.npz'} have shape (5, 5, 1), but the model takes (4, 4, 1)"
    )


def test_missing_things_are_explained(trained, tmp_path):
    missing = run("evaluate", tmp_path / "nothing", "--data", "x.npz")
    assert missing.exit_code == 1 and "no such run directory or model file" in missing.stderr
    no_data = run("evaluate", trained / "run" / "model.keras")
    assert no_data.exit_code == 1 and "error: no data to evaluate on" in no_data.stderr
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.npz").write_bytes(b"")
    unfinished = run("evaluate", tmp_path, "--data", "x.npz")
    assert "holds no model.keras" in unfinished.stderr and "--resume" in unfinished.stderr


def test_unsafe_models_are_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    model.compile(loss="mse")
    model.save(tmp_path / "unsafe.keras")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2), np.float32), y=np.zeros((2, 2), np.float32))
    result = run("evaluate", tmp_path / "unsafe.keras", "--data", tmp_path / "d.npz")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot load {tmp_path / 'unsafe.keras'}")
    assert "seq never turns it off" in result.stderr


def test_a_spec_without_seed_is_split_with_the_runs_seed(tmp_path):
    spec = write_tiny_project(tmp_path)
    spec.write_text(spec.read_text().replace("  seed: 3\n", ""))
    assert run("train", spec, "--output", tmp_path / "run", "--quiet").exit_code == 0
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    for _ in range(2):  # the same split every time: the one training held out
        result = run("evaluate", tmp_path / "run", "--spec", spec, "--format", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["metrics"]["loss"] == pytest.approx(final["val_loss"], rel=1e-5)
    bare = run("evaluate", tmp_path / "run" / "model.keras", "--spec", spec)
    assert bare.exit_code == 1
    assert bare.stderr.startswith(
        f"error: {spec} splits its validation data off data.train at random (no "
        "train.seed), and no run records the seed the model was trained with"
    )
    assert "hint: pass --data SOURCE, or set train.seed" in bare.stderr
