"""Regenerate seqcli/specfile/keras_layers.json: layer classes, their keyword arguments with types, choices and one-line
descriptions, and the names of Keras's objects (activations, initializers, optimizers, losses, metrics), read from
Keras.

`seq schema` publishes these without importing TensorFlow; tests/test_cli_meta.py fails when the table no longer
matches the installed Keras, and this script brings it back in line:

    python scripts/gen_layer_table.py

An argument's schema comes from what Keras itself says of it: its default's type, its docstring's first clause
("int or tuple/list of 2 integer", "string, either `"valid"` or `"same"`") and the families of arguments every
layer shares (activations, initializers, regularizers, constraints, nested layers). Where that says nothing
certain, the argument takes any value: the schema may let through what `seq check` refuses, never the reverse.
"""

import inspect
import json
import re
from pathlib import Path

from keras.src import activations, constraints, initializers, losses, metrics, optimizers, regularizers

from seqcli import applications, compile, registry
from seqcli.keras_env import import_keras

TABLE = Path(__file__).resolve().parents[1] / "seqcli" / "spec" / "keras_layers.json"
DESCRIPTION_LIMIT = 160
# Keras's words for "a number, or one number per spatial dimension".
INT_OR_TUPLE = re.compile(r"^(?:an? )?(?:int(?:eger)?|positive int(?:eger)?)s?(?:,)? or (?:a )?(?:tuple|list)", re.I)
QUOTED_CHOICE = re.compile(r'`"([a-z_0-9]+)"`')
OBJECT_MODULES = {"initializers": initializers, "regularizers": regularizers, "constraints": constraints}


def docstring_arguments(cls: type) -> dict[str, str]:
    """Each argument's text in the ``Args:`` section of the class's docstring (or its bases'), on one line."""
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _args_section(inspect.getdoc(klass) or "").items():
            found.setdefault(name, text)
    return found


def _args_section(doc: str) -> dict[str, str]:
    parts = re.split(r"^(?:Args|Arguments):\s*$", doc, maxsplit=1, flags=re.M)
    texts: dict[str, str] = {}
    current = None
    for line in parts[1].splitlines() if len(parts) == 2 else []:
        if line and not line.startswith(" "):
            break  # the next section (Input shape:, Example:, ...)
        match = re.match(r"^    (\w+): ?(.*)$", line)
        if match:
            current = match.group(1)
            texts[current] = match.group(2).strip()
        elif current and line.strip():
            texts[current] += " " + line.strip()
    return texts


def first_sentence(text: str) -> str:
    protected = text.replace("e.g.", "e\x00g\x00").replace("i.e.", "i\x00e\x00")
    sentence = re.split(r"\.\s", protected + " ", maxsplit=1)[0].strip().rstrip(".").replace("\x00", ".")
    sentence = sentence.replace("`", "")
    return sentence if len(sentence) <= DESCRIPTION_LIMIT else sentence[: DESCRIPTION_LIMIT - 3].rstrip() + "..."


def argument_schema(name: str, default, text: str) -> dict:
    """The JSON Schema of one layer argument (with ``$ref``s resolved by seqcli/specfile/schema.py)."""
    schema = _family_schema(name, text) or _typed_schema(default, text.split(". ")[0].lower())
    if schema and default is None and "anyOf" in schema:
        schema["anyOf"].insert(0, {"type": "null"})
    if text:
        schema["description"] = first_sentence(text)
    return schema


def _family_schema(name: str, text: str) -> dict | None:
    """Arguments every layer of a family shares: nested layers, Keras objects, activations, data formats."""
    module = registry.object_argument_module(name)
    if name in registry.NESTED_LAYER_ARGUMENTS:
        return {"$ref": "#/$defs/layer"}
    if module is not None:
        return {"anyOf": [{"type": "null"}, {"$ref": f"#/$defs/{module}"}]}
    if name.endswith("activation"):
        return {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/activations"}]}
    if name == "data_format":
        return {"enum": [None, "channels_last", "channels_first"]}
    return None


def _typed_schema(default, clause: str) -> dict:
    """What the default's type and the docstring's first clause say for certain; ``{}`` (any) otherwise."""
    choices = QUOTED_CHOICE.findall(clause)
    alternatives = " or " in clause or "tuple" in clause or "list" in clause or "none" in clause
    if isinstance(default, str) and default in choices:  # Keras lower-cases these: either case is accepted
        return {"enum": sorted({*choices, *(c.upper() for c in choices)})}
    if INT_OR_TUPLE.match(clause):
        integer = {"type": "integer"}
        return {"anyOf": [integer, {"type": "array", "items": integer}]}
    if isinstance(default, bool) or (default is inspect.Parameter.empty and re.match(r"^bool(ean)?\b", clause)):
        return {} if alternatives else {"type": "boolean"}
    if alternatives:
        return {}
    if re.match(r"^(positive )?int(eger)?\b", clause) and not isinstance(default, float):
        return {"type": "integer", **({"minimum": 1} if clause.startswith("positive") else {})}
    if isinstance(default, float) or re.match(r"^float\b", clause):
        bounded = {"minimum": 0, "maximum": 1} if "between 0 and 1" in clause else {}
        return {"type": "number", **bounded}
    if isinstance(default, int) and not isinstance(default, bool):
        return {"type": "integer"}
    return {}


def layer_entry(cls: type) -> dict:
    accepted, required = registry.accepted_arguments(cls)
    defaults = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for parameter in inspect.signature(klass.__init__).parameters.values():
                defaults.setdefault(parameter.name, parameter.default)
    texts = docstring_arguments(cls)
    summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ").strip()
    arguments = {
        name: argument_schema(name, defaults.get(name, inspect.Parameter.empty), texts.get(name, ""))
        for name in sorted(accepted)
    }
    for name in registry.DEPRECATED_ARGUMENTS.get(cls.__name__, ()):  # taken with Keras's warning, shown as a note
        arguments[name] = {"deprecated": True, "description": "deprecated: Keras still takes it, with a warning"}
    return {
        "description": first_sentence(summary),
        "required": sorted(required),
        "arguments": dict(sorted(arguments.items())),
    }


def object_names() -> dict[str, list[str]]:
    """The names a spec may give for each family of Keras objects (what ``keras.<family>.get`` takes)."""
    families = {
        "activations": sorted(activations.ALL_OBJECTS_DICT),
        **{family: sorted(module.ALL_OBJECTS_DICT) for family, module in OBJECT_MODULES.items()},
        "optimizers": sorted(
            name
            for name in {*optimizers.ALL_OBJECTS_DICT, *compile.optimizer_classes()}
            if name.lower() not in {*map(str.lower, compile.WRAPPER_OPTIMIZERS), "optimizermap"}
        ),
        "losses": sorted({*losses.ALL_OBJECTS_DICT} - {"Loss"}),
        "metrics": sorted(
            {*metrics.ALL_OBJECTS_DICT, *compile.ADAPTIVE_METRICS} - {"Metric", "MeanMetricWrapper", "Mean", "Sum"}
        ),
    }
    return {family: [name for name in names if not name.startswith("_")] for family, names in families.items()}


def layer_table() -> dict:
    keras = import_keras()
    layers = {name: layer_entry(cls) for name, cls in registry.layer_classes().items()}
    bases = {name: sorted(applications.application_arguments(name)) for name in applications.APPLICATIONS}
    bases[applications.SAVED_MODEL] = list(applications.SAVED_MODEL_ARGUMENTS)
    return {
        "keras_version": keras.__version__,
        "Input": list(registry.INPUT_ARGUMENTS),
        "layers": layers,
        "bases": bases,
        "objects": object_names(),
    }


if __name__ == "__main__":
    TABLE.write_text(json.dumps(layer_table(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")
