"""seq check, summary and schema without TensorFlow: the light install (Keras on JAX) for CI hooks.

CI has TensorFlow, so each test runs seq in a subprocess where ``import tensorflow`` fails, as it does where
TensorFlow is not installed: the same JSON as with TensorFlow for the specs in specs/, and a clear environment
error (exit 3, what to install) for a layer Keras makes only with TensorFlow and for every other command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from tests.conftest import ROOT, SPECS

ENVIRONMENT = 3  # ExitStatus.ENVIRONMENT
# Keras makes TextVectorization (and StringLookup, IntegerLookup, Hashing, HashedCrossing) only with TensorFlow.
NEEDS_TENSORFLOW = {"reviews.yaml"}


def seq_without(*args: str, modules=("tensorflow",), cwd=ROOT) -> subprocess.CompletedProcess:
    """Run ``seq ARGS`` in a process where importing any of ``modules`` fails as for a package not installed."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    code = f"import runpy, sys\n{blocked}sys.argv[0] = 'seq'\nrunpy.run_module('seqcli', run_name='__main__')\n"
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}  # what seq itself must override, as it does
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=environment)


def without_memory(report: dict) -> dict:
    return {key: value for key, value in report.items() if key != "memory"}


@pytest.mark.slow
def test_check_without_tensorflow_gives_the_reports_tensorflow_gives():
    pytest.importorskip("jax")
    specs = [str(path) for path in sorted(SPECS.glob("*.yaml")) if path.name not in NEEDS_TENSORFLOW]
    light = seq_without("check", *specs, "--format", "json")
    full = CliRunner().invoke(cli, ["check", *specs, "--format", "json"])
    assert (light.returncode, full.exit_code) == (0, 0), light.stderr + full.stderr
    light_reports = json.loads(light.stdout)["specs"]
    full_reports = json.loads(full.stdout)["specs"]
    for light_report, full_report, spec in zip(light_reports, full_reports, specs, strict=True):
        assert without_memory(light_report) == without_memory(full_report)  # verdict, shapes, params, problems
        assert same_memory_estimate(light_report, full_report), spec


def same_memory_estimate(light: dict, full: dict) -> bool:
    """Keras gives a variable of dtype "int" (Normalization's count) 8 bytes on TensorFlow, 4 elsewhere."""
    if light["memory"] is None or full["memory"] is None:
        return light["memory"] == full["memory"]
    int_variables = sum(row["class"] == "Normalization" for row in full["layers"])
    difference = {key: full["memory"][key] - light["memory"][key] for key in ("weights", "optimizer", "activations")}
    return difference == {"weights": 4 * int_variables, "optimizer": 0, "activations": 0}


@pytest.mark.slow
def test_a_layer_that_needs_tensorflow_is_an_environment_error_at_its_entry():
    """Never a verdict on the spec: Keras makes TextVectorization only with TensorFlow."""
    pytest.importorskip("jax")
    result = seq_without("summary", "specs/reviews.yaml")
    assert result.returncode == ENVIRONMENT, result.stdout + result.stderr
    assert result.stderr.startswith("error: specs/reviews.yaml:11:5: layers[1].TextVectorization: ")
    assert "hint: pip install tensorflow" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [["train", str(SPECS / "digits.yaml"), "--output"], ["plot", str(SPECS / "three_layers.yaml"), "--output"]],
    ids=["train", "plot"],
)
def test_the_other_commands_need_tensorflow(tmp_path, command):
    """train reaches TensorFlow first, plot Keras first: both doors refuse without it."""
    result = seq_without(*command, str(tmp_path / "out.png"))
    assert result.returncode == ENVIRONMENT, result.stdout + result.stderr
    assert result.stderr == (
        "error: this command needs TensorFlow, which is not installed\n"
        "  hint: pip install tensorflow (without it, only 'seq check', 'seq summary' and 'seq schema' run)\n"
    )
    assert not (tmp_path / "out.png").exists()


def test_check_without_tensorflow_or_jax_says_what_to_install():
    result = seq_without("check", "specs/three_layers.yaml", "--format", "json", modules=("tensorflow", "jax"))
    assert result.returncode == ENVIRONMENT, result.stdout + result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "environment" and error["message"] == (
        "Keras's jax backend needs jax, which is not installed"
    )
    assert error["hint"].startswith("pip install jax")


def test_schema_needs_neither_tensorflow_nor_keras():
    result = seq_without("schema", modules=("tensorflow", "keras", "jax"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["title"]


def test_the_light_commands_are_the_ones_that_build_abstractly():
    """A command that joins them must run on JAX as it does on TensorFlow (add it to the tests above)."""
    assert sorted(name for name, command in cli.commands.items() if command.light) == ["check", "schema", "summary"]


def test_the_light_requirements_are_the_package_s_but_tensorflow_and_matplotlib_with_jax():
    """requirements-check.txt, the light install the README gives, stays in step with pyproject.toml."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    lines = (ROOT / "requirements-check.txt").read_text().splitlines()
    light = {str(Requirement(line.split("#")[0])) for line in lines if line.split("#")[0].strip()}
    package = {str(Requirement(text)) for text in requires("seqcli") if "extra ==" not in text}
    dropped = {requirement for requirement in package if Requirement(requirement).name in ("tensorflow", "matplotlib")}
    assert light == (package - dropped) | {"jax"}
    assert "pip install -r requirements-check.txt && pip install --no-deps ." in (ROOT / "README.md").read_text()
