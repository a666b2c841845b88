"""`seq transfer`: the guide's two transfer-learning blueprints, end to end, offline.

After training, every frozen weight is bit-for-bit what it was, and the trained ones have moved.
"""

import csv
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.modelbuild import model_from_spec
from seqcli.specfile import load_spec
from tests.bases import BASE_NAME, keras, save_tiny_mobilenet_weights, write_images
from tests.conftest import run_seq as run

GUIDE = """\
layers:
  - Input: {shape: [16]}
  - Dense: {units: 8, activation: relu}
  - Dense: {units: 8, activation: relu}
  - Dense: {units: 3}
compile:
  optimizer: {Adam: {learning_rate: 0.05}}
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
data: {train: data.npz, batch_size: 16}
train: {epochs: 2, seed: 7}
"""

HEAD = """\
name: head
layers:
  - Input: {shape: [32, 32, 3]}
  - Rescaling: {scale: 0.00784313725, offset: -1}
  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: base.weights.h5}
  - Dense: {units: 3}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
data: {train: images.npz, batch_size: 16}
train: {epochs: 1, seed: 3}
transfer:
  fine_tune: {layers: 8, epochs: 1, learning_rate: 0.001}
"""


def load(path):
    return keras().saving.load_model(path, safe_mode=True, compile=False)


def values(layer):
    return {w.path: w.numpy() for w in layer.weights}


def assert_same(before: dict, after: dict):
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_blueprint_one_moves_only_the_last_layer(tmp_path, write_spec):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((64, 16), dtype=np.float32), y=rng.integers(0, 3, 64))
    spec = write_spec(GUIDE)
    pretrained = model_from_spec(load_spec(spec))
    pretrained.save_weights(tmp_path / "pretrained.weights.h5")
    result = run(
        "transfer", str(spec), "--weights", str(tmp_path / "pretrained.weights.h5"), "--output", str(tmp_path / "out")
    )
    assert result.exit_code == 0, result.output
    assert "Phase 1 of 1: train the last layer, the rest frozen\n" in result.stdout
    assert "Frozen: 2 of 3 layers; trainable params 235 → 27 (of 235)\n" in result.stdout
    trained = load(tmp_path / "out" / "phase1" / "model.keras")
    for before, after in zip(pretrained.layers[:-1], trained.layers[:-1], strict=True):
        assert_same(values(before), values(after))
    assert not np.array_equal(pretrained.layers[-1].kernel.numpy(), trained.layers[-1].kernel.numpy())
    recorded = yaml.safe_load((tmp_path / "out" / "phase1" / "spec.yaml").read_text())
    assert recorded["freeze"] == {"all_but_last": 1}
    assert recorded["transfer"]["weights"] == str((tmp_path / "pretrained.weights.h5").resolve())


@pytest.mark.slow
def test_blueprint_two_head_then_fine_tune_and_resume(tmp_path, write_spec):
    base = save_tiny_mobilenet_weights(tmp_path / "base.weights.h5", seed=5)
    original = values(base)
    write_images(tmp_path / "images.npz", 32)
    spec = write_spec(HEAD)
    out = tmp_path / "out"
    result = run("transfer", str(spec), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "Phase 1 of 2: train the head, the base frozen\n" in result.stdout
    assert f"Phase 2 of 2: fine-tune the top 8 layers of {BASE_NAME} at learning rate 0.001\n" in result.stdout
    assert "52 BatchNormalization layers are frozen: they run in inference mode" in " ".join(result.stdout.split())

    # Phase one: the base, BatchNorm moving statistics included, is exactly the pretrained one; the head moved.
    first = load(out / "phase1" / "model.keras")
    assert_same(original, values(first.get_layer(BASE_NAME)))
    head_before = model_from_spec(load_spec(spec)).get_layer("dense").kernel.numpy()
    assert not np.array_equal(head_before, first.get_layer("dense").kernel.numpy())

    # Phase two: only the unfrozen top of the base (not its BatchNorm layers) and the head moved.
    second = load(out / "phase2" / "model.keras")
    changed = {
        name
        for name, value in values(second.get_layer(BASE_NAME)).items()
        if not np.array_equal(value, values(first.get_layer(BASE_NAME))[name])
    }
    assert changed == {"block_16_project/kernel", "Conv_1/kernel"}
    assert not np.array_equal(first.get_layer("dense").kernel.numpy(), second.get_layer("dense").kernel.numpy())
    recorded = yaml.safe_load((out / "phase2" / "spec.yaml").read_text())
    assert recorded["compile"]["optimizer"] == {"Adam": {"learning_rate": 0.001}}
    assert recorded["transfer"]["weights"] == str((out / "phase1" / "model.keras").resolve())

    # Resume: phase one is complete and kept; phase two continues from its checkpoint to a second epoch.
    result = run("transfer", str(spec), "--output", str(out), "--fine-tune-epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert f"{out / 'phase1'} is already complete (1 epochs)" in result.stdout
    with open(out / "phase2" / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    # The transfer folder is a run: one history of both phases, the last phase's model, the boundary recorded.
    with open(out / "history.csv") as handle:
        assert [(row["epoch"], row["phase"]) for row in csv.DictReader(handle)] == [("1", "1"), ("2", "2"), ("3", "2")]
    assert (out / "model.keras").read_bytes() == (out / "phase2" / "model.keras").read_bytes()
    phases = json.loads((out / "metrics.json").read_text())["phases"]
    assert [(p["phase"], p["folder"], p["first_epoch"]) for p in phases] == [(1, "phase1", 1), (2, "phase2", 2)]
    assert (out / "curves.png").stat().st_size > 0
    assert_same(values(first.get_layer(BASE_NAME)), values(load(out / "phase1" / "model.keras").get_layer(BASE_NAME)))


def test_format_json_prints_each_phase(tmp_path, write_spec):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((32, 16), dtype=np.float32), y=rng.integers(0, 3, 32))
    spec = write_spec(GUIDE.replace("epochs: 2", "epochs: 1"))
    model_from_spec(load_spec(spec)).save_weights(tmp_path / "pretrained.weights.h5")
    result = run(
        "transfer",
        str(spec),
        "--weights",
        str(tmp_path / "pretrained.weights.h5"),
        "--output",
        str(tmp_path / "out"),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["blueprint"], report["base"]) == (1, None)
    [phase] = report["phases"]
    assert (phase["phase"], phase["title"]) == (1, "train the last layer, the rest frozen")
    assert (phase["output"], phase["epochs_done"]) == (str(tmp_path / "out" / "phase1"), 1)
    recorded = json.loads((tmp_path / "out" / "phase1" / "metrics.json").read_text())
    assert phase["metrics"] == pytest.approx(recorded["metrics"])
    assert "Phase 1 of 1" in result.stderr


def test_blueprint_one_needs_pretrained_weights(write_spec):
    result = CliRunner().invoke(cli, ["transfer", str(write_spec(GUIDE)), "--output", "unused"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: this spec has no pretrained base, so transfer needs the whole model's "
        "pretrained weights\n  hint: pass --weights FILE"
    )


def test_fine_tuning_needs_a_base_and_enough_layers(tmp_path, write_spec):
    weights = tmp_path / "w.weights.h5"
    spec = write_spec(GUIDE)
    model_from_spec(load_spec(spec)).save_weights(weights)
    result = CliRunner().invoke(
        cli, ["transfer", str(spec), "--weights", str(weights), "--output", "unused", "--fine-tune-layers", "2"]
    )
    assert result.exit_code == 1
    assert "error: fine-tuning unfreezes the top layers of a pretrained base, and this spec has none" in result.stderr
    save_tiny_mobilenet_weights(tmp_path / "base.weights.h5")
    spec = write_spec(HEAD, "head.yaml")
    result = CliRunner().invoke(cli, ["transfer", str(spec), "--output", "unused", "--fine-tune-layers", "500"])
    assert result.exit_code == 1
    assert f"error: cannot unfreeze the top 500 layers of {BASE_NAME}: it has 154" in result.stderr


def test_compile_problems_are_reported_before_planning(tmp_path, write_spec):
    save_tiny_mobilenet_weights(tmp_path / "base.weights.h5")
    spec = write_spec(HEAD.replace("optimizer: {Adam: {learning_rate: 0.01}}", "optimizer: bogus"), "head.yaml")
    result = CliRunner().invoke(cli, ["transfer", str(spec), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{spec}:8:14: compile.optimizer: unknown optimizer 'bogus'"), result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("optimizer, expected", [("rmsprop", "RMSprop"), ("adam_w", "AdamW"), ("SGD", "SGD")])
def test_fine_tuning_keeps_the_spec_optimizer(optimizer, expected):
    from seqcli.specfile import spec_from_text
    from seqcli.verbs.transfer import fine_tune_optimizer

    spec = spec_from_text(GUIDE.replace("{Adam: {learning_rate: 0.05}}", optimizer))
    assert fine_tune_optimizer(spec, 1e-5) == {expected: {"learning_rate": 1e-5}}
