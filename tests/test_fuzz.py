"""A fuzzer over specs: valid specs (specs/ and tiny ones) mutated by Hypothesis (values swapped for
hostile ones, keys dropped or invented, class names misspelled, bytes of the text broken), and `--set` values.
Every outcome is a built model (exit 0) or seq's own error with a position (exit 1, ``FILE:LINE:COL:`` or
``--set #N``): never another exception, a traceback, or an "unexpected" error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqcli.cli import cli
from tests.conftest import SPECS

TINY = {
    "mlp": "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 8, activation: relu}\n  - Dropout: {rate: 0.1}\n"
    "  - Dense: {units: 3, activation: softmax}\n"
    "compile: {optimizer: {Adam: {learning_rate: 0.01}}, loss: sparse_categorical_crossentropy}\n"
    "train: {epochs: 2, seed: 1}\nexpect: {output: [3], max_params: 1000}\n",
    "cnn": "layers:\n  - Input: {shape: [8, 8, 1]}\n  - Conv2D: {filters: 4, kernel_size: 3, padding: same}\n"
    "    expect: [8, 8, 4]\n  - MaxPooling2D: {pool_size: 2}\n  - Flatten: {}\n  - Dense: {units: 2}\n",
    "rnn": "layers:\n  - Input: {shape: [5, 3]}\n  - LSTM: {units: 4, return_sequences: true}\n  - GRU: {units: 2}\n",
}
# Specs that build quickly without downloads (pretrained bases build abstractly, but slowly).
FILES = {path.name: path.read_text() for path in sorted(SPECS.glob("*.yaml")) if "xception" not in path.name}
BASES = {**TINY, **FILES}

HOSTILE_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.sampled_from(["relu", "nope", "../x", "/etc/passwd", "!!python/name:os.system", "1e-3", "yes", ""]),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
POSITIONED = re.compile(r"(bad\.yaml:\d+:\d+: |--set #\d+)")
# seq's catch-all for an exception it did not turn into its own error (not YAML's "found unexpected ':'").
UNCHECKED = re.compile(r"unexpected \w+: |this is a bug in seq|please report it")


def leaves(data, path=()):
    """Every (path, value) in the spec's data, containers included."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from leaves(value, (*path, index))


def replace(data, path, value):
    if not path:
        return value
    head, *rest = path
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[head] = replace(data[head], rest, value)
    return copy


def delete(data, path):
    if len(path) == 1:
        copy = dict(data) if isinstance(data, dict) else list(data)
        del copy[path[0]]
        return copy
    head, *rest = path
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[head] = delete(data[head], rest)
    return copy


@st.composite
def mutated_specs(draw) -> str:
    text = BASES[draw(st.sampled_from(sorted(BASES)))]
    data = yaml.safe_load(text)
    kind = draw(st.sampled_from(["value", "delete", "key", "rename", "text"]))
    if kind == "text":  # break the YAML itself: delete, insert or replace one character
        index = draw(st.integers(min_value=0, max_value=len(text) - 1))
        char = draw(st.sampled_from(list(":{}[]-,&*!#|>%@`'\"\t\n ") + ["é", "9", "\x00", "\x1b", "\ufeff"]))
        how = draw(st.sampled_from(["insert", "delete", "replace"]))
        tail = text[index + (how != "insert") :]
        return text[:index] + ("" if how == "delete" else char) + tail
    paths = [path for path, _ in leaves(data) if path]
    path = draw(st.sampled_from(paths))
    if kind == "value":
        data = replace(data, path, draw(HOSTILE_VALUES))
    elif kind == "delete":
        data = delete(data, path)
    elif kind == "key":
        holders = [p for p, value in leaves(data) if isinstance(value, dict)]
        holder = draw(st.sampled_from(holders))
        target = data
        for step in holder:
            target = target[step]
        data = replace(data, holder, {**target, draw(st.text(min_size=1, max_size=8)): draw(HOSTILE_VALUES)})
    else:  # misspell or recase a layer's class name
        layers = [i for i, layer in enumerate(data.get("layers") or []) if isinstance(layer, dict) and layer]
        if layers:
            index = draw(st.sampled_from(layers))
            layer = data["layers"][index]
            name = next(iter(layer))
            new = draw(st.sampled_from([name.lower(), name.upper(), name[:-1], name + "x", "Lambda", "Model"]))
            data = replace(data, ("layers", index), {(new if k == name else k): v for k, v in layer.items()})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def assert_seq_outcome(result) -> None:
    shown = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in shown and not UNCHECKED.search(shown), shown
    assert result.exit_code in (0, 1), shown
    if result.exit_code == 1:
        assert POSITIONED.search(shown), shown


FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(text=mutated_specs())
def test_mutated_specs_check_or_fail_with_a_position(tmp_path, text):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text, errors="surrogateescape")
    assert_seq_outcome(CliRunner().invoke(cli, ["check", str(spec)]))


@FUZZ
@given(base=st.sampled_from(sorted(TINY)), data=st.data())
def test_set_values_build_or_fail_with_a_position(tmp_path, base, data):
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY[base])
    parsed = yaml.safe_load(TINY[base])
    paths = [path for path, value in leaves(parsed) if path and not isinstance(value, (dict, list))]
    path = data.draw(st.sampled_from(paths))
    key = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")
    key = data.draw(
        st.sampled_from(
            [key, key.upper(), key + "x", key.replace(".", "..", 1), key + "[9]", "[0]", "[0]" + key, key + "[0][0]"]
        )
    )
    value = data.draw(
        st.one_of(
            st.text(max_size=10), HOSTILE_VALUES.map(lambda v: yaml.safe_dump(v).strip().removesuffix("\n...").strip())
        )
    )
    result = CliRunner().invoke(cli, ["summary", str(spec), "--set", f"{key}={value}"])
    assert_seq_outcome(result)


# Characters YAML forbids are reported at their line and column, not by offset ("position 0"): the fuzzer's finds.
@pytest.mark.parametrize(
    ("text", "where", "shown"),
    [
        ("\x00" + TINY["mlp"], "bad.yaml:1:1: ", "a NUL byte"),
        (TINY["mlp"].replace("units: 8", "units: 8\x00"), "bad.yaml:3:21: ", "a NUL byte"),
        (TINY["cnn"].replace("Flatten", "Flat\x1bten"), "bad.yaml:6:9: ", "the character U+001B"),
        ("a: 1\rb: 2\r\x01", "bad.yaml:3:1: ", "the character U+0001"),  # old Mac line breaks
        ("layers:\r\n  - Dense: {units: 2\x01}\r\n", "bad.yaml:2:21: ", "the character U+0001"),
    ],
    ids=["NUL first", "NUL in a line", "escape", "after CR line breaks", "after CRLF line breaks"],
)
def test_a_forbidden_character_is_reported_at_its_line(tmp_path, monkeypatch, text, where, shown):
    (tmp_path / "bad.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["check", "bad.yaml"])
    assert_seq_outcome(result)
    assert result.exit_code == 1
    assert f"{where}invalid YAML: {shown} is not allowed in a YAML file" in result.stdout + result.stderr
    assert "hint: remove U+" in result.stdout + result.stderr
    assert "\x00" not in result.stdout + result.stderr and "\x1b" not in result.stdout + result.stderr


def test_the_fuzzer_starts_from_valid_specs(tmp_path):
    """Unmutated, every base builds: a failure found by the fuzzer comes from its mutation."""
    for name, text in BASES.items():
        spec = tmp_path / "bad.yaml"
        spec.write_text(text)
        result = CliRunner().invoke(cli, ["check", str(spec)])
        assert result.exit_code == 0, (name, result.output)


def test_specs_folder_is_the_fuzzers(tmp_path):
    assert len(FILES) >= 5 and Path(SPECS).is_dir()
