"""The one fingerprint of a spec's plain data: what decides whether a run may resume (``seq train --resume``), a
study may continue (``seq tune --resume``) and a process may reuse what it adapted. Which keys may change on
resume each section declares (:class:`~seqcli.specfile.sections.SpecSections`); every other key counts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

from seqcli.specfile.sections import ALL_KEYS, SPEC_SECTIONS

# Top-level keys that are not sections: both decide everything about the model.
NOT_SECTIONS = ("name", "layers")


def fingerprint(data: Any) -> str:
    """16 hex digits of the sha256 of ``data`` as canonical JSON: equal for equal data whatever its key order
    (values JSON cannot hold count by their text)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def comparable(data: dict, kind: Literal["run", "study"]) -> dict:
    """A copy of a spec's plain data less the keys its sections declare a resumed ``kind`` may change.
    A top-level key that is neither a declared section nor ``name`` or ``layers`` is refused: what a resume may
    change is decided where the section is declared, never by default."""
    kept = copy.deepcopy(data)
    for key in data:
        if key in NOT_SECTIONS:
            continue
        if key not in SPEC_SECTIONS:
            raise KeyError(f"{key!r} is not a declared spec section (seqcli.specfile.sections.SpecSections)")
        changes = SPEC_SECTIONS[key].may_change(kind)
        if changes == ALL_KEYS:
            del kept[key]
        elif isinstance(kept[key], dict):
            for name in changes:
                kept[key].pop(name, None)
    return kept


def may_change_in_words(kind: Literal["run", "study"]) -> str:
    """What a resumed ``kind`` may change, for hints: ``train.epochs, train.checkpoint_every and distribute``."""
    names = []
    for name, declared in SPEC_SECTIONS.items():
        changes = declared.may_change(kind)
        names += [name] if changes == ALL_KEYS else [f"{name}.{key}" for key in changes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
