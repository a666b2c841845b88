"""What every command shares, attached in one place by :func:`seq_command`: SeqError to a message and an exit
status, Python warnings to notes, --allow-path and --max-memory for every command that reads specs or files, and
the invocation recorded so that an interrupted command can print the exact command that resumes it. Also the
consoles and the options several commands take (--format, --input-shape)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import sys
import traceback
import warnings

import click
from click.core import ParameterSource
from rich.console import Console

from seqcli.errors import Interrupted, SeqError, clean_text, masked_url, terminal_safe
from seqcli.exit_status import ExitStatus
from seqcli.stages import profile_from_environment

# Output that is not a terminal (a pipe, a log, a CI report) is never wrapped: tables take the width they
# need and a message is one line, whatever COLUMNS says and however long a path is.
UNWRAPPED_WIDTH = 100_000


def stdout_console() -> Console:
    """Rich console for results on stdout (see :func:`console_for`)."""
    return console_for(sys.stdout, stderr=False)


def stderr_console() -> Console:
    """Rich console for progress and notes on stderr (see :func:`console_for`)."""
    return console_for(sys.stderr, stderr=True)


def console_for(stream, *, stderr: bool) -> Console:
    """A console that reads no markup nor emoji codes in what it prints (a name like ``[bold red]x`` or
    ``:x:`` is shown as typed; seq's own styles are ``Text`` styles) and highlights nothing. On a terminal,
    tables fit its width; elsewhere nothing is wrapped or folded (:data:`UNWRAPPED_WIDTH`)."""
    terminal = stream.isatty()
    width = None if terminal else UNWRAPPED_WIDTH
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=not terminal, width=width)


def seq_command(name: str | None = None, *, reads_files: bool = True, light: bool = False, **attrs):
    """Make a click command a seq command, by construction: :func:`fail_on_seq_error` around it and, when it
    ``reads_files`` (specs, data, models), the options --allow-path and --max-memory after its own. A new command
    made with this inherits every shared guarantee; tests/test_cli_meta.py checks that all of them are.

    A ``light`` command builds models abstractly only, so it runs where TensorFlow is not installed (Keras on a
    light backend, :func:`seqcli.keras_env.light_backend_allowed`); any other needs TensorFlow."""

    def decorate(function):
        wrapped = _with_memory_budget(_with_allowed_paths(function)) if reads_files else function
        wrapped = _on_light_backend(wrapped) if light else wrapped
        wrapped = fail_on_seq_error(wrapped)
        command = click.command(name, cls=SeqCommand, **attrs)(wrapped)
        command.reads_files = reads_files
        command.light = light
        if reads_files:
            command.params += [_allow_path_parameter(), _memory_parameter()]
        return command

    return decorate


class SeqCommand(click.Command):
    """A command made by :func:`seq_command`: ``reads_files`` tells whether it takes --allow-path and
    --max-memory, ``light`` whether it runs without TensorFlow, and :func:`replay` rebuilds the command line it
    was invoked with."""

    reads_files = True
    light = False


SHARED_OPTIONS = ("allow_paths", "max_memory")  # what seq_command adds to every command that reads files


def replay(ctx: click.Context, *, fill: dict | None = None, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()):
    """The command line of this invocation, shell-quoted, from the command's own parameters: every argument and
    every option the user gave (hidden ones aside), ``fill`` for options left at their default (name -> value),
    options named in ``drop`` left out, then the words ``add``."""
    words = ["seq", ctx.info_name or ctx.command.name or "", *given_words(ctx, fill=fill, drop=drop)]
    return shlex.join([*words, *add])


def shared_words(ctx: click.Context) -> list[str]:
    """The shared options (--allow-path, --max-memory) as given to this invocation, for a process it starts."""
    return given_words(ctx, only=SHARED_OPTIONS)


def given_words(ctx: click.Context, *, fill=None, drop=(), only=None) -> list[str]:
    """The words of the parameters given to this invocation (see :func:`replay`), or of those named ``only``."""
    fill = fill or {}
    words: list[str] = []
    for param in ctx.command.params:
        if param.name in drop or getattr(param, "hidden", False) or (only is not None and param.name not in only):
            continue
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words += [_word(v) for v in value or ()] if param.nargs != 1 else [_word(value)]
            continue
        if ctx.get_parameter_source(param.name) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            if fill.get(param.name) is None:
                continue
            value = fill[param.name]
        words += _option_words(param, value)
    return words


def _option_words(param: click.Parameter, value) -> list[str]:
    flag = next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])
    if getattr(param, "is_flag", False) and not param.multiple:
        if value:
            return [flag]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    values = value if param.multiple else [value]
    return [word for item in values for word in (flag, masked_url(_word(item)))]  # a database password: never shown


def _word(value) -> str:
    """A parameter's value as it was typed: sequences a callback parsed (devices, shapes) joined by commas."""
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def fail_on_seq_error(command):
    """Report SeqError without a traceback and exit 1 (130 on Ctrl-C), with the command that resumes an
    interrupted one; Python warnings become one-line notes on stderr. Anything unexpected is a bug: one line
    that says so. With SEQ_DEBUG=1 every error shows its traceback and causes: a SeqError's before its
    report (same words, same exit status), anything unexpected instead of the line."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            with _warnings_as_notes(), profile_from_environment():
                return command(*args, **kwargs)
        except SeqError as error:
            _debug_traceback(error)
            if isinstance(error, Interrupted) and error.resumable:
                error.resume_command = replay(
                    ctx, fill={"output": error.output}, drop=("overwrite", "resume"), add=("--resume",)
                )
            _fail(ctx, error.render(), error_document(error), exit_status(error), error.result)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", {"kind": "interrupted", "message": "interrupted"}, ExitStatus.SIGINT)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            failure = _data_failure(error)
            if failure is not None:  # a streamed source's error, stopping a pipeline as TensorFlow's own
                _debug_traceback(failure)
                _fail(ctx, failure.render(), error_document(failure), exit_status(failure), None)
            if os.environ.get("SEQ_DEBUG"):
                raise
            message = f"unexpected {type(error).__name__}: {clean_text(str(error), 300) or '(no message)'}"
            hint = (
                "this is a bug in seq, or an input it does not check yet; run again with SEQ_DEBUG=1 for the "
                "traceback and report it"
            )
            document = {"kind": "internal", "message": message, "hint": hint}
            _fail(ctx, terminal_safe(f"error: {message}\n  hint: {hint}"), document, ExitStatus.INTERNAL)

    # tests/test_cli_doors.py: every command's callback is this wrapper (mypy does not model function attributes)
    wrapper.guards_errors = True  # type: ignore[attr-defined]
    return wrapper


def _debug_traceback(error: BaseException) -> None:
    """With SEQ_DEBUG set, ``error``'s traceback and the chain of its causes on stderr."""
    if os.environ.get("SEQ_DEBUG"):
        traceback.print_exception(error, file=sys.stderr)
        sys.stderr.flush()


def _data_failure(error: Exception):
    from seqcli.data.streams import take_failure

    return take_failure(error)


# Warnings meant for the developers of the libraries seq uses, not for a user of seq.
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning, ResourceWarning)


@contextlib.contextmanager
def _warnings_as_notes():
    """Python warnings raised while a command runs, each shown once as ``note: MESSAGE`` on stderr (one line,
    terminal-safe), never as Python's two-line ``FILE:LINE: UserWarning`` that quotes source code."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, _DEVELOPER_WARNINGS):
            return
        text = clean_text(str(message), 300)
        if text and text not in shown:
            shown.add(text)
            echo_text(f"note: {text}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def exit_status(error: SeqError) -> ExitStatus:
    """An error that stopped on a signal (it carries ``signum``) exits as that signal; one of the machine
    (``kind`` environment) as ENVIRONMENT; any other, ERROR."""
    signum = getattr(error, "signum", None)
    if signum is not None:
        return ExitStatus.for_signal(signum)
    return ExitStatus.ENVIRONMENT if error.kind == "environment" else ExitStatus.ERROR


def error_document(error: SeqError) -> dict:
    """The error as data, for ``--format json``: its kind, message and hint, the file, line and column of the
    first problem in a spec (all of them under ``problems``), and the command that resumes an interrupted run."""
    problems = [{"file": p.file, **p.as_dict()} for p in getattr(error, "problems", [])]
    first = problems[0] if problems else {}
    document = {
        "kind": error.kind,
        "message": error.message,
        "hint": error.hint or first.get("hint"),
        "file": first.get("file"),
        "line": first.get("line"),
        "column": first.get("column"),
        "problems": problems,
    }
    resume_command = getattr(error, "resume_command", None)
    if resume_command:
        document["resume_command"] = resume_command
    return document


def _fail(ctx: click.Context, text: str, document: dict, status: ExitStatus, result: dict | None = None):
    """Exit with ``status`` after the error on stderr and, when the command prints JSON, as JSON on stdout: the
    ``error`` key of one document (with what the command found before it failed, ``result``, when it says)."""
    click.echo(text, err=True)
    if ctx.params.get("fmt") == "json" or ctx.params.get("as_json"):
        click.echo(json.dumps({**(result or {}), "error": {**document, "exit_status": int(status)}}, indent=2))
    sys.exit(status)


def _with_allowed_paths(command):
    """Run ``command`` with the folders of ``--allow-path`` (:mod:`seqcli.specfile.paths`, imported only when a
    command runs) allowed besides each spec's own."""

    @functools.wraps(command)
    def wrapper(*args, allow_paths=(), **kwargs):
        from seqcli.inputs import allowed_paths

        with allowed_paths(allow_paths):
            return command(*args, **kwargs)

    return wrapper


def _on_light_backend(command):
    """Run ``command`` with Keras allowed on a light backend when TensorFlow is not installed."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from seqcli.keras_env import light_backend_allowed

        with light_backend_allowed():
            return command(*args, **kwargs)

    return wrapper


def _allow_path_parameter() -> click.Option:
    return click.Option(
        ["--allow-path", "allow_paths"],
        multiple=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help=f"Let specs read files in DIR too (repeatable); a spec reads files inside its own "
        f"folder only. Also SEQ_ALLOW_PATH (folders separated by '{os.pathsep}').",
    )


def _with_memory_budget(command):
    """``--max-memory`` was applied by its callback, when parsed; the command itself does not take it."""

    @functools.wraps(command)
    def wrapper(*args, max_memory=None, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def set_max_memory(ctx, param, value: str | None):
    from seqcli.budget import configure

    try:
        configure(value)
    except SeqError as error:
        raise click.BadParameter(error.message.removeprefix("--max-memory: ")) from None
    return value


def _memory_parameter() -> click.Option:
    """``--max-memory SIZE``: the budget checked before reading inputs and building real weights."""
    return click.Option(
        ["--max-memory", "max_memory"],
        callback=set_max_memory,
        metavar="SIZE",
        help="Refuse inputs and models estimated to need more memory than SIZE (e.g. 8G).  "
        "[default: 70% of the memory available, or $SEQ_MAX_MEMORY]",
    )


def result_format_option(command):
    """``--format text|json``: the result for people, or as one JSON document on stdout (progress and notes
    then go to stderr), for the commands that print a result."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Print the result as text, or as JSON on stdout (progress goes to stderr).",
    )(command)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def echo_text(text: str, *, err: bool = False) -> None:
    """A plain line (or lines) for people, through the text door: what a name or a path put in it cannot
    drive the terminal nor fail to encode."""
    click.echo(terminal_safe(text), err=err)


def parse_shape(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        shape = tuple(int(part) for part in value.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected sizes separated by commas, like 250,250,3; received {value!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise click.BadParameter(f"sizes must be positive; received {value!r}")
    return shape
