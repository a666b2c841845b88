"""The spec's sections are declared once (seqcli.specfile.sections.SpecSections): the top-level keys, the typed
Spec, the schema and the fingerprints that decide what a resume may change all follow from that declaration."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from seqcli.specfile import spec_from_text
from seqcli.specfile.fingerprint import comparable, fingerprint, may_change_in_words
from seqcli.specfile.schema import spec_schema
from seqcli.specfile.sections import (
    ALL_KEYS,
    SPEC_SECTIONS,
    FreezeSection,
    SpecSections,
    declared_sections,
    section,
)
from seqcli.specfile.validate import TOP_LEVEL_KEYS
from tests.conftest import SPECS

LAYERS = [{"Dense": {"units": 3}}]


def test_the_declared_sections_are_the_top_level_keys_and_the_schema_properties():
    assert TOP_LEVEL_KEYS == ("name", "layers", *SPEC_SECTIONS)
    assert list(spec_schema()["properties"]) == list(TOP_LEVEL_KEYS)


def test_a_spec_without_a_section_gets_its_defaults_or_none_as_declared():
    spec = spec_from_text("layers:\n  - Dense: {units: 3}\n")
    for name, declared in SPEC_SECTIONS.items():
        value = getattr(spec, name)
        assert isinstance(value, declared.model) if declared.defaulted else value is None, name


def test_a_section_in_the_spec_is_its_declared_model():
    text = "layers:\n  - Dense: {units: 3}\n" + "".join(f"{name}: {{}}\n" for name in SPEC_SECTIONS if name != "tune")
    spec = spec_from_text(text)
    for name, declared in SPEC_SECTIONS.items():
        if name != "tune":  # tune needs its parameters
            assert isinstance(getattr(spec, name), declared.model), name


def test_the_committed_schema_is_the_one_seq_schema_writes():
    assert json.loads((SPECS / "seq.schema.json").read_text()) == spec_schema(), (
        "run: python -m seqcli schema -o specs/seq.schema.json --overwrite"
    )


@pytest.mark.parametrize("kind", ["run", "study"])
def test_every_key_of_every_section_enters_the_fingerprint_unless_its_section_declares_it(kind):
    """Built from the declarations: a key a section does not declare changeable changes the fingerprint."""
    for name, declared in SPEC_SECTIONS.items():
        changes = declared.may_change(kind)
        for key in declared.keys:
            before = {"layers": LAYERS, name: {key: 1}}
            after = {"layers": LAYERS, name: {key: 2}}
            same = fingerprint(comparable(before, kind)) == fingerprint(comparable(after, kind))
            assert same == (changes == ALL_KEYS or key in changes), f"{kind}: {name}.{key}"


def test_what_a_resume_may_change_is_what_the_sections_declare():
    assert may_change_in_words("run") == "train.epochs, train.checkpoint_every and distribute"
    assert may_change_in_words("study") == "tune.trials"


def test_a_top_level_key_no_section_declares_cannot_enter_or_leave_the_fingerprint():
    with pytest.raises(KeyError, match="'schedule' is not a declared spec section"):
        comparable({"layers": LAYERS, "schedule": {"every": 2}}, "run")


def test_a_section_must_declare_what_a_resume_may_change():
    @dataclass(kw_only=True)
    class Undeclared(SpecSections):
        extra: FreezeSection | None = None

    with pytest.raises(TypeError, match="section 'extra' is not declared with section()"):
        declared_sections(Undeclared)
    with pytest.raises(TypeError, match="study_may_change"):
        section(run_may_change=())


def test_a_section_may_declare_only_keys_it_has():
    @dataclass(kw_only=True)
    class Misspelt(SpecSections):
        extra: FreezeSection | None = section(run_may_change=("unfrozen",), study_may_change=())

    with pytest.raises(TypeError, match=r"section 'extra' declares unknown keys a run may change: \['unfrozen'\]"):
        declared_sections(Misspelt)


def test_the_fingerprint_ignores_key_order():
    a = spec_from_text("layers:\n  - Dense: {units: 3, use_bias: false}\n")
    b = spec_from_text("layers:\n  - Dense: {use_bias: false, units: 3}\n")
    assert fingerprint(a.resolved()) == fingerprint(b.resolved())
    assert fingerprint(a.resolved()) != fingerprint(spec_from_text("layers:\n  - Dense: {units: 4}\n").resolved())
