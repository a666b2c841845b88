"""Pretrained bases as layer entries: ``keras.applications`` models and saved ``.keras`` models.

A spec stacks a base exactly as the guide does::

    - Xception: {weights: imagenet, include_top: false, pooling: avg}
    - Model: {path: base.keras}

Application names resolve through the explicit :data:`APPLICATIONS` table, never ``getattr`` on
user text. Each application's shape rules (minimum input size; with ``include_top`` and ImageNet
weights, 1000 classes and the input size the classifier was trained at) are checked here, so that
``seq check`` reports them at the entry's position without building anything. Abstract builds never
download or read weights.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqcli.errors import did_you_mean
from seqcli.files import resolve_path
from seqcli.keras_env import fresh_layer_names, import_keras, keras_home
from seqcli.models import WeightsError, check_weights_file, load_model_architecture, load_model_file
from seqcli.shapes import shape_text


@dataclass(frozen=True)
class Application:
    """One ``keras.applications`` constructor and the input rules Keras applies to it."""

    name: str
    min_size: int
    imagenet_top_sizes: tuple[int, ...] | None  # square sizes the ImageNet classifier takes; None: not checked


def _family(names: list[str], min_size: int, sizes: tuple[int, ...] | None) -> dict[str, Application]:
    return {name: Application(name, min_size, sizes) for name in names}


_RESNETS = ["ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2"]
_EFFICIENTNET_SIZES = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "B4": 380, "B5": 456, "B6": 528, "B7": 600}
_EFFICIENTNET_V2_SIZES = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "S": 384, "M": 480, "L": 480}

# Minimum sizes and ImageNet input sizes as keras.applications enforces them (imagenet_utils.obtain_input_shape).
APPLICATIONS: dict[str, Application] = {
    **_family(["Xception"], 71, (299,)),
    **_family(["InceptionV3", "InceptionResNetV2"], 75, (299,)),
    **_family(["VGG16", "VGG19", *_RESNETS, "DenseNet121", "DenseNet169", "DenseNet201"], 32, (224,)),
    **_family(["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"], 32, (224,)),
    **_family(["MobileNet"], 32, (128, 160, 192, 224)),
    **_family(["MobileNetV2"], 32, (96, 128, 160, 192, 224)),
    **_family(["MobileNetV3Small", "MobileNetV3Large"], 32, None),
    **_family(["NASNetMobile"], 32, (224,)),
    **_family(["NASNetLarge"], 32, (331,)),
    **{f"EfficientNet{k}": Application(f"EfficientNet{k}", 32, (v,)) for k, v in _EFFICIENTNET_SIZES.items()},
    **{f"EfficientNetV2{k}": Application(f"EfficientNetV2{k}", 32, (v,)) for k, v in _EFFICIENTNET_V2_SIZES.items()},
}
SAVED_MODEL = "Model"
IMAGENET_CLASSES = 1000
# Arguments seq supplies itself: the input comes from the previous entry.
SUPPLIED_ARGUMENTS = {"input_tensor"}
EXTRA_ARGUMENTS = {"trainable"}
SAVED_MODEL_ARGUMENTS = ("path", "trainable", "name")


def is_base(class_name: str) -> bool:
    """Whether a layer entry names a pretrained base (an application or a saved model)."""
    return class_name in APPLICATIONS or class_name == SAVED_MODEL


def application_function(name: str):
    """The ``keras.applications`` constructor for a name of :data:`APPLICATIONS` (KeyError otherwise)."""
    keras = import_keras()

    return getattr(keras.applications, APPLICATIONS[name].name)


@functools.cache
def application_arguments(name: str) -> frozenset[str]:
    """Keyword arguments a spec may give an application: its real signature, less what seq supplies."""
    parameters = inspect.signature(application_function(name)).parameters
    return frozenset(set(parameters) - SUPPLIED_ARGUMENTS | EXTRA_ARGUMENTS)


@functools.cache
def application_defaults(name: str) -> dict[str, Any]:
    parameters = inspect.signature(application_function(name)).parameters
    return {k: p.default for k, p in parameters.items() if p.default is not p.empty}


# ----------------------------------------------------------------------------- checks


@dataclass
class BaseProblem:
    """A problem with a base entry; ``key`` is the argument it concerns (None: the entry itself)."""

    message: str
    hint: str | None = None
    key: str | None = None


def weights_problems(name: str, weights: Any, base_dir: Path) -> list[BaseProblem]:
    """``weights`` must be imagenet, null, or an existing local weights file."""
    if weights is None or weights == "imagenet":
        return []
    if not isinstance(weights, str):
        return [
            BaseProblem(
                f"weights must be imagenet, null or a weights file; received {weights!r}",
                "write weights: imagenet, weights: null, or weights: path/to/base.weights.h5",
                "weights",
            )
        ]
    path = resolve_path(weights, base_dir)
    if not weights.endswith(".h5"):
        hint = did_you_mean(weights, ["imagenet"]) or "a local file is a .weights.h5 written by save_weights"
        return [
            BaseProblem(f"weights must be imagenet, null or a .h5 weights file; received {weights!r}", hint, "weights")
        ]
    try:
        check_weights_file(path, written_as=weights, base_dir=base_dir, suffixes=(".h5",))
    except WeightsError as error:
        return [BaseProblem(error.message, error.hint or "check the path", "weights")]
    return []


def shape_problems(name: str, args: dict, input_shape: tuple | None) -> list[BaseProblem]:
    """The application's own input rules, for input ``input_shape`` (without the batch dimension)."""
    app = APPLICATIONS[name]
    defaults = application_defaults(name)
    include_top = args.get("include_top", defaults.get("include_top", True))
    weights = args.get("weights", defaults.get("weights"))
    problems = []
    if not include_top and "classes" in args:
        problems.append(
            BaseProblem(
                "classes only applies with include_top: true",
                "remove classes: the new head on top of the base sets the classes",
                "classes",
            )
        )
    imagenet_top = include_top and weights == "imagenet"
    if imagenet_top and args.get("classes", IMAGENET_CLASSES) != IMAGENET_CLASSES:
        problems.append(
            BaseProblem(
                f"the ImageNet classifier of {name} has {IMAGENET_CLASSES} classes; received classes={args['classes']}",
                "set include_top: false and put your own Dense layer on top",
                "classes",
            )
        )
    if input_shape is None:
        return problems
    if len(input_shape) != 3:
        return problems + [
            BaseProblem(
                f"{name} takes images (height, width, channels); it receives shape {shape_text(input_shape)}",
                "give the model an image input, e.g. '- Input: {shape: [224, 224, 3]}'",
            )
        ]
    height, width, channels = input_shape
    if any(d is not None and d < app.min_size for d in (height, width)):
        problems.append(
            BaseProblem(
                f"{name} needs inputs of at least {app.min_size}x{app.min_size}; it receives {height}x{width}",
                f"enlarge the input, e.g. with '- Resizing: {{height: {app.min_size}, width: {app.min_size}}}' "
                "before it",
            )
        )
    if weights == "imagenet" and channels != 3:
        problems.append(
            BaseProblem(
                f"ImageNet weights expect 3 input channels; {name} receives {channels}",
                "feed RGB images, or use weights: null",
                "weights",
            )
        )
    if imagenet_top and app.imagenet_top_sizes and not (height == width and height in app.imagenet_top_sizes):
        sizes = " or ".join(f"{s}x{s}" for s in app.imagenet_top_sizes)
        problems.append(
            BaseProblem(
                f"with include_top: true and ImageNet weights, {name} takes {sizes} inputs; "
                f"it receives {height}x{width}",
                "set include_top: false (with pooling: avg) to use other input sizes",
                "include_top",
            )
        )
    return problems


# ----------------------------------------------------------------------------- construction


class WeightsDownloadError(Exception):
    """ImageNet weights could not be downloaded (offline, proxy...): says where to put them by hand."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def construct_application(name: str, args: dict, input_shape: tuple | None, *, abstract: bool, base_dir: Path):
    """Call the application with the incoming shape. Abstract builds get ``weights=None``: no download, no
    file read, same architecture. Raises Keras's ValueError/TypeError, or WeightsDownloadError."""
    kwargs = {k: v for k, v in args.items() if k not in EXTRA_ARGUMENTS}
    weights = kwargs.get("weights", application_defaults(name).get("weights"))
    if abstract:
        weights = None
    elif isinstance(weights, str) and weights != "imagenet":
        weights = str(resolve_path(weights, base_dir))
    kwargs["weights"] = weights
    kwargs["input_shape"] = tuple(input_shape) if input_shape is not None else kwargs.get("input_shape")
    try:
        with fresh_layer_names():
            model = application_function(name)(**kwargs)
    except Exception as error:  # get_file raises a bare Exception when the download fails
        if "URL fetch failure" in str(error):
            raise download_error(name, str(error)) from error
        raise
    if args.get("trainable") is False:
        model.trainable = False
    return model


def download_error(name: str, text: str) -> WeightsDownloadError:
    """A clear message for a failed ImageNet download: the URL, the cache file, how to pre-fill it."""
    match = re.search(r"URL fetch failure on (\S+?):? (.*)", text)
    url = match.group(1) if match else "(see the Keras documentation)"
    reason = match.group(2).strip() if match else text
    cache = keras_models_dir() / url.rsplit("/", 1)[-1]
    return WeightsDownloadError(
        f"cannot download the ImageNet weights of {name} from {url} ({reason}); Keras caches them as {cache}",
        f"on a machine with network access run 'curl -L -o {cache} {url}' (or build the model there once) and "
        f"copy the file to {keras_models_dir()}; or use weights: null, or a local .weights.h5 file",
    )


def keras_models_dir() -> Path:
    """Where Keras caches downloaded application weights: the models/ folder of the Keras home."""
    return keras_home() / "models"


# ----------------------------------------------------------------------------- saved models


def saved_model_problems(args: dict, base_dir: Path) -> list[BaseProblem]:
    path = args.get("path")
    if not isinstance(path, str) or not path:
        return [
            BaseProblem(
                "Model needs path: the .keras file to load",
                "write '- Model: {path: base.keras}'",
                "path" if "path" in args else None,
            )
        ]
    resolved = resolve_path(path, base_dir)
    if not path.endswith(".keras"):
        return [
            BaseProblem(
                f"Model loads .keras files (model.save); received {path!r}",
                "save the base with model.save('base.keras')",
                "path",
            )
        ]
    if not resolved.is_file():
        where = f"{path!r} is relative to the spec's folder, {base_dir}" if not Path(path).is_absolute() else None
        return [BaseProblem(f"no such model file: {resolved}", where or "check the path", "path")]
    return []


def load_saved_model(args: dict, *, abstract: bool, base_dir: Path):
    """Load a ``.keras`` model in safe mode (no code from the file runs). Abstract builds deserialize the
    architecture from the archive's config only: no weights are read. Raises ModelLoadError."""
    path = resolve_path(args["path"], base_dir)
    model = load_model_architecture(path) if abstract else load_model_file(path)
    if isinstance(args.get("name"), str):
        model.name = args["name"]
    if args.get("trainable") is False:
        model.trainable = False
    return model


def inner_layer_count(model) -> int:
    """Layers inside a base, not counting its input layer."""
    return sum(1 for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer")
