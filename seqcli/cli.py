"""The ``seq`` command line: click only. Each command parses options, calls one core function,
renders the result, and turns SeqError into a clear message and exit status 1."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console

from seqcli.errors import SeqError, SpecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def stdout_console() -> Console:
    """Rich console for tables; piped output gets a fixed 120 columns unless COLUMNS says otherwise."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail_on_seq_error(command):
    """Report SeqError without a traceback and exit 1 (130 on Ctrl-C)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SeqError as error:
            click.echo(error.render(), err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_SIGINT)

    return wrapper


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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="seqcli", prog_name="seq")
def cli():
    """seq: a Keras Sequential model from a YAML spec, checked, trained and put to work.

    Start with 'seq summary SPEC' to see the model, 'seq check specs/*.yaml' in CI,
    and 'seq train SPEC' to train it.
    """


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--input-shape", callback=parse_shape, metavar="250,250,3",
              help="Input shape (without batch) for a spec that has none.")
@click.option("--upto", metavar="NAME|INDEX", help="Show the model built up to this layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@fail_on_seq_error
def summary(spec, input_shape, upto, fmt, overrides):
    """Show the model a SPEC builds: layers, output shapes, parameters, expectations.

    No weights are allocated, so this is fast for any model size.
    """
    from seqcli.inspect import inspect_spec
    from seqcli.render import summary_table

    upto_key = int(upto) if upto is not None and upto.isdigit() else upto
    report = inspect_spec(spec, input_shape=input_shape, upto=upto_key, overrides=list(overrides))
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.built is not None and report.built.rows:
        stdout_console().print(summary_table(report))
    if not report.ok:
        raise report.error()


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "github"]), default="text",
              show_default=True, help="Output format; junit and github are for CI systems.")
@fail_on_seq_error
def check(specs, fmt):
    """Validate and build each SPEC and compare every 'expect'. Exit 1 if any fails.

    Made for CI: 'seq check specs/*.yaml --format github' annotates pull requests.
    """
    from seqcli import render
    from seqcli.inspect import inspect_spec

    reports = [inspect_spec(path) for path in specs]
    if fmt == "json":
        click.echo(render.check_json(reports))
    elif fmt == "junit":
        click.echo(render.check_junit(reports))
    elif fmt == "github":
        text = render.check_github(reports)
        if text:
            click.echo(text)
    else:
        stdout_console().print(render.check_table(reports))
        for report in reports:
            if not report.ok:
                click.echo(render.problems_text(report), err=True)
    if not all(report.ok for report in reports):
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the schema to a file.")
def schema(output):
    """Print the spec format as a JSON Schema, for editor completion and checks."""
    from seqcli.spec.schema import spec_schema

    text = json.dumps(spec_schema(), indent=2)
    if output:
        from seqcli.files import write_text_atomic

        write_text_atomic(output, text + "\n")
    else:
        click.echo(text)


def main():
    cli(prog_name="seq")


__all__ = ["cli", "main", "SpecError"]
