"""Writing a spec back out as YAML, in the style specs are written in by hand."""

from __future__ import annotations

import yaml


def dump_spec(data: dict) -> str:
    """YAML in the style specs are written in: lists of plain values inline (``shape: [8, 8, 1]``)."""

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper, value):
        flow = all(isinstance(item, (int, float, str, bool)) or item is None for item in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True)
