"""Freezing: the freeze: section, apply_freeze, BatchNorm in inference mode, seq summary before/after, seq freeze."""

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.build import build_model, model_from_spec
from seqcli.cli import cli
from seqcli.spec import load_spec
from seqcli.trainable import FreezeError, apply_freeze, is_batchnorm, walk_layers
from tests.bases import BASE_NAME, keras, save_tiny_mobilenet_weights

GUIDE = ("name: guide_transfer\nlayers:\n  - Input: {shape: [784]}\n  - Dense: {units: 32, activation: relu}\n"
         "  - Dense: {units: 32, activation: relu}\n  - Dense: {units: 32, activation: relu}\n  - Dense: {units: 10}\n")
TINY_BASE = ("layers:\n  - Input: {shape: [32, 32, 3]}\n"
             "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: null}\n"
             "  - Dense: {units: 3}\n")


def run(*args):
    return CliRunner(env={"COLUMNS": "100"}).invoke(cli, list(args), catch_exceptions=False)


def trainable_names(model):
    return [layer.name for layer in model.layers if layer.trainable]


def test_all_but_last_is_the_guides_loop(write_spec):
    """for layer in model.layers[:-1]: layer.trainable = False"""
    model = build_model(load_spec(write_spec(GUIDE))).model
    report = apply_freeze(model, {"all_but_last": 1})
    assert trainable_names(model) == ["dense_3"]
    assert [w.path for w in model.trainable_weights] == ["dense_3/kernel", "dense_3/bias"]
    assert report.frozen == ["dense", "dense_1", "dense_2"] and report.trainable == ["dense_3"]
    assert (report.trainable_params_before, report.trainable_params_after) == (27_562, 330)


def test_globs_reach_inside_a_base_and_unfreeze_wins(write_spec):
    model = build_model(load_spec(write_spec(TINY_BASE))).model
    report = apply_freeze(model, {"layers": ["mobilenet*"], "unfreeze": [f"{BASE_NAME}/block_16_*"]})
    base = model.get_layer(BASE_NAME)
    trained = sorted(layer.name for layer in base.layers if layer.trainable and layer.weights)
    assert trained == ["block_16_depthwise", "block_16_depthwise_BN", "block_16_expand", "block_16_expand_BN",
                       "block_16_project", "block_16_project_BN"]
    assert model.get_layer("dense").trainable
    paths = {w.path for w in model.trainable_weights}
    assert "block_16_project/kernel" in paths and "Conv1/kernel" not in paths
    assert f"{BASE_NAME}/bn_Conv1" in report.batchnorm_inference
    assert f"{BASE_NAME}/block_16_project_BN" not in report.batchnorm_inference


def test_applying_twice_changes_nothing(write_spec):
    model = build_model(load_spec(write_spec(TINY_BASE))).model
    freeze = {"layers": [BASE_NAME], "unfreeze": [f"{BASE_NAME}/Conv_1"]}
    first = apply_freeze(model, freeze)
    second = apply_freeze(model, freeze)
    assert first.frozen == second.frozen and first.trainable_params_after == second.trainable_params_after


def test_frozen_batchnorm_runs_in_inference_mode(write_spec):
    model = build_model(load_spec(write_spec(TINY_BASE))).model
    apply_freeze(model, {"layers": [BASE_NAME]})
    base = model.get_layer(BASE_NAME)
    norm = base.get_layer("bn_Conv1")
    before = [v.numpy().copy() for v in norm.weights]
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    training, inference = model(x, training=True), model(x, training=False)
    np.testing.assert_array_equal(np.asarray(training), np.asarray(inference))
    for old, new in zip(before, norm.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_unknown_names_raise_with_a_suggestion(write_spec):
    model = build_model(load_spec(write_spec(GUIDE))).model
    with pytest.raises(FreezeError) as raised:
        apply_freeze(model, {"layers": ["dense_9"]})
    assert raised.value.message == "layers: 'dense_9' matches no layer"
    assert raised.value.hint == "did you mean 'dense_3'?"
    with pytest.raises(FreezeError, match="all_but_last is 5, but the model has 4 top-level layers"):
        apply_freeze(model, {"all_but_last": 5})
    report = apply_freeze(model, {"all_but_last": 4})  # every layer stays trainable: the boundary is allowed
    assert report.frozen == [] and trainable_names(model) == ["dense", "dense_1", "dense_2", "dense_3"]


def test_summary_shows_trainable_before_and_after(write_spec):
    path = write_spec(GUIDE + "freeze:\n  all_but_last: 1\n")
    result = run("summary", str(path))
    assert result.exit_code == 0
    assert "".join(line.rstrip() + "\n" for line in result.stdout.splitlines()) == (
        "Model: guide_transfer\n"
        "┏━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━┓\n"
        "┃ # ┃ Layer   ┃ Class ┃ Output shape ┃ Params ┃ Trainable ┃ Expect ┃\n"
        "┡━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━┩\n"
        "│ 1 │ dense   │ Dense │ (None, 32)   │ 25,120 │ yes → no  │        │\n"
        "│ 2 │ dense_1 │ Dense │ (None, 32)   │  1,056 │ yes → no  │        │\n"
        "│ 3 │ dense_2 │ Dense │ (None, 32)   │  1,056 │ yes → no  │        │\n"
        "│ 4 │ dense_3 │ Dense │ (None, 10)   │    330 │ yes       │        │\n"
        "└───┴─────────┴───────┴──────────────┴────────┴───────────┴────────┘\n"
        "Total params: 27,562 (107.66 KB)\n"
        "Trainable params: 27,562 → 330 after freeze:\n"
        "Non-trainable params: 0 → 27,232 after freeze:\n"
        "Input shape: (None, 784) (from Input)\n"
        "Frozen: 3 of 4 layers; trainable params 27,562 → 330 (of 27,562)\n"
        "Memory estimate: 222.78 KB to train (weights 107.66 KB, optimizer 3.87 KB, a batch of 32 111.25 KB)\n"
    )


def test_summary_of_a_partly_frozen_base_states_batchnorm_inference(write_spec):
    path = write_spec(TINY_BASE + f"freeze:\n  layers: ['{BASE_NAME}']\n  unfreeze: ['{BASE_NAME}/Conv_1*']\n")
    result = CliRunner(env={"COLUMNS": "140"}).invoke(cli, ["summary", str(path)])
    assert result.exit_code == 0
    assert f"│ 1 │ {BASE_NAME} │ MobileNetV2 (154 layers) │ (None, 1280) │ 410,208 │ yes → partly │" in result.stdout
    assert "51 BatchNormalization layers are frozen: they run in inference mode" in " ".join(result.stdout.split())


def test_freeze_section_problems_have_positions(write_spec):
    path = write_spec(GUIDE + "freeze:\n  layers: [dense_1, dens_2]\n  all_but_last: 9\n")
    result = run("check", str(path))
    assert result.exit_code == 1
    assert f"{path}:9:21: freeze.layers[1]: 'dens_2' matches no layer\n" in result.stderr
    assert "  hint: did you mean 'dense_2'?" in result.stderr
    assert f"{path}:10:17: freeze.all_but_last: all_but_last is 9, but the model has 4 top-level layers" \
        in result.stderr


def test_freeze_section_is_what_the_built_model_trains(write_spec):
    model = model_from_spec(load_spec(write_spec(GUIDE + "freeze:\n  all_but_last: 1\n")))
    assert trainable_names(model) == ["dense_3"]


def test_seq_freeze_writes_a_frozen_keras_model(write_spec, tmp_path):
    spec = write_spec(GUIDE)
    source = model_from_spec(load_spec(spec))
    source.save_weights(tmp_path / "trained.weights.h5")
    result = run("freeze", str(spec), "--weights", str(tmp_path / "trained.weights.h5"), "--all-but-last", "1",
                 "--output", str(tmp_path / "frozen.keras"))
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Frozen: 3 of 4 layers; trainable params 27,562 → 330 (of 27,562)\n"
                             f"Wrote {tmp_path / 'frozen.keras'}\n")
    frozen = keras().saving.load_model(tmp_path / "frozen.keras", safe_mode=True)
    assert trainable_names(frozen) == ["dense_3"]
    for mine, theirs in zip(frozen.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_seq_freeze_a_model_file_by_glob(tmp_path, write_spec):
    save_tiny_mobilenet_weights(tmp_path / "base.weights.h5")
    spec = write_spec(TINY_BASE.replace("weights: null", "weights: base.weights.h5"))
    model_from_spec(load_spec(spec)).save(tmp_path / "model.keras")
    result = run("freeze", str(tmp_path / "model.keras"), "--layer", BASE_NAME, "--unfreeze", f"{BASE_NAME}/Conv_1",
                 "--output", str(tmp_path / "frozen.keras"))
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


def test_walk_layers_names_every_layer_by_path(write_spec):
    model = build_model(load_spec(write_spec(TINY_BASE))).model
    paths = [path for path, _ in walk_layers(model.layers)]
    assert paths[:3] == [BASE_NAME, f"{BASE_NAME}/Conv1", f"{BASE_NAME}/bn_Conv1"] and paths[-1] == "dense"
    assert sum(is_batchnorm(layer) for _, layer in walk_layers(model.layers)) == 52


@pytest.mark.parametrize(("output", "message"), [
    ("/proc/frozen.keras", "error: cannot write /proc/frozen.keras: No such file or directory\n"),
    ("{tmp}/spec.yaml/frozen.keras",
     "error: cannot create the folder {tmp}/spec.yaml for frozen.keras: {tmp}/spec.yaml is a file\n"),
])
def test_seq_freeze_checks_the_output_before_building(write_spec, tmp_path, monkeypatch, output, message):
    import seqcli.build

    def must_not_build(*args, **kwargs):
        raise AssertionError("built the model before checking --output")

    monkeypatch.setattr(seqcli.build, "model_from_spec", must_not_build)
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
    result = run("freeze", str(spec), "--all-but-last", "1", "--output", str(tmp_path / "frozen.keras"),
                 "--overwrite")
    assert result.exit_code == 1
    assert result.stderr == (f"error: cannot write {tmp_path / 'frozen.keras'}: No space left on device\n"
                             "  hint: the previous file, if any, is intact; free some space, or choose another "
                             "--output\n")
    assert (tmp_path / "frozen.keras").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frozen.keras", "spec.yaml"]


def test_seq_freeze_replaces_an_output_only_with_overwrite_and_never_its_source(write_spec, tmp_path):
    spec = write_spec(GUIDE)
    model_from_spec(load_spec(spec)).save(tmp_path / "model.keras")
    source = (tmp_path / "model.keras").read_bytes()
    (tmp_path / "frozen.keras").write_bytes(b"mine")
    kept = run("freeze", str(tmp_path / "model.keras"), "--all-but-last", "1", "--output",
               str(tmp_path / "frozen.keras"))
    assert kept.exit_code == 1
    assert kept.stderr == (f"error: {tmp_path / 'frozen.keras'} exists\n"
                           "  hint: add --overwrite to replace it, or choose another --output\n")
    assert (tmp_path / "frozen.keras").read_bytes() == b"mine"
    itself = run("freeze", str(tmp_path / "model.keras"), "--all-but-last", "1", "--output",
                 str(tmp_path / "model.keras"), "--overwrite")
    assert itself.exit_code == 1
    assert itself.stderr.startswith(f"error: --output {tmp_path / 'model.keras'} is an input of this command\n")
    assert (tmp_path / "model.keras").read_bytes() == source
    replaced = run("freeze", str(tmp_path / "model.keras"), "--all-but-last", "1", "--output",
                   str(tmp_path / "frozen.keras"), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert keras().saving.load_model(tmp_path / "frozen.keras").layers[0].trainable is False
