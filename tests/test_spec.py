"""Reading specs: YAML 1.2 numbers, positions, overrides, and the typed sections. No TensorFlow."""

import math

import pytest

from seqcli.errors import SpecError
from seqcli.specfile import spec_from_text
from seqcli.specfile.overrides import parse_override_path
from seqcli.specfile.yamlload import parse_spec_text


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-3", 0.001),
        ("1E3", 1000.0),
        ("-2.5e+2", -250.0),
        (".5", 0.5),
        ("0x1f", 31),
        ("0o17", 15),
        ("12", 12),
        (".inf", math.inf),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("'1e-3'", "1e-3"),
        ("1_000", "1_000"),
        ("2026-11-28", "2026-11-28"),
    ],
)
def test_yaml_1_2_scalars(text, value):
    assert parse_spec_text(f"v: {text}\n").data["v"] == value


def test_positions_of_keys_and_values():
    document = parse_spec_text("layers:\n  - Dense: {units: 3}\n", "f.yaml")
    assert document.position(("layers", 0, "Dense", "units")) == (2, 20)
    assert document.position(("layers", 0, "Dense", "units"), key=True) == (2, 13)
    assert document.position(("layers", 0, "Dense", "missing")) == (2, 12)


def test_overrides_are_typed_like_the_file():
    spec = spec_from_text(
        "layers:\n  - Dense: {units: 3}\ncompile:\n  optimizer: {Adam: {learning_rate: 0.1}}\n",
        "f.yaml",
        ["compile.optimizer.Adam.learning_rate=1e-3", "train.epochs=7", "layers[0].Dense.units=5"],
    )
    assert not spec.problems
    assert spec.compile.optimizer == {"Adam": {"learning_rate": 0.001}}
    assert spec.train.epochs == 7
    assert spec.layers[0].args == {"units": 5}


def test_override_problems_name_the_option():
    spec = spec_from_text(
        "layers:\n  - Dense: {units: 3}\n", "f.yaml", ["train.epochs=many", "layers[4].Dense.units=1", "oops"]
    )
    messages = [(p.file, p.message) for p in spec.problems]
    assert ("--set #1", "input should be a valid integer; received 'many'") in messages
    assert ("--set #2", "layers[4] does not exist") in messages
    assert ("--set #3", "expected key.path=value, got 'oops'") in messages


def test_override_paths():
    assert parse_override_path("layers[2].Dense.units") == ("layers", 2, "Dense", "units")
    assert parse_override_path("train.epochs") == ("train", "epochs")
    with pytest.raises(ValueError, match="^empty key path$"):
        parse_override_path("")


def test_sections_have_defaults():
    spec = spec_from_text("layers:\n  - Dense: {units: 3}\n")
    assert spec.train.epochs >= 1 and spec.distribute.strategy == "auto"
    assert spec.compile is None and spec.data is None


def test_unparseable_layers_raise_at_once():
    with pytest.raises(SpecError) as error:
        spec_from_text("layers: 3\n", "f.yaml")
    assert error.value.problems[0].message == "'layers' must be a non-empty list"
