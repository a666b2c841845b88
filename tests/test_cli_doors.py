"""The doors every command passes, checked over ``cli.commands`` rather than a hand-written list: a new command
that is not built with ``seq_command``, or that takes a path around a door, fails here until it is covered.

- Errors: every command's callback is the one error door (SeqError to one message, no traceback).
- Shared options: every command that reads specs or files takes --allow-path and --max-memory.
- Bad input: every command, given a missing input, says so in one error, exit 1, and writes nothing.
- Warnings: a Python warning raised inside a command is one ``note:`` line, never Python's two-line warning.
- Resume: an interrupted command prints a resume command rebuilt from every option it was given.
"""

from __future__ import annotations

import json
import shlex
import warnings

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.cli.options import SeqCommand
from seqcli.errors import SeqError
from tests.conftest import snapshot

# Commands that read no spec, data or model file: no --allow-path or --max-memory.
READS_NOTHING = {"schema", "init"}

# Each command with a missing input (or an output it cannot write), and the path its error names with a hint.
MISSING = {
    "summary": (["summary", "missing.yaml"], "missing.yaml"),
    "check": (["check", "missing.yaml"], "missing.yaml"),
    "schema": (["schema", "--output", "afile/schema.json"], "afile"),
    "plot": (["plot", "missing.yaml", "--output", "out.png"], "missing.yaml"),
    "import": (["import", "missing.keras"], "missing.keras"),
    "init": (["init", "mlp", "afile/mlp.yaml"], "afile"),
    "train": (["train", "missing.yaml", "--output", "run"], "missing.yaml"),
    "transfer": (["transfer", "missing.yaml", "--output", "out"], "missing.yaml"),
    "tune": (["tune", "missing.yaml", "--output", "study"], "missing.yaml"),
    "evaluate": (["evaluate", "missing"], "missing"),
    "predict": (["predict", "missing", "--data", "x.npy", "--output", "p.npy"], "missing"),
    "extract": (["extract", "missing.yaml", "--data", "x.npy", "--all", "--output", "f.npz"], "missing.yaml"),
    "freeze": (["freeze", "missing.yaml", "--all-but-last", "1", "--output", "f.keras"], "missing.yaml"),
    "export": (["export", "missing", "--output", "out"], "missing"),
}


def test_every_command_is_a_seq_command():
    for name, command in cli.commands.items():
        assert isinstance(command, SeqCommand), f"{name}: make it with @seq_command"
        assert getattr(command.callback, "guards_errors", False), f"{name}: its callback skips the error door"
        options = {param.name for param in command.params}
        if name in READS_NOTHING:
            assert not command.reads_files, name
        else:
            assert {"allow_paths", "max_memory"} <= options, f"{name} reads files: it needs the shared options"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_reports_a_missing_input_in_one_error(name, tmp_path, monkeypatch):
    assert set(MISSING) == set(cli.commands), "add the new command to MISSING"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder\n")
    args, named = MISSING[name]
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, args)
    shown = result.stdout + result.stderr
    assert result.exit_code == 1, shown
    assert named in result.stderr and "hint: " in result.stderr, shown
    assert "Traceback" not in shown and "unexpected" not in shown, shown
    assert snapshot(tmp_path) == before


def test_a_python_warning_inside_a_command_is_one_note(monkeypatch, tmp_path):
    import seqcli.verbs.report

    def warns(*args, **kwargs):
        warnings.warn("the \x1b[31mthing\x1b[0m is odd\nsecond line", UserWarning, stacklevel=1)
        warnings.warn("the \x1b[31mthing\x1b[0m is odd\nsecond line", UserWarning, stacklevel=1)
        warnings.warn("developers only", DeprecationWarning, stacklevel=1)
        raise SeqError("stopped here")

    monkeypatch.setattr(seqcli.verbs.report, "inspect_spec", warns)
    result = CliRunner().invoke(cli, ["summary", str(tmp_path / "x.yaml")])
    assert result.exit_code == 1
    assert result.stderr == "note: the thing is odd second line\nerror: stopped here\n"


def interrupted(output):
    from seqcli.training import TrainingInterrupted

    return TrainingInterrupted(2, "SIGINT: stopped", checkpoint=output / "checkpoints" / "last.npz", output=output)


SHARED = ["--allow-path", "data dir", "--max-memory", "2G"]
# Each command that can be interrupted: the core function that stops, the arguments it is given (its output
# folder left to the default where it has one), and the resume command it prints (RUN: the folder it stopped in).
INTERRUPTIBLE = {
    "train": (
        "seqcli.training.train_spec",
        ["train", "s.yaml", "--epochs", "3", "--overwrite", "--set", "train.seed=1", *SHARED],
        "seq train s.yaml --output RUN --epochs 3 --set train.seed=1 --allow-path 'data dir' --max-memory 2G",
    ),
    "transfer": (
        "seqcli.verbs.transfer.run_transfer",
        ["transfer", "s.yaml", "-o", "out", "--fine-tune-layers", "8", "--set", "train.seed=1", *SHARED],
        "seq transfer s.yaml --output out --fine-tune-layers 8 --set train.seed=1 --allow-path 'data dir' "
        "--max-memory 2G",
    ),
    "tune": (
        "seqcli.tune.runner.tune_spec",
        ["tune", "s.yaml", "--trials", "4", "--workers", "2", *SHARED],
        "seq tune s.yaml --output RUN --trials 4 --workers 2 --allow-path 'data dir' --max-memory 2G",
    ),
}


@pytest.mark.parametrize("name", sorted(INTERRUPTIBLE))
def test_the_resume_command_keeps_every_option_given(name, tmp_path, monkeypatch):
    target, args, expected = INTERRUPTIBLE[name]
    monkeypatch.chdir(tmp_path)

    def stop(*args, **kwargs):
        raise interrupted(tmp_path / "the run")

    monkeypatch.setattr(target, stop)
    monkeypatch.setattr("seqcli.verbs.transfer.plan_transfer", lambda options: type("Plan", (), {"phases": []})())
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert result.stderr.endswith(
        f"resume with:\n  {expected} --resume\n".replace("RUN", shlex.quote(str(tmp_path / "the run")))
    )


def json_commands() -> list[str]:
    """The commands that print a result as JSON: a --format with a json choice."""
    found = []
    for name, command in cli.commands.items():
        for param in command.params:
            if "--format" in getattr(param, "opts", ()) and "json" in getattr(param.type, "choices", ()):
                found.append(name)
    return sorted(set(found))


def test_every_command_offering_json_spells_it_format_json():
    """One spelling for the machine format: no visible --json flag or option with a json choice but --format,
    and every --format that names other things (check's github) offers json too."""
    for name, command in cli.commands.items():
        for param in command.params:
            choices = getattr(param.type, "choices", ())
            visible = not getattr(param, "hidden", False)
            if visible and ("json" in choices or any("json" in opt for opt in getattr(param, "opts", ()))):
                assert param.opts == ["--format"], f"seq {name}: JSON output is offered as {param.opts}"
            if "--format" in getattr(param, "opts", ()):
                assert "json" in choices, f"seq {name}: --format without json"
    assert "export" in json_commands()


@pytest.mark.parametrize("name", json_commands())
def test_every_json_command_reports_an_error_as_json_on_stdout(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder\n")
    args, named = MISSING[name]
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 1, result.output
    if name == "check":  # its JSON is the CI report: every spec, each with its problems
        assert named in json.loads(result.stdout)["specs"][0]["path"]
        return
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "input" and error["exit_status"] == 1
    assert named in error["message"] + json.dumps(error["problems"]), error
    assert named in result.stderr  # people still read it on stderr


def test_a_spec_error_as_json_names_file_line_and_column(write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, activaton: relu}\n")
    result = CliRunner().invoke(cli, ["summary", str(spec), "--format", "json"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert (error["file"], error["line"], error["column"]) == (str(spec), 3, 23), error
    assert json.loads(result.stdout)["ok"] is False  # the report, with the error in it
    assert error["problems"][0]["hint"] == "did you mean 'activation'?", error


def test_a_missing_program_or_package_is_an_environment_error(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz 'dot' on it
    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3}\n")
    result = CliRunner().invoke(cli, ["plot", str(spec), "-o", str(tmp_path / "m.png"), "--engine", "graphviz"])
    assert result.exit_code == 3, result.output
    assert "'dot' program" in result.stderr


def test_an_unexpected_exception_is_an_internal_error_in_json_too(monkeypatch, tmp_path):
    import seqcli.verbs.report

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(seqcli.verbs.report, "inspect_spec", broken)
    monkeypatch.delenv("SEQ_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["summary", str(tmp_path / "x.yaml"), "--format", "json"])
    assert result.exit_code == 4
    assert json.loads(result.stdout)["error"]["kind"] == "internal"


def test_seq_debug_shows_a_seq_errors_traceback_with_its_cause(write_spec, monkeypatch):
    spec = write_spec("layers:\n  - Dense: {units: [1\n")
    monkeypatch.delenv("SEQ_DEBUG", raising=False)
    plain = CliRunner().invoke(cli, ["summary", str(spec)])
    monkeypatch.setenv("SEQ_DEBUG", "1")
    debug = CliRunner().invoke(cli, ["summary", str(spec)])
    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.output
    assert plain.stderr.startswith(f"{spec}:3:1: invalid YAML: expected ',' or ']'"), plain.stderr
    assert debug.stderr.startswith("Traceback (most recent call last):\n")
    cause, _, error = debug.stderr.partition("The above exception was the direct cause of the following exception")
    assert "yaml.parser.ParserError: while parsing a flow sequence" in cause  # PyYAML's own error, kept as the cause
    assert "seqcli.errors.SpecError" in error
    assert debug.stderr.endswith(plain.stderr)  # then the same report, word for word
