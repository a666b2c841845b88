"""Pretrained bases as layer entries: keras.applications models and saved .keras models."""

import urllib.error

import numpy as np
import pytest

from seqcli.errors import SpecError
from seqcli.modelbuild import build_model, model_from_spec
from seqcli.models import WeightsError
from seqcli.specfile import load_spec
from seqcli.verbs.report import inspect_spec
from seqcli.views.render import problems_text
from tests.bases import BASE_NAME, keras, save_tiny_mobilenet_weights, tiny_mobilenet
from tests.conftest import run_seq as run

HEAD = "layers:\n  - Input: {shape: [32, 32, 3]}\n"
TINY = "{alpha: 0.35, include_top: false, pooling: avg, weights: null}"


def test_application_is_one_row_with_exact_params(write_spec):
    path = write_spec(HEAD + f"  - MobileNetV2: {TINY}\n  - Dense: {{units: 3}}\n")
    built = build_model(load_spec(path), abstract=True)
    expected = tiny_mobilenet().count_params()
    assert not built.problems
    assert [(r.name, r.class_name, r.params, r.inner_layers) for r in built.rows] == [
        (BASE_NAME, "MobileNetV2", expected, 154),
        ("dense", "Dense", 1280 * 3 + 3, None),
    ]
    assert built.output_shape == (None, 3)
    result = run("summary", str(path))
    assert result.exit_code == 0
    assert f"│ 1 │ {BASE_NAME} │ MobileNetV2 (154 layers) │ (None, 1280) │ {expected:,} │ yes" in result.stdout


def test_input_shape_comes_from_the_previous_layer(write_spec):
    path = write_spec(
        "layers:\n  - Input: {shape: [40, 40, 3]}\n  - Resizing: {height: 32, width: 32}\n"
        f"  - MobileNetV2: {TINY}\n"
    )
    built = build_model(load_spec(path), abstract=True)
    assert built.model.layers[1].input_shape == (None, 32, 32, 3)
    assert built.model.layers[1].name == BASE_NAME


def test_first_entry_input_shape_argument(write_spec):
    path = write_spec(
        "layers:\n  - MobileNetV2: {alpha: 0.35, include_top: false, weights: null, "
        "input_shape: [32, 32, 3]}\n  - GlobalAveragePooling2D: {}\n"
    )
    built = build_model(load_spec(path), abstract=True)
    assert not built.problems and built.output_shape == (None, 1280) and built.input_source == "input_shape"


def test_trainable_false_on_any_entry(write_spec):
    path = write_spec(
        HEAD + "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: null, "
        "trainable: false}\n  - Dense: {units: 4, trainable: false}\n  - Dense: {units: 3}\n"
    )
    built = build_model(load_spec(path), abstract=True)
    assert [row.trainable for row in built.rows] == [False, False, True]
    assert built.trainable_params == 4 * 3 + 3


CASES = [
    (
        "below the minimum size",
        "layers:\n  - Input: {shape: [16, 16, 3]}\n  - Xception: {weights: null, include_top: false}\n",
        "spec.yaml:3:5: layers[1].Xception: Xception needs inputs of at least 71x71; it receives 16x16\n"
        "    - Xception: {weights: null, include_top: false}\n"
        "      ^\n"
        "  hint: enlarge the input, e.g. with '- Resizing: {height: 71, width: 71}' before it",
    ),
    (
        "not an image",
        "layers:\n  - Input: {shape: [10]}\n  - MobileNetV2: {weights: null, include_top: false}\n",
        "spec.yaml:3:5: layers[1].MobileNetV2: MobileNetV2 takes images (height, width, channels); it receives "
        "shape (10,)\n"
        "    - MobileNetV2: {weights: null, include_top: false}\n"
        "      ^\n"
        "  hint: give the model an image input, e.g. '- Input: {shape: [224, 224, 3]}'",
    ),
    (
        "classes without include_top",
        HEAD + "  - MobileNetV2: {weights: null, include_top: false, classes: 10}\n",
        "spec.yaml:3:63: layers[1].MobileNetV2.classes: classes only applies with include_top: true\n"
        "    hts: null, include_top: false, classes: 10}\n"
        "                                            ^\n"
        "  hint: remove classes: the new head on top of the base sets the classes",
    ),
    (
        "ImageNet classifier with other classes",
        "layers:\n  - Input: {shape: [224, 224, 3]}\n  - ResNet50: {weights: imagenet, classes: 10}\n",
        "spec.yaml:3:44: layers[1].ResNet50.classes: the ImageNet classifier of ResNet50 has 1000 classes; "
        "received classes=10\n"
        "     ResNet50: {weights: imagenet, classes: 10}\n"
        "                                            ^\n"
        "  hint: set include_top: false and put your own Dense layer on top",
    ),
    (
        "ImageNet classifier at another size",
        "layers:\n  - Input: {shape: [128, 128, 3]}\n  - Xception: {weights: imagenet}\n",
        "spec.yaml:3:5: layers[1].Xception: with include_top: true and ImageNet weights, Xception takes 299x299 "
        "inputs; it receives 128x128\n"
        "    - Xception: {weights: imagenet}\n"
        "      ^\n"
        "  hint: set include_top: false (with pooling: avg) to use other input sizes",
    ),
    (
        "ImageNet weights on grey images",
        "layers:\n  - Input: {shape: [96, 96, 1]}\n  - MobileNetV2: {weights: imagenet, include_top: false}\n",
        "spec.yaml:3:28: layers[1].MobileNetV2.weights: ImageNet weights expect 3 input channels; MobileNetV2 "
        "receives 1\n"
        "    - MobileNetV2: {weights: imagenet, include_top: false}\n"
        "                             ^\n"
        "  hint: feed RGB images, or use weights: null",
    ),
    (
        "misspelled argument",
        HEAD + "  - MobileNetV2: {weights: null, include_top: false, poolin: avg}\n",
        "spec.yaml:3:54: layers[1].MobileNetV2.poolin: unknown argument for MobileNetV2\n"
        "    V2: {weights: null, include_top: false, poolin: avg}\n"
        "                                            ^\n"
        "  hint: did you mean 'pooling'?",
    ),
    (
        "input_tensor is seq's to give",
        HEAD + "  - MobileNetV2: {weights: null, input_tensor: x}\n",
        "spec.yaml:3:34: layers[1].MobileNetV2.input_tensor: input_tensor is not given in a spec\n"
        "    - MobileNetV2: {weights: null, input_tensor: x}\n"
        "                                   ^\n"
        "  hint: MobileNetV2 takes its input from the entry before it",
    ),
    (
        "misspelled imagenet",
        HEAD + "  - MobileNetV2: {weights: imagnet, include_top: false}\n",
        "spec.yaml:3:28: layers[1].MobileNetV2.weights: weights must be imagenet, null or a .h5 weights file; "
        "received 'imagnet'\n"
        "    - MobileNetV2: {weights: imagnet, include_top: false}\n"
        "                             ^\n"
        "  hint: did you mean 'imagenet'?",
    ),
    (
        "missing weights file",
        HEAD + "  - MobileNetV2: {weights: base.weights.h5, include_top: false}\n",
        "spec.yaml:3:28: layers[1].MobileNetV2.weights: weights file not found: {tmp}/base.weights.h5\n"
        "    - MobileNetV2: {weights: base.weights.h5, include_top: false}\n"
        "                             ^\n"
        "  hint: 'base.weights.h5' is relative to the spec's folder, {tmp}",
    ),
    (
        "Keras's own error, at the entry",
        HEAD + "  - MobileNetV2: {weights: null, classes: 4, classifier_activation: softmaxx}\n",
        "spec.yaml:3:5: layers[1].MobileNetV2: Keras could not make MobileNetV2: Could not interpret activation "
        "function identifier: softmaxx\n"
        "    - MobileNetV2: {weights: null, classes: 4, classifier_activation: softmaxx}\n"
        "      ^\n"
        "  hint: check the arguments against the Keras documentation of this model",
    ),
    (
        "saved model file missing",
        HEAD + "  - Model: {path: base.keras}\n",
        "spec.yaml:3:19: layers[1].Model.path: no such model file: {tmp}/base.keras\n"
        "    - Model: {path: base.keras}\n"
        "                    ^\n"
        "  hint: 'base.keras' is relative to the spec's folder, {tmp}",
    ),
    (
        "saved model without a path",
        HEAD + "  - Model: {}\n",
        "spec.yaml:3:5: layers[1].Model: Model needs path: the .keras file to load\n"
        "    - Model: {}\n"
        "      ^\n"
        "  hint: write '- Model: {path: base.keras}'",
    ),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_base_problems_are_reported_at_their_position(write_spec, tmp_path, text, expected):
    path = write_spec(text)
    report = inspect_spec(path)
    shown = problems_text(report).replace(str(path), "spec.yaml").replace(str(tmp_path), "{tmp}")
    assert shown == expected


def test_abstract_build_never_reads_weights(write_spec, tmp_path):
    (tmp_path / "base.weights.h5").write_bytes(b"not really weights")
    path = write_spec(
        HEAD + "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: base.weights.h5}\n"
    )
    assert inspect_spec(path).ok
    with pytest.raises(SpecError) as raised:
        model_from_spec(load_spec(path))
    assert "layers[1].MobileNetV2: Keras could not make MobileNetV2" in raised.value.render()


def test_local_weights_file_is_loaded(write_spec, tmp_path):
    base = save_tiny_mobilenet_weights(tmp_path / "base.weights.h5", seed=3)
    path = write_spec(
        HEAD + "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, "
        "weights: base.weights.h5}\n  - Dense: {units: 3}\n"
    )
    model = model_from_spec(load_spec(path))
    for mine, theirs in zip(model.layers[0].weights, base.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_imagenet_offline_says_where_the_file_goes(write_spec, tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    from keras.src.backend import config

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    (tmp_path / "keras-home").mkdir()
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras-home"))  # $KERAS_HOME, read at import
    path = write_spec(HEAD + "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: imagenet}\n")
    assert inspect_spec(path).ok  # summary and check never download
    with pytest.raises(SpecError) as raised:
        model_from_spec(load_spec(path))
    text = raised.value.render()
    url = (
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    )
    cache = tmp_path / "keras-home" / "models" / url.rsplit("/", 1)[1]
    assert f"layers[1].MobileNetV2.weights: cannot download the ImageNet weights of MobileNetV2 from {url}" in text
    assert f"Keras caches them as {cache}" in text
    assert f"hint: on a machine with network access run 'curl -L -o {cache} {url}'" in text


def save_small_base(path):
    k = keras()
    k.utils.set_random_seed(1)
    base = k.Sequential(
        [
            k.Input((8, 8, 1)),
            k.layers.Conv2D(4, 3, name="conv"),
            k.layers.BatchNormalization(name="norm"),
            k.layers.GlobalAveragePooling2D(name="pool"),
        ],
        name="small_base",
    )
    base.save(path)
    return base


def test_saved_model_as_a_layer(write_spec, tmp_path):
    base = save_small_base(tmp_path / "base.keras")
    path = write_spec(
        "layers:\n  - Input: {shape: [8, 8, 1]}\n  - Model: {path: base.keras, trainable: false}\n"
        "  - Dense: {units: 2}\n"
    )
    built = build_model(load_spec(path), abstract=True)
    assert [(r.name, r.class_name, r.params, r.inner_layers, r.trainable) for r in built.rows] == [
        ("small_base", "Model", base.count_params(), 3, False),
        ("dense", "Dense", 10, None, True),
    ]
    model = model_from_spec(load_spec(path))
    for mine, theirs in zip(model.layers[0].weights, base.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_saved_model_loads_in_safe_mode(write_spec, tmp_path):
    k = keras()
    unsafe = k.Sequential([k.Input((4,)), k.layers.Lambda(lambda x: x * 2)])
    unsafe.save(tmp_path / "unsafe.keras")
    path = write_spec("layers:\n  - Input: {shape: [4]}\n  - Model: {path: unsafe.keras}\n")
    report = inspect_spec(path)
    assert not report.ok
    assert "layers[1].Model: Keras could not make Model:" in problems_text(report)
    assert "safe_mode" in problems_text(report)


def test_weights_that_do_not_fit_say_so(write_spec, tmp_path):
    k = keras()
    other = k.Sequential([k.Input((4,)), k.layers.Dense(7)])
    other.save_weights(tmp_path / "other.weights.h5")
    path = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 2}\n")
    with pytest.raises(WeightsError) as raised:
        model_from_spec(load_spec(path), weights=tmp_path / "other.weights.h5")
    assert "cannot load" in raised.value.message and "same spec" in raised.value.hint
