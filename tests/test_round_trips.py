"""Whatever seq writes as a spec (starters, imported specs, a run's spec.yaml, a study's best.yaml), seq reads back
with the same meaning: properties over names and values, then the commands that write specs, end to end."""

from __future__ import annotations

import json
import math
import shlex

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqcli.cli import cli
from seqcli.specfile import spec_from_text
from seqcli.specfile.dump import dump_scalar, dump_spec
from seqcli.specfile.yamlload import parse_spec_text
from seqcli.verbs.starters import StarterError, model_name, starter_text

# YAML's own trouble makers first: words YAML 1.1 or 1.2 reads as booleans, nulls and numbers.
TRICKY = ["yes", "no", "on", "off", "true", "null", "~", "1e3", "0o17", "0x1F", ".inf", "-.5", "1_000", "2024-01-01"]
names = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=20))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    names,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
)


def same(a, b) -> bool:
    """Equal, with -0.0 and 0.0 told apart (YAML keeps the sign)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=150, deadline=None)
@given(name=names, arguments=st.dictionaries(names, values, max_size=5))
def test_a_dumped_spec_reads_back_as_the_same_data(name, arguments):
    data = {"name": name, "layers": [{"Dense": arguments}], "train": {"epochs": 1}}
    for inline in (False, True):
        text = dump_spec(data, inline_layers=inline)
        assert same(parse_spec_text(text.encode()).data, data), text


@settings(max_examples=100, deadline=None)
@given(value=scalars)
def test_a_dumped_scalar_reads_back_as_the_same_value(value):
    assert same(parse_spec_text(f"key: {dump_scalar(value)}\n".encode()).data, {"key": value})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stem=st.one_of(st.sampled_from(TRICKY), st.text(st.characters(exclude_characters="/\x00"), min_size=1)))
@pytest.mark.parametrize("kind", ["mlp", "cnn", "transfer"])
def test_a_starter_for_any_file_name_passes_validation_with_its_name(kind, stem):
    path = f"{stem}.yaml"
    if not path.isprintable():
        with pytest.raises(StarterError, match="not printable"):
            starter_text(kind, path)
        return
    spec = spec_from_text(starter_text(kind, path), path)
    assert not spec.problems, spec.problems
    assert spec.name == model_name(path) and spec.name.isidentifier()


def test_init_refuses_a_file_name_with_a_line_break_and_quotes_the_next_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(cli, ["init", "mlp", "a\nname: injected.yaml"])
    assert refused.exit_code == 1 and "line break" in refused.stderr and "injected" not in refused.stderr
    assert list(tmp_path.iterdir()) == []
    written = CliRunner().invoke(cli, ["init", "mlp", "true model.yaml"])
    assert written.exit_code == 0, written.output
    path = shlex.quote("true model.yaml")
    assert f"Next: seq check {path} && seq train {path}" in written.stdout
    checked = CliRunner().invoke(cli, ["check", "true model.yaml"])
    assert checked.exit_code == 0, checked.output
    assert (tmp_path / "true model.yaml").read_text().count("\nname: true_model\n") == 1


@pytest.mark.parametrize(
    ("model_name", "layer_name", "spec_name"),
    [("yes", "no", "'yes'"), ("a\nb: c", "d", "a_b_c"), ("1e3", "0o17", "model_1e3"), ("m", "x.y-z", "m")],
)
def test_an_imported_spec_checks_with_the_same_names(model_name, layer_name, spec_name, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name=layer_name)], name=model_name)
    model.save(tmp_path / "m.keras")
    imported = CliRunner().invoke(cli, ["import", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.yaml")])
    assert imported.exit_code == 0, imported.output
    assert all(line.startswith(("note: ", "Wrote ")) for line in imported.stderr.splitlines()), imported.stderr
    text = (tmp_path / "m.yaml").read_text()
    assert f"\nname: {spec_name}\n" in text
    checked = CliRunner().invoke(cli, ["summary", str(tmp_path / "m.yaml"), "--format", "json"])
    assert checked.exit_code == 0, checked.output
    assert layer_name in [row["name"] for row in json.loads(checked.stdout)["layers"]]


def test_import_refuses_before_writing_a_spec_that_check_would_refuse(tmp_path):
    """A layer name Keras accepts and TensorFlow cannot train: the spec would not pass check, so none is written."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="[bold]x")])
    model.save(tmp_path / "m.keras")
    refused = CliRunner().invoke(cli, ["import", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.yaml")])
    assert refused.exit_code == 1 and "cannot be written as a spec: layers[1].Dense.name" in refused.stderr
    assert not (tmp_path / "m.yaml").exists()


@pytest.mark.slow
def test_a_transfer_spec_imports_back_to_its_layers(tmp_path):
    """build -> save -> import gives back the layers of the spec that made the model (what seq train saves),
    its keras.applications base as the same entry."""
    import yaml

    from seqcli.modelbuild import build_model
    from seqcli.specfile import read_spec
    from tests.bases import TINY_BASE

    (tmp_path / "head.yaml").write_text(TINY_BASE)
    model = build_model(read_spec(tmp_path / "head.yaml")).model
    for inner in model.layers[0].layers[:10]:  # fine-tuned: the bottom of the base frozen, its top trainable
        inner.trainable = False
    model.save(tmp_path / "model.keras")
    imported = CliRunner().invoke(cli, ["import", str(tmp_path / "model.keras")])
    assert imported.exit_code == 0, imported.output
    assert yaml.safe_load(imported.stdout)["layers"] == yaml.safe_load(TINY_BASE)["layers"]
    assert "note: 7 layers inside the MobileNetV2 base are frozen" in imported.stderr
