"""seqcli.trainable: the freezing rules. all_but_last as the guide's loop, globs and paths inside a base,
unfreeze winning, idempotence, BatchNormalization in inference mode, errors with suggestions."""

import numpy as np
import pytest

from seqcli.modelbuild import build_model, model_from_spec
from seqcli.specfile import load_spec
from seqcli.trainable import FreezeError, apply_freeze, is_batchnorm, walk_layers
from tests.bases import BASE_NAME, GUIDE_TRANSFER, TINY_BASE


def trainable_names(model):
    return [layer.name for layer in model.layers if layer.trainable]


def test_all_but_last_is_the_guides_loop(write_spec):
    """for layer in model.layers[:-1]: layer.trainable = False"""
    model = build_model(load_spec(write_spec(GUIDE_TRANSFER))).model
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
    assert trained == [
        "block_16_depthwise",
        "block_16_depthwise_BN",
        "block_16_expand",
        "block_16_expand_BN",
        "block_16_project",
        "block_16_project_BN",
    ]
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
    model = build_model(load_spec(write_spec(GUIDE_TRANSFER))).model
    with pytest.raises(FreezeError) as raised:
        apply_freeze(model, {"layers": ["dense_9"]})
    assert raised.value.message == "layers: 'dense_9' matches no layer"
    assert raised.value.hint == "did you mean 'dense_3'?"
    with pytest.raises(FreezeError, match="all_but_last is 5, but the model has 4 top-level layers"):
        apply_freeze(model, {"all_but_last": 5})
    report = apply_freeze(model, {"all_but_last": 4})  # every layer stays trainable: the boundary is allowed
    assert report.frozen == [] and trainable_names(model) == ["dense", "dense_1", "dense_2", "dense_3"]


def test_freeze_section_is_what_the_built_model_trains(write_spec):
    model = model_from_spec(load_spec(write_spec(GUIDE_TRANSFER + "freeze:\n  all_but_last: 1\n")))
    assert trainable_names(model) == ["dense_3"]


def test_walk_layers_names_every_layer_by_path(write_spec):
    model = build_model(load_spec(write_spec(TINY_BASE))).model
    paths = [path for path, _ in walk_layers(model.layers)]
    assert paths[:3] == [BASE_NAME, f"{BASE_NAME}/Conv1", f"{BASE_NAME}/bn_Conv1"] and paths[-1] == "dense"
    assert sum(is_batchnorm(layer) for _, layer in walk_layers(model.layers)) == 52
