"""The spec format as a JSON Schema (draft 2020-12), for editors and CI. No TensorFlow: layer classes, their
arguments (types, choices, required ones, one-line descriptions from Keras's docstrings) and the names of Keras's
objects come from keras_layers.json, generated from Keras by scripts/gen_layer_table.py."""

from __future__ import annotations

import json
from importlib import resources

from seqcli.budget import MAX_LAYERS
from seqcli.display import NAME_LIMIT
from seqcli.specfile.sections import SPEC_SECTIONS
from seqcli.specfile.validate import LAYER_NAME_PATTERN

SHAPE = {
    "type": "array",
    "items": {"type": ["integer", "null"], "minimum": 0},
    "description": "a shape without the batch dimension; null for any size",
}
TOP_LEVEL = {
    "name": "the Keras model name (letters, digits and underscores)",
    "layers": "the model's layers in order: each a mapping with one Keras layer class and its arguments",
}
# Spec keys whose value is a Keras object by name, or a one-key mapping {ClassName: {arguments}}.
COMPILE_OBJECTS = {"optimizer": "optimizers", "loss": "losses"}


def layer_table() -> dict:
    return json.loads(resources.files("seqcli.specfile").joinpath("keras_layers.json").read_text())


def spec_schema() -> dict:
    table = layer_table()
    layer_items = [_input_item(table["Input"])]
    layer_items += [_layer_item(name, entry) for name, entry in sorted(table["layers"].items())]
    layer_items += [_base_item(name, args) for name, args in sorted(table["bases"].items())]
    defs: dict = {"layer": {"oneOf": layer_items}, **_object_defs(table["objects"])}
    properties: dict = {
        "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "description": TOP_LEVEL["name"]},
        "layers": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_LAYERS,
            "items": {"$ref": "#/$defs/layer"},
            "description": TOP_LEVEL["layers"],
        },
    }
    for key, declared in SPEC_SECTIONS.items():
        schema = declared.model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        if declared.declaration.description:
            schema.setdefault("description", declared.declaration.description)
        properties[key] = schema
    _name_compile_objects(properties["compile"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "seq spec",
        "description": f"A Keras Sequential model and how to train it (layers from Keras {table['keras_version']}).",
        "type": "object",
        "required": ["layers"],
        "additionalProperties": False,
        "properties": properties,
        "$defs": defs,
    }


def _layer_item(name: str, entry: dict) -> dict:
    properties = dict(entry["arguments"])
    if "name" in properties:  # what seq check takes: a name TensorFlow can train and a table can show
        properties["name"] = {
            **properties["name"],
            "type": "string",
            "pattern": f"^{LAYER_NAME_PATTERN}$",
            "maxLength": NAME_LIMIT,
        }
    arguments = {
        "type": ["object"] if entry["required"] else ["object", "null"],
        "additionalProperties": False,
        "properties": properties,
        "description": entry["description"],
    }
    if entry["required"]:
        arguments["required"] = entry["required"]
    return _entry(name, arguments)


def _input_item(arguments: list[str]) -> dict:
    properties = {arg: {} for arg in arguments}
    properties["shape"] = SHAPE
    return _entry("Input", {"type": "object", "additionalProperties": False, "properties": properties})


def _base_item(name: str, arguments: list[str]) -> dict:
    return _entry(
        name,
        {"type": ["object", "null"], "additionalProperties": False, "properties": {arg: {} for arg in arguments}},
    )


def _entry(name: str, arguments: dict) -> dict:
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {name: arguments, "expect": {"oneOf": [SHAPE, {"type": "null"}]}},
    }


def _object_defs(objects: dict[str, list[str]]) -> dict:
    """For each family of Keras objects: a name, or a one-key mapping ``{ClassName: {arguments}}``."""
    defs = {}
    for family, names in objects.items():
        classes = [name for name in names if name[:1].isupper()]
        one_key = {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": classes},
            "additionalProperties": {"type": ["object", "null"]},
        }
        defs[family] = {"anyOf": [{"enum": names}, one_key]} if classes else {"enum": names}
    return defs


def _name_compile_objects(compile_schema: dict) -> None:
    """compile.optimizer and compile.loss name a Keras object; compile.metrics is a list of them."""
    properties = compile_schema.setdefault("properties", {})
    for key, family in COMPILE_OBJECTS.items():
        description = properties.get(key, {}).get("description")
        properties[key] = {"anyOf": [{"type": "null"}, {"$ref": f"#/$defs/{family}"}]}
        if description:
            properties[key]["description"] = description
    properties["metrics"] = {"type": "array", "items": {"$ref": "#/$defs/metrics"}}
