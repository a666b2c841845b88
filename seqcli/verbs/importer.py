"""``seq import``: a saved Keras Sequential model (loaded in safe mode) becomes a spec that builds the same model.

Each layer's ``get_config()`` is compared with that of an instance built with only the required arguments:
what equals the default is left out, so the spec reads as if written by hand. Auto names (``dense_1``) are
left out too: seq names unnamed layers the way Keras does, counted within the spec. Keras objects
(initializers, regularizers, constraints) become one-key mappings such as ``{GlorotUniform: {seed: 1}}``,
nested layers ``{LSTM: {units: 32}}``; a Bidirectional layer's ``backward_layer`` is dropped when it is the
default mirror of the forward layer. A nested model that is a ``keras.applications`` base (recognised by
its layers, see :mod:`seqcli.verbs.import_bases`) becomes its application entry, ``{MobileNetV2: {...}}``.
What a spec cannot express (a Lambda, a functional graph, a custom class, any other nested model) is
refused, naming the layer.

The model is loaded by :func:`seqcli.models.load_model_file` (safe mode), and layer classes and their accepted
arguments come from :mod:`seqcli.registry`, as the spec's own checks read them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli import registry
from seqcli.errors import SeqError
from seqcli.specfile.validate import as_identifier

SCHEMA_MODELINE = "# yaml-language-server: $schema=./seq.schema.json"


class ImportModelError(SeqError):
    """A model that a spec cannot express."""


@dataclass
class Imported:
    spec: dict
    text: str
    model: str
    layers: int
    params: int | None  # None for an unbuilt model (no input shape)
    weights: Path | None = None
    notes: list[str] = field(default_factory=list)


def import_model(
    path: str | Path,
    *,
    output: str | Path | None = None,
    weights_out: str | Path | None = None,
    overwrite: bool = False,
) -> Imported:
    """The spec of a saved Sequential model, as data and as YAML text, written to ``output`` when given; with
    ``weights_out`` its weights too. Existing outputs are replaced only with ``overwrite``, never the model."""
    from seqcli.outputs import claim_output

    with contextlib.ExitStack() as claims:
        for target in (output, weights_out):
            if target is not None:
                claims.enter_context(
                    claim_output(target, "seq import", folder=False, inputs=[path], overwrite=overwrite)
                )
        return _import(path, output, weights_out)


def _import(path: str | Path, output: str | Path | None, weights_out: str | Path | None) -> Imported:
    from seqcli.files import write_text_atomic
    from seqcli.models import load_model_file

    model = load_model_file(path)
    spec, text, notes = spec_text(model, path)
    if weights_out is not None:
        weights_out = _save_weights(model, Path(weights_out))
    if output is not None:
        write_text_atomic(output, text)
    params = model.count_params() if model.built else None
    return Imported(spec, text, model.name, len(model.layers), params, weights_out, notes)


def spec_text(model, path: str | Path) -> tuple[dict, str, list[str]]:
    """The spec of ``model`` (saved at ``path``) as data and as the YAML text import writes, and the notes to
    show. The text reads back as the same spec with no problem, or :class:`ImportModelError` says why not."""
    spec = spec_for_model(model, source=str(path))
    notes = _base_notes(spec, model)
    if spec.get("name") is not None and spec["name"] != as_identifier(spec["name"]):
        spec["name"] = as_identifier(spec["name"])
        notes.append(f"the model's name is not a name a spec takes; the spec names it {spec['name']!r}")
    origin = Path(path).name
    origin = origin if origin.isprintable() else json.dumps(origin)  # one comment line, whatever the file name
    text = f"{SCHEMA_MODELINE}\n# imported from {origin} by 'seq import'\n" + dump_spec_text(spec)
    _check_reads_back(text, spec, path)
    return spec, text, notes


def _base_notes(spec: dict, model) -> list[str]:
    """A note per application base: the spec makes it without weights (the trained ones travel apart), and
    a base frozen in part (a fine-tuned one) is made wholly trainable."""
    from seqcli.applications import APPLICATIONS

    notes = []
    entries = [entry for entry in spec["layers"] if "Input" not in entry]
    for entry, layer in zip(entries, model.layers, strict=True):
        name = next(iter(entry))
        if name not in APPLICATIONS:
            continue
        notes.append(
            f"the {name} base is written with weights: null (its architecture); --weights-out keeps the "
            "model's trained weights, base included"
        )
        frozen = sum(1 for inner in layer.layers if inner.weights and not inner.trainable)
        if layer.trainable and frozen:
            notes.append(
                f"{frozen} layers inside the {name} base are frozen, which a spec cannot say layer by layer; "
                "the spec makes the base trainable as a whole (seq transfer's fine_tune freezes them again)"
            )
    return notes


def _check_reads_back(text: str, spec: dict, source) -> None:
    """What import writes, seq reads back as the same spec: else the spec is refused before it is written, with
    seq's own reason (a layer name a spec cannot hold, say)."""
    from seqcli.specfile import spec_from_text

    read = spec_from_text(text, str(source))
    if read.document.data != spec:
        raise ImportModelError(
            f"the spec of {source} would not read back as the same model", hint="this is a bug in seq; report it"
        )
    if read.problems:
        first = read.problems[0]
        raise ImportModelError(
            f"{source} cannot be written as a spec: {first.path}: {first.message}",
            hint="rename it in Keras (a name of letters, digits and underscores) and save the model again",
        )


def spec_for_model(model, source: str = "the model") -> dict:
    """The spec (plain data) that builds ``model``: its input, and each layer's non-default arguments."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    if type(model) is not keras.Sequential:
        raise ImportModelError(
            f"{source} holds a {type(model).__name__} model, not a Sequential one",
            hint="seq specs describe keras.Sequential models: a chain of layers; functional "
            "graphs (several inputs, branches) cannot be written as a spec",
        )
    spec: dict[str, Any] = {}
    if not re.fullmatch(r"sequential(_\d+)?", model.name):
        spec["name"] = model.name
    layers = []
    input_entry = _input_entry(model)
    if input_entry is not None:
        layers.append(input_entry)
    layers += [layer_entry(layer) for layer in model.layers]
    spec["layers"] = layers
    return spec


def layer_entry(layer) -> dict:
    """The spec entry of one layer: its class and arguments, or the application a nested base is."""
    from seqcli.keras_env import import_keras
    from seqcli.verbs.import_bases import application_entry

    if isinstance(layer, import_keras().Model) and type(layer).__name__ == "Functional":
        found = application_entry(layer)
        if found is not None:
            name, arguments = found
            return {name: arguments}
    return {type(layer).__name__: layer_arguments(layer)}


def _input_entry(model) -> dict | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    tensor = inputs[0]
    entry: dict[str, Any] = {"shape": [None if d is None else int(d) for d in tensor.shape[1:]]}
    if str(tensor.dtype) != "float32":
        entry["dtype"] = str(tensor.dtype)
    return {"Input": entry}


def layer_arguments(layer) -> dict:
    """The constructor arguments of ``layer`` that differ from its class's defaults, in spec form."""
    name = type(layer).__name__
    cls = _spec_class(layer)
    config = layer.get_config()
    default = _default_config(cls, config)
    accepted, required = registry.accepted_arguments(cls)
    arguments: dict[str, Any] = {}
    for key, value in config.items():
        if key == "name":
            if not _auto_name(value, cls):
                arguments["name"] = value
            continue
        if key == "backward_layer" and _default_backward(config):
            continue
        if key not in required and key in default and _same(value, default[key]):
            continue
        if key not in accepted:
            raise ImportModelError(
                f"layer '{layer.name}' ({name}) has {key}={value!r}, which a spec cannot set",
                hint="seq passes only constructor arguments to a layer",
            )
        arguments[key] = spec_value(key, value, layer.name)
    return arguments


def _spec_class(layer) -> type:
    from seqcli.keras_env import import_keras

    keras = import_keras()
    name = type(layer).__name__
    if isinstance(layer, keras.Model):
        raise ImportModelError(
            f"layer '{layer.name}' is a nested {name} model, which seq cannot write as a spec",
            hint="save that model on its own and use '- Model: {path: base.keras}', or a "
            "keras.applications base by its class name",
        )
    reason = registry.excluded_reason(name)
    if reason:
        raise ImportModelError(f"layer '{layer.name}' is a {name}, which cannot be used in a spec: {reason}")
    cls = registry.layer_classes().get(name)
    if cls is not type(layer):
        raise ImportModelError(
            f"layer '{layer.name}' is a custom class {type(layer).__module__}.{name}, not a built-in Keras layer",
            hint="seq specs use the layers of keras.layers only",
        )
    return cls


def _default_config(cls: type, config: dict) -> dict:
    """``get_config()`` of an instance built with only the required arguments (taken from ``config``)."""
    _, required = registry.accepted_arguments(cls)
    arguments = {}
    for key in required:
        value = config.get(key)
        if key in registry.NESTED_LAYER_ARGUMENTS and isinstance(value, dict):
            value = deserialize_layer(value)
        arguments[key] = value
    try:
        return cls(**arguments).get_config()
    except Exception:  # a class that cannot be built from its required arguments alone: keep every argument
        return {}


def deserialize_layer(config: dict):
    """The layer a serialized config describes; ``config`` is left as it was (Keras's wrappers pop their
    ``layer`` from the config they are given, so a nested wrapper's config could not be read twice)."""
    from seqcli.keras_env import import_keras

    return import_keras().layers.deserialize(copy.deepcopy(config))


def _auto_name(name: str, cls: type) -> bool:
    from seqcli.keras_env import snake_case

    return re.fullmatch(rf"{re.escape(snake_case(cls.__name__))}(_\d+)?", name) is not None


def _default_backward(config: dict) -> bool:
    """A Bidirectional's backward layer that mirrors the forward one (what Keras builds when none is given)."""
    forward, backward = config.get("layer"), config.get("backward_layer")
    if not isinstance(forward, dict) or not isinstance(backward, dict):
        return backward is None
    mirrored = {**forward["config"], "go_backwards": not forward["config"].get("go_backwards", False)}
    strip = ("name",)
    return backward["class_name"] == forward["class_name"] and {
        k: v for k, v in backward["config"].items() if k not in strip
    } == {k: v for k, v in mirrored.items() if k not in strip}


def _same(value, default) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default


def spec_value(key: str, value, where: str):
    """A config value as a spec writes it: tuples as lists, Keras objects as one-key mappings."""
    if isinstance(value, tuple):
        return [spec_value(key, item, where) for item in value]
    if isinstance(value, list):
        return [spec_value(key, item, where) for item in value]
    if not isinstance(value, dict):
        return value
    if "class_name" not in value:
        return {k: spec_value(k, v, where) for k, v in value.items()}
    class_name, config = value["class_name"], value.get("config") or {}
    if value.get("registered_name") not in (None, class_name):
        raise ImportModelError(
            f"layer '{where}' uses a custom {class_name} ({value['registered_name']}) for {key}",
            hint="seq specs use built-in Keras objects only",
        )
    if class_name.endswith("DTypePolicy"):
        return config.get("name")
    if key in registry.NESTED_LAYER_ARGUMENTS:
        return {class_name: _nested_arguments(deserialize_layer(value), key)}
    module = registry.object_argument_module(key)
    if module is not None:
        return {class_name: _object_arguments(module, class_name, config)}
    raise ImportModelError(f"layer '{where}' has a {class_name} object for {key}, which a spec cannot express")


def _nested_arguments(layer, key: str) -> dict:
    """A wrapped layer's arguments; Bidirectional renames its layers ``forward_NAME``/``backward_NAME``."""
    arguments = layer_arguments(layer)
    prefix = "forward_" if key == "layer" else "backward_"
    name = arguments.get("name", "")
    if name.startswith(prefix):
        original = name[len(prefix) :]
        if _auto_name(original, type(layer)):
            del arguments["name"]
        else:
            arguments["name"] = original
    return arguments


def _object_arguments(module: str, class_name: str, config: dict) -> dict:
    cls = registry.object_classes(module).get(class_name)
    try:
        default = cls().get_config() if cls is not None else {}
    except Exception:  # required arguments: keep them all
        default = {}
    return {k: spec_value(k, v, class_name) for k, v in config.items() if not (k in default and _same(v, default[k]))}


def _save_weights(model, target: Path) -> Path:
    from seqcli.files import atomic_path

    if not target.name.endswith(".weights.h5"):
        raise ImportModelError(
            f"--weights-out must end in .weights.h5; received {str(target)!r}",
            hint="Keras writes weights to .weights.h5 files",
        )
    with atomic_path(target, suffix=".weights.h5") as temporary:
        model.save_weights(temporary)
    return target


def dump_spec_text(spec: dict) -> str:
    """YAML in the style of the shipped specs: one line per layer, ``- Dense: {units: 10}``."""
    from seqcli.specfile.dump import dump_spec

    return dump_spec(spec, inline_layers=True)
