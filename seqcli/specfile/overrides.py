"""``--set key.path=value``: change any spec value from the command line, validated like the file."""

from __future__ import annotations

import re

from seqcli.errors import Problem, SpecError
from seqcli.specfile.yamlload import Document, PathKey, parse_spec_text

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_override_path(text: str) -> PathKey:
    """'layers[2].Dense.units' -> ('layers', 2, 'Dense', 'units')."""
    parts: list = []
    position = 0
    text = text.strip()
    while position < len(text):
        if text[position] == "." and parts:
            position += 1
        match = _PART.match(text, position)
        if not match:
            raise ValueError(f"cannot read {text!r} at character {position + 1}")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    if not parts:
        raise ValueError("empty key path")
    return tuple(parts)


def apply_overrides(document: Document, overrides: list[str]) -> list[Problem]:
    """Apply each ``key.path=value`` to the document's data; the value is read as YAML (so 1e-3 is a float)."""
    problems = []
    for number, text in enumerate(overrides, start=1):
        where = f"--set #{number}"
        key, sep, raw_value = text.partition("=")
        if not sep:
            problems.append(
                Problem(
                    f"expected key.path=value, got {text!r}", "", None, None, "for example --set train.epochs=5", where
                )
            )
            continue
        try:
            path = parse_override_path(key)
            value = parse_spec_text(f"v: {raw_value}" if raw_value.strip() else "v: null", where).data["v"]
        except (ValueError, SpecError) as error:
            message = error.problems[0].message if isinstance(error, SpecError) else str(error)
            problems.append(Problem(f"cannot use {text!r}: {message}", "", None, None, None, where))
            continue
        problem = _assign(document, path, value, where)
        if problem:
            problems.append(problem)
    return problems


def _assign(document: Document, path: PathKey, value, where: str) -> Problem | None:
    target: dict | list | None = document.data if isinstance(document.data, dict) else None
    if target is None:
        return Problem("the spec is not a mapping", "", None, None, None, where)
    for depth, part in enumerate(path):
        mismatch = _kind_mismatch(target, part, path[:depth])
        if mismatch:
            return Problem(mismatch, "", None, None, _example(target, path[:depth]), where)
        if depth == len(path) - 1:
            break
        child = target[part] if _has(target, part) else None
        if child is None:
            if isinstance(part, int):
                return Problem(f"{_show(path[: depth + 1])} does not exist", "", None, None, None, where)
            child = {}
            target[part] = child
        if not isinstance(child, (dict, list)):
            return Problem(f"{_show(path[: depth + 1])} is {child!r}, not a mapping", "", None, None, None, where)
        target = child
    last = path[-1]
    if isinstance(target, list) and not (isinstance(last, int) and last < len(target)):
        return Problem(f"{_show(path)} does not exist", "", None, None, None, where)
    target[last] = value
    document.overridden[path] = where
    return None


def _kind_mismatch(target, part, prefix: PathKey) -> str | None:
    """Why ``part`` cannot index ``target`` (a list takes [N], a mapping takes names), or None."""
    where = _show(prefix) if prefix else "the spec"
    if isinstance(target, list) and not isinstance(part, int):
        return f"{where} is a list: {part!r} cannot index it"
    if isinstance(target, dict) and isinstance(part, int):
        return f"{where} is a mapping: [{part}] cannot index it"
    return None


def _example(target, prefix: PathKey) -> str:
    if isinstance(target, list):
        return f"index a list by position, e.g. --set {_show(prefix)}[0]..."
    return "name a key, e.g. --set train.epochs=5 or --set layers[1].Dense.units=64"


def _has(target, part) -> bool:
    if isinstance(target, dict):
        return part in target
    return isinstance(part, int) and part < len(target)


def _show(path: PathKey) -> str:
    from seqcli.specfile.yamlload import format_path

    return format_path(path)
