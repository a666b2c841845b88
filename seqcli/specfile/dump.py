"""Writing a spec back out as YAML, in the style specs are written in by hand, so that seq reads it back with the
same meaning: a string that seq's YAML 1.2 reader would take for a number, a boolean or null is quoted."""

from __future__ import annotations

import yaml

from seqcli.specfile.yamlload import reads_as_string


class _Dumper(yaml.SafeDumper):
    """Lists of plain values inline (``shape: [8, 8, 1]``); an :class:`_Inline` mapping on one line."""


class _Inline(dict):
    pass


def _represent_list(dumper, value):
    flow = all(isinstance(item, (int, float, str, bool)) or item is None for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _represent_inline(dumper, value):
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=True)


def _represent_str(dumper, value):
    node = dumper.represent_str(value)
    if any(not c.isprintable() and c != " " for c in value):  # line breaks YAML folds (NEL, U+2028), controls
        node.style = '"'  # the one style that writes them as escapes
    elif node.style is None and not reads_as_string(value):
        node.style = "'"
    return node


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(_Inline, _represent_inline)


def dump_scalar(value) -> str:
    """One value as YAML that a spec reads back as the same value (``'true'`` for the string true)."""
    return yaml.dump(value, Dumper=_Dumper, allow_unicode=True, width=10_000).removesuffix("\n...\n").rstrip("\n")


def dump_spec(data: dict, *, inline_layers: bool = False) -> str:
    """YAML in the style specs are written in: lists of plain values inline; with ``inline_layers`` one
    line per layer, ``- Dense: {units: 10}``, as the shipped specs are written."""
    if inline_layers and isinstance(data.get("layers"), list):
        data = {
            **data,
            "layers": [{name: _Inline(args or {}) for name, args in entry.items()} for entry in data["layers"]],
        }
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
