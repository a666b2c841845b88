"""`seq import`: a saved Keras Sequential model becomes a spec that builds the same model."""

from __future__ import annotations

import numpy as np
import pytest

from seqcli.modelbuild import build_model
from seqcli.specfile import read_spec
from tests.bases import TINY_BASE, save_tiny_mobilenet_weights
from tests.conftest import SPECS
from tests.conftest import run_seq as run

# xception_head downloads its base; reviews' TextVectorization holds no vocabulary until training adapts it, and
# Keras cannot load a lookup table without one.
GUIDE_SPECS = sorted(p for p in SPECS.glob("*.yaml") if p.name not in ("xception_head.yaml", "reviews.yaml"))


def configs(model) -> list[dict]:
    return [layer.get_config() for layer in model.layers]


def without_names(value):
    """A config without layer names: auto names (dense_7) depend on what else the process has built."""
    if isinstance(value, dict):
        return {k: without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [without_names(v) for v in value]
    return value


def import_and_build(model, tmp_path, *extra):
    """Save ``model``, import it with the CLI, build the spec it wrote; returns (spec text, rebuilt model)."""
    model.save(tmp_path / "model.keras")
    result = run("import", tmp_path / "model.keras", "--output", tmp_path / "imported.yaml", *extra)
    assert result.exit_code == 0, result.output
    built = build_model(read_spec(tmp_path / "imported.yaml"))
    assert not built.problems, built.problems
    return (tmp_path / "imported.yaml").read_text(), built.model


@pytest.mark.parametrize("path", GUIDE_SPECS, ids=lambda p: p.stem)
def test_every_guide_spec_round_trips(path, tmp_path):
    original = build_model(read_spec(path)).model
    text, rebuilt = import_and_build(original, tmp_path)
    assert text.startswith("# yaml-language-server: $schema=./seq.schema.json\n")
    assert configs(rebuilt) == configs(original)
    assert rebuilt.name == original.name and rebuilt.built == original.built
    if original.built:
        assert rebuilt.count_params() == original.count_params()


def test_defaults_and_auto_names_are_left_out(tmp_path):
    import keras

    model = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.Conv1D(
                4,
                3,
                padding="same",
                activation=None,
                kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                kernel_regularizer=keras.regularizers.L2(0.05),
            ),
            keras.layers.Bidirectional(keras.layers.LSTM(5)),
            keras.layers.Dropout(0.25, name="drop"),
            keras.layers.Dense(2, activation="softmax", trainable=False),
        ]
    )
    text, rebuilt = import_and_build(model, tmp_path)
    assert text.splitlines()[2:] == [
        "layers:",
        "- Input: {shape: [6, 3]}",
        "- Conv1D: {filters: 4, kernel_size: [3], padding: same, kernel_initializer: {GlorotUniform: {seed: 1}}, "
        "kernel_regularizer: {L2: {l2: 0.05}}}",
        "- Bidirectional: {layer: {LSTM: {units: 5}}}",
        "- Dropout: {name: drop, rate: 0.25}",
        "- Dense: {trainable: false, units: 2, activation: softmax}",
    ]
    assert without_names(configs(rebuilt)) == without_names(configs(model))
    assert rebuilt.layers[2].name == "drop"


def test_weights_out_gives_the_same_outputs(tmp_path):
    import keras

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ],
        name="hand_written",
    )
    model.layers[1].set_weights(
        [
            np.full(8, 0.5, np.float32),
            np.full(8, 0.1, np.float32),
            np.full(8, 0.2, np.float32),
            np.full(8, 2.0, np.float32),
        ]
    )
    _, rebuilt = import_and_build(model, tmp_path, "--weights-out", tmp_path / "w.weights.h5")
    rebuilt.load_weights(tmp_path / "w.weights.h5")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
    assert rebuilt.name == "hand_written"


def test_stdout_by_default(tmp_path):
    import keras

    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(tmp_path / "m.keras")
    result = run("import", tmp_path / "m.keras")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "# yaml-language-server: $schema=./seq.schema.json\n"
        "# imported from m.keras by 'seq import'\n"
        "layers:\n- Input: {shape: [3]}\n- Dense: {units: 1}\n"
    )


def test_what_a_spec_cannot_express_is_refused_by_name(tmp_path):
    import keras

    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "functional.keras")
    result = run("import", tmp_path / "functional.keras")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {tmp_path / 'functional.keras'} holds a Functional model, not a Sequential one\n"
    )
    # A nested model that only bears an application's name and stem is no application: its layers decide.
    inner_input = keras.Input((32, 32, 3))
    stem = keras.layers.Conv2D(2, 3, name="Conv1")(inner_input)
    impostor = keras.Model(
        inner_input, keras.layers.BatchNormalization(name="bn_Conv1")(stem), name="mobilenetv2_0.35_32"
    )
    keras.Sequential([keras.Input((32, 32, 3)), impostor, keras.layers.GlobalAveragePooling2D()]).save(
        tmp_path / "based.keras"
    )
    result = run("import", tmp_path / "based.keras")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: layer 'mobilenetv2_0.35_32' is a nested Functional model, which seq cannot write as a spec\n"
    )


def test_a_lambda_or_custom_layer_is_refused_by_name():
    import keras

    from seqcli.verbs.importer import ImportModelError, spec_for_model

    lambda_model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2, name="double")])
    with pytest.raises(ImportModelError, match="layer 'double' is a Lambda, which cannot be used in a spec"):
        spec_for_model(lambda_model)

    class Scale(keras.layers.Layer):
        def call(self, x):
            return x * 3

    with pytest.raises(ImportModelError, match="layer 'triple' is a custom class .*Scale, not a built-in Keras"):
        spec_for_model(keras.Sequential([keras.Input((3,)), Scale(name="triple")]))


def test_an_existing_spec_needs_overwrite(tmp_path):
    from seqcli.modelbuild import model_from_spec
    from seqcli.specfile import load_spec

    model_from_spec(load_spec(SPECS / "three_layers.yaml")).save(tmp_path / "m.keras")
    (tmp_path / "spec.yaml").write_text("# mine\n")
    refused = run("import", tmp_path / "m.keras", "--output", tmp_path / "spec.yaml")
    assert refused.exit_code == 1 and "add --overwrite" in refused.stderr
    assert (tmp_path / "spec.yaml").read_text() == "# mine\n"
    assert run("import", tmp_path / "m.keras", "--output", tmp_path / "m.keras", "--overwrite").exit_code == 1
    assert run("import", tmp_path / "m.keras", "--output", tmp_path / "spec.yaml", "--overwrite").exit_code == 0
    assert "- Dense:" in (tmp_path / "spec.yaml").read_text()


def test_a_wrapper_in_a_wrapper_round_trips(tmp_path):
    import keras

    inner = keras.layers.TimeDistributed(keras.layers.Dense(2))
    model = keras.Sequential([keras.Input((2, 3, 4)), keras.layers.TimeDistributed(inner)])
    text, rebuilt = import_and_build(model, tmp_path)
    assert text.splitlines()[-1] == "- TimeDistributed: {layer: {TimeDistributed: {layer: {Dense: {units: 2}}}}}"
    assert without_names(configs(rebuilt)) == without_names(configs(model))


def shapes_and_names(model) -> list[tuple]:
    """Every layer, nested ones included: name, output shape, parameters."""
    rows = []
    for layer in model.layers:
        rows.append((layer.name, tuple(layer.output.shape), layer.count_params()))
        rows += shapes_and_names(layer) if hasattr(layer, "layers") else []
    return rows


@pytest.mark.slow
def test_an_application_base_imports_as_the_entry_that_made_it(tmp_path):
    """A renamed, frozen base with its own weights: the same layers, shapes, params, trainable flags, outputs."""
    save_tiny_mobilenet_weights(tmp_path / "base.weights.h5", seed=2)
    spec = tmp_path / "based.yaml"
    spec.write_text(TINY_BASE.replace("weights: null", "weights: base.weights.h5, name: backbone, trainable: false"))
    original = build_model(read_spec(spec)).model
    original.save(tmp_path / "model.keras")
    result = run(
        "import", tmp_path / "model.keras", "-o", tmp_path / "imported.yaml", "--weights-out", tmp_path / "w.weights.h5"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "note: the MobileNetV2 base is written with weights: null (its architecture); --weights-out keeps the "
        "model's trained weights, base included\n"
    )
    assert (tmp_path / "imported.yaml").read_text().splitlines()[2:] == [
        "layers:",
        "- Input: {shape: [32, 32, 3]}",
        "- MobileNetV2: {alpha: 0.35, include_top: false, weights: null, pooling: avg, name: backbone, "
        "trainable: false}",
        "- Dense: {units: 3}",
    ]
    rebuilt = build_model(read_spec(tmp_path / "imported.yaml")).model
    assert shapes_and_names(rebuilt) == shapes_and_names(original)
    assert rebuilt.count_params() == original.count_params()
    assert [layer.trainable for layer in rebuilt.layers] == [layer.trainable for layer in original.layers]
    rebuilt.load_weights(tmp_path / "w.weights.h5")
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), original.predict(x, verbose=0))


def test_a_classifier_application_imports_with_its_top():
    """MobileNet's classifier is a 1x1 Conv2D and an Activation: its classes, dropout and activation are read back."""
    import keras

    from seqcli.verbs.importer import spec_for_model

    base = keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=4, dropout=0.1, classifier_activation=None
    )
    spec = spec_for_model(keras.Sequential([keras.Input((32, 32, 3)), base]))
    assert spec["layers"][1] == {
        "MobileNet": {"alpha": 0.25, "dropout": 0.1, "weights": None, "classes": 4, "classifier_activation": "linear"}
    }
