"""The spec format as a JSON Schema (draft 2020-12), for editors. No TensorFlow: layer classes and
their arguments come from keras_layers.json, generated from Keras by scripts/gen_layer_table.py."""

from __future__ import annotations

import json
from importlib import resources

from seqcli.spec.sections import SECTIONS

SHAPE = {
    "type": "array",
    "items": {"type": ["integer", "null"], "minimum": 0},
    "description": "a shape without the batch dimension; null for any size",
}


def layer_table() -> dict:
    return json.loads(resources.files("seqcli.spec").joinpath("keras_layers.json").read_text())


def spec_schema() -> dict:
    table = layer_table()
    layer_items = [_layer_item("Input", table["Input"])]
    layer_items += [_layer_item(name, args) for name, args in sorted(table["layers"].items())]
    layer_items += [_layer_item(name, args) for name, args in sorted(table["bases"].items())]
    properties = {
        "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "description": "the Keras model name"},
        "layers": {"type": "array", "minItems": 1, "items": {"oneOf": layer_items}},
    }
    defs: dict = {}
    for key, model in SECTIONS.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        properties[key] = schema
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


def _layer_item(name: str, arguments: list[str]) -> dict:
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {
            name: {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {arg: {} for arg in arguments},
            },
            "expect": {"oneOf": [SHAPE, {"type": "null"}]},
        },
    }
