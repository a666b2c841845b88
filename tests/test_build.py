"""The model seq builds from each guide spec is the hand-written Keras model of the guide."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from seqcli.modelbuild import build_model
from seqcli.specfile import load_spec
from tests.conftest import ROOT, SPECS


def guide_models():
    """The guide's models, written by hand exactly as the guide writes them (with their input shapes)."""
    return {
        "three_layers": (
            keras.Sequential(
                [
                    keras.Input(shape=(3,)),
                    layers.Dense(2, activation="relu", name="layer1"),
                    layers.Dense(3, activation="relu", name="layer2"),
                    layers.Dense(2, name="layer3"),
                ]
            ),
            (3,),
        ),
        "input_object": (keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2, activation="relu")]), (4,)),
        "input_shape_argument": (keras.Sequential([layers.Dense(2, activation="relu", input_shape=(4,))]), (4,)),
        "seed_cnn": (
            keras.Sequential(
                [
                    keras.Input(shape=(250, 250, 3)),
                    layers.Conv2D(32, 5, strides=2, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.MaxPooling2D(3),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.MaxPooling2D(3),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.MaxPooling2D(3),
                    layers.GlobalMaxPooling2D(),
                    layers.Dense(10),
                ],
                name="seed_cnn",
            ),
            (250, 250, 3),
        ),
        "feature_extractor": (
            keras.Sequential(
                [
                    keras.Input(shape=(250, 250, 3)),
                    layers.Conv2D(32, 5, strides=2, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu"),
                ]
            ),
            (250, 250, 3),
        ),
        "feature_extractor_named": (
            keras.Sequential(
                [
                    keras.Input(shape=(250, 250, 3)),
                    layers.Conv2D(32, 5, strides=2, activation="relu"),
                    layers.Conv2D(32, 3, activation="relu", name="intermediate_layer"),
                    layers.Conv2D(32, 3, activation="relu"),
                ]
            ),
            (250, 250, 3),
        ),
    }


def config_without_name(layer):
    config = layer.get_config()
    config.pop("name", None)
    return config


@pytest.mark.parametrize("name", sorted(guide_models()))
def test_spec_builds_the_guide_model(name):
    expected, input_shape = guide_models()[name]
    built = build_model(load_spec(SPECS / f"{name}.yaml"))
    model = built.model
    assert [type(layer) for layer in model.layers] == [type(layer) for layer in expected.layers]
    assert [config_without_name(a) for a in model.layers] == [config_without_name(b) for b in expected.layers]
    assert model.count_params() == expected.count_params() == built.params
    assert model.output_shape == expected.output_shape
    model.set_weights(expected.get_weights())
    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected.predict(x, verbose=0), rtol=1e-6)


def test_named_layers_keep_their_names():
    model = build_model(load_spec(SPECS / "three_layers.yaml")).model
    assert [layer.name for layer in model.layers] == ["layer1", "layer2", "layer3"]
    assert model.get_layer("layer2").units == 3


def test_guide_function_equivalence():
    """'is equivalent to this function': y = layer3(layer2(layer1(x)))."""
    model = build_model(load_spec(SPECS / "three_layers.yaml")).model
    x = np.ones((3, 3), dtype=np.float32)
    layer1, layer2, layer3 = model.layers
    np.testing.assert_allclose(model(x), layer3(layer2(layer1(x))), rtol=1e-6)


def test_unbuilt_model_has_no_weights_until_called():
    spec = load_spec(SPECS / "my_sequential_model.yaml")
    built = build_model(spec)
    assert not built.built and built.model.name == "my_sequential_model"
    assert not built.model.built
    built.model(np.ones((1, 4), dtype=np.float32))
    assert built.model.count_params() == 10 + 9 + 16


def test_input_shape_option_builds_an_unbuilt_spec():
    built = build_model(load_spec(SPECS / "unbuilt_stack.yaml"), input_shape=(4,), abstract=True)
    assert built.built and built.output_shape == (None, 4) and built.input_source == "--input-shape"


def test_abstract_build_allocates_no_weights():
    keras_variable_memory = build_model(load_spec(SPECS / "seed_cnn.yaml"), abstract=True)
    assert keras_variable_memory.params == 49002
    assert keras_variable_memory.weight_bytes == 49002 * 4


def test_upto_builds_the_prefix():
    built = build_model(load_spec(SPECS / "seed_cnn.yaml"), abstract=True, upto=3)
    assert built.output_shape == (None, 40, 40, 32)
    assert [row.index for row in built.rows] == [1, 2, 3]


def test_default_layer_names_do_not_depend_on_what_was_built_before():
    first = build_model(load_spec(SPECS / "seed_cnn.yaml"), abstract=True)
    second = build_model(load_spec(SPECS / "seed_cnn.yaml"), abstract=True)
    assert [r.name for r in first.rows] == [r.name for r in second.rows]
    assert first.rows[0].name == "conv2d" and first.rows[1].name == "conv2d_1"


def test_nested_objects_and_wrapped_layers(write_spec):
    path = write_spec(
        "layers:\n"
        "  - Input: {shape: [5, 3]}\n"
        "  - Bidirectional: {layer: {LSTM: {units: 4}}}\n"
        "  - Dense: {units: 2, kernel_initializer: {GlorotUniform: {seed: 1}}, kernel_regularizer: {L2: {l2: 0.01}}}\n"
    )
    built = build_model(load_spec(path))
    assert not built.problems
    assert built.output_shape == (None, 2)
    assert type(built.model.layers[0].forward_layer).__name__ == "LSTM"


@pytest.mark.slow
def test_a_weightless_build_leaves_no_weights_for_later_builds():
    """A checked 12-billion-parameter spec must not get its weights the next time Keras initializes
    variables (the next real build in the same process: training after the memory estimate, a tune trial).
    Run under a 3 GB address-space limit, so a regression fails instead of swapping."""
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "import numpy as np\n"
        "from seqcli.modelbuild import build_model\n"
        "from seqcli.keras_env import import_keras\n"
        "from seqcli.specfile import spec_from_text\n"
        "huge = spec_from_text('layers:\\n  - Input: {shape: [4096]}\\n  - Dense: {units: 3000000}\\n')\n"
        "assert build_model(huge, abstract=True).params == 4097 * 3000000\n"
        "keras = import_keras()\n"
        "class Double(keras.layers.Layer):\n"  # no compute_output_shape: Keras traces call in a StatelessScope
        "    def call(self, x):\n"
        "        return x * 2\n"
        "small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), Double()])\n"
        "print(tuple(small(np.zeros((1, 4), 'float32')).shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 2)", done.stderr[-3000:]
