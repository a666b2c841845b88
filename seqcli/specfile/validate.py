"""Structure validation of a parsed spec: plain data in, typed Spec and Problems out.

No TensorFlow here: layer class names and arguments are checked against Keras when the
model is built (build.py); this module checks everything whose shape we define ourselves.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from seqcli.budget import MAX_LAYERS, MAX_NESTING
from seqcli.display import NAME_LIMIT, unshowable
from seqcli.errors import Problem, did_you_mean
from seqcli.registry import NESTED_LAYER_ARGUMENTS
from seqcli.specfile.sections import SECTIONS, Section
from seqcli.specfile.yamlload import YAML_11_BOOLEANS, Document, PathKey

TOP_LEVEL_KEYS = ("name", "layers", *SECTIONS)
LAYER_EXTRA_KEYS = ("expect",)


def as_identifier(text: str, fallback: str = "model") -> str:
    """``text`` made a valid model name (what ``name:`` takes): runs of other characters become ``_``, and a
    name that cannot start an identifier (a digit, say) gets ``fallback`` in front."""
    kept = "".join(c if ("a" + c).isidentifier() else " " for c in text)
    name = "_".join(kept.split())
    if not name:
        return fallback
    return name if name.isidentifier() else f"{fallback}_{name}"


def validate_top_level(document: Document) -> list[Problem]:
    data = document.data
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        return [
            document.problem(
                (),
                f"a spec must be a mapping at the top level, got {kind}",
                "start with 'layers:' followed by a list of layers",
            )
        ]
    problems = []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                document.problem(
                    (key,),
                    f"unknown top-level key {key!r}",
                    did_you_mean(key, TOP_LEVEL_KEYS) or f"top-level keys are: {', '.join(TOP_LEVEL_KEYS)}",
                    key=True,
                )
            )
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        problems.append(
            document.problem(
                ("name",),
                f"model name must be an identifier, got {name!r}",
                "use letters, digits and underscores, e.g. my_sequential_model",
            )
        )
    problems += _validate_layers(document)
    problems += _check_names(document, ("compile",), data.get("compile"))
    return problems


def _validate_layers(document: Document) -> list[Problem]:
    layers = document.data.get("layers")
    if "layers" not in document.data:
        return [document.problem((), "missing 'layers'", "add 'layers:' with a list such as '- Dense: {units: 10}'")]
    if not isinstance(layers, list) or not layers:
        return [
            document.problem(
                ("layers",), "'layers' must be a non-empty list", "each item looks like '- Dense: {units: 10}'"
            )
        ]
    too_many = _check_layer_count(document, layers)
    if too_many:
        return too_many
    problems = []
    for index, entry in enumerate(layers):
        problems += _validate_layer_entry(document, ("layers", index), entry)
    return problems


def _check_layer_count(document: Document, layers: list) -> list[Problem]:
    """A problem at the first layer entry past :data:`~seqcli.budget.MAX_LAYERS` (nested layers counted),
    or nested past :data:`~seqcli.budget.MAX_NESTING`; checked before anything is built."""
    over = first_layer_over_limits(layers)
    if over is None:
        return []
    path, nested = over
    if nested:
        message = f"layers nest in layers more than {MAX_NESTING} levels deep here, seq's limit"
        hint = "wrap a layer in a wrapper (TimeDistributed, Bidirectional) a few times at most"
    else:
        message = f"the spec holds more than {MAX_LAYERS:,} layers (nested layers included), seq's limit for one model"
        hint = "split the model, or repeat a block with fewer, larger layers"
    return [document.problem(path, message, hint)]


def first_layer_over_limits(layers: list) -> tuple[PathKey, bool] | None:
    """The path of the first layer entry past :data:`~seqcli.budget.MAX_LAYERS` or nested past
    :data:`~seqcli.budget.MAX_NESTING` (with True for the nesting), or None: such a spec is never built."""
    count = 0
    for index, entry in enumerate(layers):
        for path, level in _layer_entries(("layers", index), entry):
            count += 1
            if level > MAX_NESTING or count > MAX_LAYERS:
                return path, level > MAX_NESTING
    return None


def _layer_entries(path: PathKey, entry: Any) -> typing.Iterator[tuple[PathKey, int]]:
    """``(path, level)`` of a layer entry (level 1) and of the layers nested in its arguments, without recursion."""
    stack = [(path, entry, 1)]
    while stack:
        path, entry, level = stack.pop()
        yield path, level
        if not isinstance(entry, dict):
            continue
        for name, arguments in entry.items():
            if name in LAYER_EXTRA_KEYS or not isinstance(arguments, dict):
                continue
            for key in sorted(NESTED_LAYER_ARGUMENTS & arguments.keys()):
                stack.append((path + (name, key), arguments[key], level + 1))


def _validate_layer_entry(document: Document, path: PathKey, entry: Any) -> list[Problem]:
    if not isinstance(entry, dict):
        return [
            document.problem(
                path,
                f"a layer entry must be a mapping like 'Dense: {{units: 10}}', got {entry!r}",
                "write the class name followed by a colon: '- Flatten: {}'",
            )
        ]
    classes = [key for key in entry if key not in LAYER_EXTRA_KEYS]
    problems = []
    if len(classes) != 1:
        found = ", ".join(classes) if classes else "none"
        hint = (
            "is the indentation off? arguments go inside the class mapping, e.g. '- Dense: {units: 10}'"
            if len(classes) > 1
            else "add a layer class such as 'Dense: {units: 10}'"
        )
        problems.append(document.problem(path, f"a layer entry needs exactly one layer class, found {found}", hint))
        return problems
    for name in classes:
        args = entry[name]
        if args is not None and not isinstance(args, dict):
            problems.append(
                document.problem(
                    path + (name,),
                    f"arguments of {name} must be a mapping, got {args!r}",
                    f"write '{name}: {{...}}' with keyword arguments, or '{name}: {{}}'",
                )
            )
        elif args:
            problems += _check_yaml11_booleans(document, path + (name,), args)
            problems += _check_names(document, path + (name,), args, layer=True)
    if "expect" in entry:
        problems += _validate_shape(document, path + ("expect",), entry["expect"])
    return problems


def _check_names(document: Document, path: PathKey, value: Any, *, layer: bool = False) -> list[Problem]:
    """Every ``name:`` in a layer's arguments (a wrapped layer's, a metric's too) is one seq can show as
    typed, and a layer's is one TensorFlow can run. Keras takes an escape sequence or a lone surrogate in a
    name, but a table, a log or a CI report could only show it replaced, and a name that long breaks every
    table it is in; TensorFlow refuses a layer whose name it cannot make a scope of only once training
    starts."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check_names(document, path + (i,), item)]
    if not isinstance(value, dict):
        return []
    problems = []
    for key, item in value.items():
        if key == "name" and isinstance(item, str):
            problems += _name_problems(document, path + (key,), item, layer=layer)
        else:
            problems += _check_names(document, path + (key,), item)
    return problems


# The names TensorFlow takes for the scope of a layer's operations (tf.name_scope below the model's).
LAYER_NAME_PATTERN = r"[A-Za-z0-9_.\\/>-]*"
_SCOPE_NAME = re.compile(LAYER_NAME_PATTERN)


def _name_problems(document: Document, path: PathKey, name: str, *, layer: bool) -> list[Problem]:
    hint = "use letters, digits, '_', '-' and '.'; names are shown in tables, logs and CI reports"
    what = unshowable(name)
    if what is not None:
        return [document.problem(path, f"the name holds {what}, which seq cannot show as typed", hint)]
    if len(name) > NAME_LIMIT:
        return [document.problem(path, f"the name has {len(name):,} characters, over {NAME_LIMIT}", hint)]
    if layer and not _SCOPE_NAME.fullmatch(name):
        return [
            document.problem(
                path,
                f"TensorFlow cannot train a layer named {name!r}: its names take ASCII letters, digits and _ . - >",
                hint,
            )
        ]
    return []


def _check_yaml11_booleans(document: Document, path: PathKey, value: Any) -> list[Problem]:
    """'yes'/'no' are strings in YAML 1.2; where a user wrote them as an argument they meant a boolean."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _check_yaml11_booleans(document, path + (key,), item)]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _check_yaml11_booleans(document, path + (i,), item)]
    if isinstance(value, str) and value in YAML_11_BOOLEANS and path not in document.quoted:
        return [
            document.problem(
                path,
                f"ambiguous value {value!r}",
                f"write true or false for a boolean, or quote it ('{value}') if you mean the string",
            )
        ]
    return []


def _validate_shape(document: Document, path: PathKey, shape: Any) -> list[Problem]:
    if shape is None:
        return []
    if not isinstance(shape, list) or not all(_is_dimension(d) for d in shape):
        return [
            document.problem(
                path,
                f"expected a shape such as [40, 40, 32] (null for any size), got {shape!r}",
                "give the output shape without the batch dimension",
            )
        ]
    return []


def _is_dimension(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def validate_sections(document: Document) -> tuple[dict[str, Section], list[Problem]]:
    sections: dict[str, Section] = {}
    problems: list[Problem] = []
    for key, model in SECTIONS.items():
        value = document.data.get(key)
        if value is None:
            continue
        try:
            sections[key] = model.model_validate(value)
        except ValidationError as error:
            problems += _pydantic_problems(document, (key,), model, value, error)
    if "expect" in sections:
        problems += _validate_shape(document, ("expect", "output"), document.data["expect"].get("output"))
    return sections, problems


def _pydantic_problems(
    document: Document, root: PathKey, model: type[BaseModel], value: Any, error: ValidationError
) -> list[Problem]:
    grouped: dict[PathKey, list[dict]] = {}
    for item in error.errors():
        path = _real_path(value, item["loc"])
        grouped.setdefault(path, []).append(item)
    problems = []
    for path, items in grouped.items():
        extra = [i for i in items if i["type"] == "extra_forbidden"]
        if extra:
            name = path[-1]
            known = _known_keys(model, path[:-1])
            hint = did_you_mean(str(name), known) or (f"known keys: {', '.join(sorted(known))}" if known else None)
            problems.append(document.problem(root + path, f"unknown key {name!r}", hint, key=True))
            continue
        received = _lookup(value, path)
        items = _relevant(items)
        messages = list(dict.fromkeys(_message(i) for i in items))
        text = messages[0] if len(messages) == 1 else "expected " + " or ".join(_expected(m) for m in messages)
        problems.append(document.problem(root + path, f"{text}; received {received!r}", _hint_for(received, items)))
    return problems


_TYPE_ERRORS = {
    "string_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "int_type",
    "float_type",
    "bool_type",
    "list_type",
    "literal_error",
    "int_from_float",
    "none_required",
    "is_instance_of",
}


def _relevant(items: list[dict]) -> list[dict]:
    """Of a union's failures, keep those about the value's content over 'not a string/dict/...' noise."""
    specific = [i for i in items if i["type"] not in _TYPE_ERRORS]
    return specific or items


def _message(item: dict) -> str:
    message = item["msg"]
    return message[0].lower() + message[1:]


def _expected(message: str) -> str:
    for prefix in ("input should be ", "value should be "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _hint_for(received: Any, items: list[dict]) -> str | None:
    choices = [c for i in items if i["type"] == "literal_error" for c in re.findall(r"'([^']*)'", i["ctx"]["expected"])]
    if choices and isinstance(received, str):
        return did_you_mean(received, choices)
    if isinstance(received, str) and received in YAML_11_BOOLEANS:
        return f"YAML 1.2 reads {received} as the string {received!r}, not a boolean"
    if isinstance(received, str):
        try:
            float(received)
        except ValueError:
            return None
        return "remove the quotes to make it a number"
    return None


def _real_path(value: Any, loc: tuple) -> PathKey:
    """Drop pydantic's union-member tags from an error location, keeping keys that exist in the data."""
    path = []
    current = value
    for part in loc:
        if isinstance(current, dict) and part in current:
            current = current[part]
            path.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            path.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and not _is_union_tag(part):
            path.append(part)  # a missing or extra key
            break
    return tuple(path)


def _is_union_tag(part: str) -> bool:
    return (
        part[:1].islower()
        and ("[" in part or "-" in part or part in {"str", "int", "float", "bool", "list", "dict", "none", "literal"})
        or part[:1].isupper()
    )


def _lookup(value: Any, path: PathKey) -> Any:
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _known_keys(model: type[BaseModel], path: PathKey) -> set[str]:
    """Field names of the section model found at ``path`` (unions searched for nested models)."""
    models = [model]
    for part in path:
        if isinstance(part, int):
            continue
        nested = []
        for current in models:
            field = current.model_fields.get(part)
            if field is not None:
                nested += _models_in(field.annotation)
        models = nested
    return {name for current in models for name in current.model_fields}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
