"""The ``seq`` command line: click only. Each command parses options, calls one core function,
renders the result, and turns SeqError into a clear message and an :class:`ExitStatus`.

The package: ``options`` (consoles, errors to exit statuses, shared options), and the commands by area:
``spec`` (summary, check, schema, plot, import, init), ``train`` (train, transfer, tune, resume commands) and
``use`` (evaluate, predict, extract, freeze, export). None of them imports TensorFlow at module level, so
``seq --help`` and ``seq schema`` stay fast.
"""

from __future__ import annotations

import os
import sys

import click

from seqcli.cli.options import exit_status, fail_on_seq_error, replay, seq_command, stderr_console, stdout_console
from seqcli.cli.spec import check, import_command, init_command, plot_command, schema, summary
from seqcli.cli.train import train_command, transfer, tune_command
from seqcli.cli.use import evaluate, export_command, extract, freeze, predict
from seqcli.errors import SpecError


def disable_color(ctx, param, value: bool) -> None:
    """--no-color: the NO_COLOR convention (https://no-color.org), which rich honours, for this process."""
    if value:
        os.environ["NO_COLOR"] = "1"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="seqcli", prog_name="seq")
@click.option(
    "--no-color",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=disable_color,
    help="Plain text without colors (also: the NO_COLOR environment variable).",
)
def cli():
    """seq: a Keras Sequential model from a YAML spec, checked, trained and put to work.

    Start with 'seq summary SPEC' to see the model, 'seq check specs/*.yaml' in CI,
    and 'seq train SPEC' to train it.
    """


for _command in (
    summary,
    check,
    schema,
    plot_command,
    import_command,
    init_command,
    train_command,
    transfer,
    tune_command,
    evaluate,
    predict,
    extract,
    freeze,
    export_command,
):
    cli.add_command(_command)


def main():
    """The console scripts ``seq`` and ``seqcli`` (and ``python -m seqcli``): the program's name is the one it
    was started as, so that shell completion (``_SEQCLI_COMPLETE=bash_source seqcli``) completes that name."""
    cli(prog_name="seqcli" if os.path.basename(sys.argv[0]) == "seqcli" else "seq")


__all__ = [
    "SpecError",
    "cli",
    "exit_status",
    "fail_on_seq_error",
    "main",
    "replay",
    "seq_command",
    "stderr_console",
    "stdout_console",
]
