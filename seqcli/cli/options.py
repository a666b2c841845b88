"""What every command shares: consoles, SeqError to a message and an exit status, and the options several
commands take (--allow-path, --max-memory, --input-shape)."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console

from seqcli.errors import SeqError, clean_text, terminal_safe
from seqcli.exit_status import ExitStatus

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


def fail_on_seq_error(command):
    """Report SeqError without a traceback and exit 1 (130 on Ctrl-C). Anything unexpected is a bug:
    one line that says so, and the traceback only with SEQ_DEBUG=1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SeqError as error:
            click.echo(error.render(), err=True)
            sys.exit(exit_status(error))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitStatus.SIGINT)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("SEQ_DEBUG"):
                raise
            message = terminal_safe(clean_text(str(error), 300)) or "(no message)"
            click.echo(
                f"error: unexpected {type(error).__name__}: {message}\n"
                "  hint: this is a bug in seq, or an input it does not check yet; run again with "
                "SEQ_DEBUG=1 for the traceback and report it",
                err=True,
            )
            sys.exit(ExitStatus.ERROR)

    return wrapper


def exit_status(error: SeqError) -> ExitStatus:
    """An error that stopped on a signal (it carries ``signum``) exits as that signal; any other, ERROR."""
    signum = getattr(error, "signum", None)
    return ExitStatus.for_signal(signum) if signum is not None else ExitStatus.ERROR


def allow_path_option(command):
    """``--allow-path DIR`` (repeatable): folders besides its own that a spec may read files from
    (:mod:`seqcli.spec.paths`, imported only when a command runs)."""

    @functools.wraps(command)
    def wrapper(*args, allow_paths=(), **kwargs):
        from seqcli.spec.paths import allowed_paths

        with allowed_paths(allow_paths):
            return command(*args, **kwargs)

    return click.option(
        "--allow-path",
        "allow_paths",
        multiple=True,
        metavar="DIR",
        type=click.Path(file_okay=False),
        help=f"Let specs read files in DIR too (repeatable); a spec reads files inside its own "
        f"folder only. Also SEQ_ALLOW_PATH (folders separated by '{os.pathsep}').",
    )(wrapper)


def set_max_memory(ctx, param, value: str | None):
    from seqcli.limits import configure

    try:
        configure(value)
    except SeqError as error:
        raise click.BadParameter(error.message.removeprefix("--max-memory: ")) from None
    return value


def memory_option(command):
    """``--max-memory SIZE``: the budget checked before reading inputs and building real weights."""
    return click.option(
        "--max-memory",
        callback=set_max_memory,
        expose_value=False,
        metavar="SIZE",
        help="Refuse inputs and models estimated to need more memory than SIZE (e.g. 8G).  "
        "[default: 70% of the memory available, or $SEQ_MAX_MEMORY]",
    )(command)


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
