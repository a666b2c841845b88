"""A nested model inside a saved Sequential one, recognised as the ``keras.applications`` base a spec names.

A spec stacks a base as ``- MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg}``; Keras saves it as a
nested Functional model. The model's name and its last layers propose an application and its arguments; the
proposal is accepted only when that application, made again with those arguments (abstractly: no weights are
read or downloaded), has the very same layers (classes, names and configurations) as the saved base. A name
alone never decides, and a nested model that matches no application is left for the caller to refuse.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from seqcli import applications

# The widths Keras publishes weights for (a base built with weights: null may use any other: it is tried once
# the model's name gives it).
_ALPHAS = {
    "MobileNet": (0.25, 0.5, 0.75, 1.0),
    "MobileNetV2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "MobileNetV3Small": (0.75, 1.0),
    "MobileNetV3Large": (0.75, 1.0),
}
_FLAGS = ("minimalistic", "include_preprocessing")
_TOP_DROPOUT = {"MobileNet": "dropout", "MobileNetV3Small": "dropout_rate", "MobileNetV3Large": "dropout_rate"}
_POOLING = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}
# A layer near the input of each family (by the longest prefix of the application's name), with or without
# its preprocessing layers: which applications a renamed base may be, before any is made to be compared.
_STEMS = {
    "Xception": ("block1_conv1_bn",),
    "VGG": ("block1_conv2",),
    "Inception": ("conv2d",),
    "ResNet": ("conv1_conv",),
    "DenseNet": ("conv1_conv",),
    "ConvNeXt": ("prestem_normalization", "stem"),
    "MobileNetV3": ("conv_bn",),
    "MobileNetV2": ("bn_Conv1",),
    "MobileNet": ("conv1_bn",),
    "NASNet": ("stem_bn1",),
    "EfficientNetV2": ("stem_conv",),
    "EfficientNet": ("stem_conv_pad",),
}
_STEM_DEPTH = 6


def application_entry(model) -> tuple[str, dict[str, Any]] | None:
    """The application and the spec arguments that make a base with the same layers as ``model`` (a nested
    Functional model), with ``weights: null``: the trained weights travel apart. None when no application
    does."""
    input_shape = _input_shape(model)
    if input_shape is None:
        return None
    wanted = architecture(model)
    for name, renamed in candidate_applications(model):
        other_layers = []  # argument sets (width aside) that made other layer classes: no width can match
        for arguments in _argument_candidates(name, model):
            arguments = {**arguments, "name": model.name} if renamed else arguments
            unsized = {k: v for k, v in arguments.items() if k != "alpha"}
            if unsized in other_layers:
                continue
            found, same_classes = _matching_arguments(name, arguments, input_shape, model.name, wanted)
            if found is not None:
                if not model.trainable:
                    found["trainable"] = False
                return name, found
            if not same_classes:
                other_layers.append(unsized)
    return None


def _input_shape(model) -> tuple | None:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if not isinstance(shape, tuple) or len(shape) != 4:
        return None
    return tuple(shape[1:])


def architecture(model) -> list[tuple[str, dict, list[int]]]:
    """Each layer's class, configuration and the layers it reads from: without what a spec sets apart
    (trainable) nor the count in an automatic name (``global_average_pooling2d_3``: it depends on what else
    the process had built)."""
    from seqcli.keras_env import snake_case

    layers = []
    for layer, inputs in zip(model.layers, _connections(model), strict=True):
        config = {k: v for k, v in layer.get_config().items() if k != "trainable"}
        automatic = snake_case(type(layer).__name__)
        if re.fullmatch(rf"{re.escape(automatic)}(_\d+)?", str(config.get("name"))):
            config["name"] = automatic
        layers.append((type(layer).__name__, config, inputs))
    return layers


def _connections(model) -> list[list[int]]:
    """For each layer of a functional model, the positions of the layers its inputs come from (the graph)."""
    entries = model.get_config().get("layers", [])
    position = {entry["name"]: index for index, entry in enumerate(entries)}

    def sources(value) -> list[int]:
        if isinstance(value, dict):
            history = (
                value.get("config", {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
            )
            if history:
                return [position.get(history[0], -1)]
            return [found for item in value.values() for found in sources(item)]
        if isinstance(value, (list, tuple)):
            return [found for item in value for found in sources(item)]
        return []

    return [sources(entry.get("inbound_nodes", [])) for entry in entries] if entries else [[] for _ in model.layers]


def _simplified(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def candidate_applications(model) -> list[tuple[str, bool]]:
    """Applications worth making to compare, best first, each with whether the base was renamed: only those
    whose stem layers the base has; first those whose default model name the base's name starts with
    (longest first: resnet50v2 before resnet50), then the others (a base the spec renamed)."""
    early = [layer.name for layer in model.layers[:_STEM_DEPTH]]
    stemmed = [name for name in applications.APPLICATIONS if _has_stem(name, early)]
    simplified = _simplified(model.name)
    by_name = []
    for name in stemmed:
        default = applications.application_defaults(name).get("name") or name
        if simplified.startswith(_simplified(default)):
            by_name.append((len(_simplified(default)), name))
    named = [name for _, name in sorted(by_name, reverse=True)]
    return [(name, False) for name in named] + [(name, True) for name in stemmed if name not in named]


def _has_stem(name: str, layer_names: list[str]) -> bool:
    family = max((prefix for prefix in _STEMS if name.startswith(prefix)), key=len, default=None)
    stems = _STEMS.get(family, ()) if family is not None else ()
    return any(layer == stem or layer.endswith(f"_{stem}") for layer in layer_names for stem in stems)


def _argument_candidates(name: str, model) -> list[dict[str, Any]]:
    """Argument sets to try for ``name``: what the base's last layers say (top, pooling, classes), and the
    structural options of the family (width, flags), the width its model name gives first."""
    accepted = applications.application_arguments(name)
    common: dict[str, Any] = {"weights": None, **_top_arguments(name, model)}
    options: list[list[tuple[str, Any]]] = []
    if name in _ALPHAS:
        named_alpha = re.search(r"_(\d+\.\d+)_", model.name)
        alphas = ([float(named_alpha.group(1))] if named_alpha else []) + list(_ALPHAS[name])
        options.append([("alpha", alpha) for alpha in dict.fromkeys(alphas)])
    if "depth_multiplier" in accepted:
        options.append([("depth_multiplier", 1), ("depth_multiplier", 2)])
    options += [[(flag, True), (flag, False)] for flag in _FLAGS if flag in accepted]
    return [{**common, **dict(choice)} for choice in itertools.product(*options)]


def _top_arguments(name: str, model) -> dict[str, Any]:
    layers = model.layers
    last = layers[-1] if layers else None
    if last is None or last.name != "predictions":
        pooling = _POOLING.get(type(last).__name__) if last is not None else None
        return {"include_top": False, "pooling": pooling}
    # The classifier: a Dense layer, or a 1x1 Conv2D and an Activation named predictions (MobileNet, V3).
    sized: dict = next(
        (layer.get_config() for layer in reversed(layers) if type(layer).__name__ in ("Dense", "Conv2D")), {}
    )
    classes = sized.get("units", sized.get("filters"))
    arguments = {"include_top": True, "classes": classes, "classifier_activation": last.get_config().get("activation")}
    dropout = next((layer for layer in reversed(layers) if type(layer).__name__ == "Dropout"), None)
    if name in _TOP_DROPOUT and dropout is not None:
        arguments[_TOP_DROPOUT[name]] = dropout.rate
    return arguments


def _matching_arguments(
    name: str, arguments: dict, input_shape: tuple, model_name: str, wanted
) -> tuple[dict | None, bool]:
    """The spec arguments (defaults left out) when ``name`` made with ``arguments`` has the layers ``wanted``,
    under its own default name or under ``model_name`` (else None); and whether the layers made were at least
    of the same classes, in order (a width may still differ)."""
    made = _made(name, arguments, input_shape)
    if made is not None and made.name != model_name and "name" not in arguments:
        arguments = {**arguments, "name": model_name}
        made = _made(name, arguments, input_shape)
    if made is None:
        return None, False
    found = architecture(made)
    if found != wanted:
        return None, [row[0] for row in found] == [row[0] for row in wanted]
    defaults = applications.application_defaults(name)
    order = list(defaults)  # the signature's order, as Keras's documentation lists the arguments
    kept = [key for key, value in arguments.items() if key == "weights" or defaults.get(key, value) != value]
    return {key: arguments[key] for key in sorted(kept, key=lambda key: order.index(key) if key in order else 99)}, True


def _made(name: str, arguments: dict, input_shape: tuple):
    """The application made abstractly (no weights read or downloaded), or None when Keras refuses the
    arguments for this input (too small, a width it does not offer...)."""
    try:
        return applications.construct_application(name, arguments, input_shape, abstract=True, base_dir=Path("."))
    except Exception:  # Keras's ValueError/TypeError for arguments this application does not take
        return None
