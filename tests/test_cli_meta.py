"""Start-up and help: no TensorFlow where it is not needed, help for every command, no tracebacks."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.errors import SeqError
from tests.conftest import ROOT


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_importing_the_cli_does_not_import_tensorflow():
    result = python("import seqcli.cli, sys; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    assert result.returncode == 0


def test_help_and_schema_do_not_import_tensorflow():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom seqcli.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(cli, ['schema']).exit_code == 0\n"
        "sys.exit('tensorflow' in sys.modules)\n"
    )
    result = python(code)
    assert result.returncode == 0, result.stderr


def test_every_command_has_help():
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help text"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0


def test_console_scripts_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "seqcli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "seq summary" in result.stdout


def test_schema_is_json_schema_with_layers_and_sections():
    schema = json.loads(CliRunner().invoke(cli, ["schema"]).stdout)
    assert schema["required"] == ["layers"]
    layer_items = schema["$defs"]["layer"]["oneOf"]
    assert schema["properties"]["layers"]["items"] == {"$ref": "#/$defs/layer"}
    classes = {next(iter(item["required"])) for item in layer_items}
    assert {"Input", "Dense", "Conv2D", "MaxPooling2D", "Xception", "Model"} <= classes and "Lambda" not in classes
    assert "learning_rate_schedule" in schema["properties"]["train"]["properties"]
    dense = next(i for i in layer_items if i["required"] == ["Dense"])["properties"]["Dense"]
    assert dense["required"] == ["units"] and dense["properties"]["units"]["type"] == "integer"
    assert dense["description"] == "Just your regular densely-connected NN layer"


def test_schema_layer_table_matches_installed_keras(monkeypatch):
    """keras_layers.json is generated from Keras; regenerate with scripts/gen_layer_table.py when this fails."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from gen_layer_table import layer_table

    from seqcli.specfile.schema import layer_table as shipped

    assert layer_table()["layers"] == shipped()["layers"]
    assert layer_table()["bases"] == shipped()["bases"]


def test_spec_error_has_no_traceback_and_exit_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - Dense: !!python/object/apply:os.system [touch pwned]\n")
    result = subprocess.run(
        [sys.executable, "-m", "seqcli", "summary", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "is not allowed in a spec" in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_shipped_specs_validate_against_the_schema():
    """What editors see: every example spec is valid under `seq schema`, and a typo is not."""
    import jsonschema

    from seqcli.specfile.schema import spec_schema
    from seqcli.specfile.yamlload import parse_spec_text
    from tests.conftest import SPECS

    validator = jsonschema.Draft202012Validator(spec_schema())
    for path in sorted(SPECS.glob("*.yaml")):
        errors = list(validator.iter_errors(parse_spec_text(path.read_bytes()).data))
        assert not errors, f"{path.name}: {errors[0].message}"
    assert list(validator.iter_errors({"layers": [{"Dense": {"unitz": 3}}]}))


def test_shipped_specs_point_editors_at_the_committed_schema_which_is_up_to_date():
    """specs/seq.schema.json is what `seq schema` prints (regenerate: seq schema -o specs/seq.schema.json), and
    every spec's first line is the modeline that resolves to it from the spec's folder."""
    from tests.conftest import SPECS

    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert (SPECS / "seq.schema.json").read_text() == result.stdout, "run: seq schema -o specs/seq.schema.json"
    for path in sorted(SPECS.glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=./seq.schema.json", path.name
        assert (path.parent / first.rpartition("=")[2]).resolve() == SPECS / "seq.schema.json"


def test_an_unexpected_error_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    import seqcli.verbs.report

    def broken(*args, **kwargs):
        raise RuntimeError("something\ninside broke")

    monkeypatch.setattr(seqcli.verbs.report, "inspect_spec", broken)
    monkeypatch.delenv("SEQ_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["summary", str(tmp_path / "x.yaml")])
    assert result.exit_code == 4
    assert result.stderr.startswith("error: unexpected RuntimeError: something inside broke\n  hint: this is a bug")
    assert "Traceback" not in result.output


def test_schema_to_an_unwritable_place_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli, ["schema", "--output", str(tmp_path / "file" / "schema.json")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot write the schema to {tmp_path / 'file' / 'schema.json'}: ")


@pytest.mark.slow
def test_a_keras_backend_set_for_other_work_does_not_leak_in():
    result = subprocess.run(
        [sys.executable, "-m", "seqcli", "summary", "specs/three_layers.yaml", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == 25


def test_tensorflow_starts_without_importing_jax_which_stays_importable():
    """TensorFlow's TFLite module imports JAX when installed (the test extra installs it): seq hides it while
    TensorFlow imports, since under an address-space limit JAX's import alone aborts a bounded run."""
    code = (
        "import importlib.util, sys\n"
        "from seqcli.keras_env import import_keras\n"
        "import_keras()\n"
        "print('jax' in sys.modules)\n"
        "print(importlib.util.find_spec('jax') is None or __import__('jax') is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_exit_statuses_are_one_table():
    import signal

    from seqcli.cli import exit_status
    from seqcli.errors import MissingDependency, SeqError
    from seqcli.exit_status import ExitStatus
    from seqcli.files import OutputError

    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3, 4, 130, 143]
    assert exit_status(SeqError("x")) == ExitStatus.ERROR
    assert exit_status(MissingDependency("x")) == ExitStatus.ENVIRONMENT
    assert exit_status(OutputError("x", cause=OSError(28, "No space left on device"))) == ExitStatus.ENVIRONMENT
    assert exit_status(OutputError("x", cause=OSError(21, "Is a directory"))) == ExitStatus.ERROR
    stopped = SeqError("stopped")
    stopped.signum = signal.SIGTERM
    assert exit_status(stopped) == ExitStatus.SIGTERM
    assert ExitStatus.for_signal(signal.SIGHUP) == ExitStatus.SIGINT


def test_schema_output_replaces_only_a_seq_schema(tmp_path):
    from click.testing import CliRunner

    from seqcli.cli import cli

    (tmp_path / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "notes.txt")])
    assert refused.exit_code == 1 and "--overwrite" in refused.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "s.json")]).exit_code == 0
    assert CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "s.json")]).exit_code == 0  # regenerated


def test_shell_completion_works_for_both_names(monkeypatch, capsys):
    """``seqcli`` (the name that does not shadow coreutils' seq) completes as itself, like ``seq``."""
    import pytest

    from seqcli.cli import main

    for name in ("seq", "seqcli"):
        monkeypatch.setattr(sys, "argv", [f"/venv/bin/{name}"])
        monkeypatch.setenv(f"_{name.upper()}_COMPLETE", "bash_source")
        with pytest.raises(SystemExit):
            main()
        monkeypatch.delenv(f"_{name.upper()}_COMPLETE")
        assert f"complete -o nosort -F _{name}_completion {name}" in capsys.readouterr().out


def test_the_version_has_one_source():
    from importlib.metadata import version

    import seqcli

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split("[tool.setuptools")[0]
    assert version("seqcli") == seqcli.__version__
    assert CliRunner().invoke(cli, ["--version"]).output == f"seq, version {seqcli.__version__}\n"


def corpus_spec_cases() -> list[tuple[str, str]]:
    """The hostile corpus's cases about a spec's own text: `seq check bad.yaml` refusing it, status 1."""
    from tests.test_hostile import CLASSES

    return [
        (name, case.files["bad.yaml"])
        for table in CLASSES.values()
        for name, case in table.items()
        if case.args[:2] == ["check", "bad.yaml"] and case.status == 1 and isinstance(case.files["bad.yaml"], str)
    ]


@pytest.mark.slow
def test_the_schema_flags_most_spec_errors_check_reports_and_no_valid_spec():
    """What an editor shows before seq runs: the schema flags a share of the specs `seq check` refuses (printed
    with -s; editors cannot know about files, memory or shapes), and every spec seq ships or starts is valid."""
    import jsonschema

    from seqcli.specfile.schema import spec_schema
    from seqcli.specfile.yamlload import parse_spec_text
    from seqcli.verbs.starters import KINDS, starter_text

    validator = jsonschema.Draft202012Validator(spec_schema())
    for kind in KINDS:
        assert not list(validator.iter_errors(parse_spec_text(starter_text(kind, "m.yaml")).data)), kind
    flagged, cases = 0, corpus_spec_cases()
    for _name, text in cases:
        try:
            data = parse_spec_text(text.encode()).data
        except SeqError:
            flagged += 1  # not YAML a spec may hold: the editor's YAML support flags it
            continue
        flagged += bool(next(validator.iter_errors(data), None))
    print(f"the schema flags {flagged} of the corpus's {len(cases)} spec cases")
    # 34 of 78 when measured: the rest are about files, sizes, nesting, NaN values and shapes, which only seq
    # can judge.
    assert len(cases) >= 30 and flagged / len(cases) >= 0.42
