"""Commands on specs and model files, no training: summary, check, schema, plot, import, init."""

from __future__ import annotations

import json
import shlex
import sys

import click

from seqcli.cli.options import echo_text, parse_shape, seq_command, stdout_console
from seqcli.errors import SeqError
from seqcli.exit_status import ExitStatus


@seq_command(light=True)
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--input-shape",
    callback=parse_shape,
    metavar="250,250,3",
    help="Input shape (without batch) for a spec that has none.",
)
@click.option("--upto", metavar="NAME|INDEX", help="Show the model built up to this layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
def summary(spec, input_shape, upto, fmt, overrides):
    """Show the model a SPEC builds: layers, output shapes, parameters, expectations.

    No weights are allocated, so this is fast for any model size.
    """
    from seqcli.verbs.report import inspect_spec
    from seqcli.views.render import summary_table

    upto_key = int(upto) if upto is not None and upto.isdigit() else upto
    report = inspect_spec(spec, input_shape=input_shape, upto=upto_key, overrides=list(overrides))
    if fmt == "json" and report.ok:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif fmt != "json" and report.built is not None and report.built.rows:
        stdout_console().print(summary_table(report))
    if not report.ok:
        error = report.error()
        error.result = report.as_dict()  # the JSON document: the report, with the error in it
        raise error


@seq_command(light=True)
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "github"]),
    default="text",
    show_default=True,
    help="Output format; junit and github are for CI systems.",
)
def check(specs, fmt):
    """Validate and build each SPEC and compare every 'expect'. Exit 1 if any fails.

    Made for CI: 'seq check specs/*.yaml --format github' annotates pull requests.
    """
    from seqcli.verbs.report import inspect_spec
    from seqcli.views import render

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
            if report.adapting:
                echo_text(f"{report.path}: {render.adapting_text(report.adapting)}")
        for report in reports:
            if report.notes:
                click.echo(render.notes_text(report), err=True)
            if not report.ok:
                click.echo(render.problems_text(report), err=True)
    if not all(report.ok for report in reports):
        sys.exit(ExitStatus.ERROR)


@seq_command(reads_files=False, light=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the schema to a file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output that is not a seq schema.")
def schema(output, overwrite):
    """Print the spec format as a JSON Schema, for editor completion and checks.

    An existing --output is replaced when it is a seq schema (regenerating it), else only with --overwrite.
    """
    from seqcli.specfile.schema import spec_schema

    text = json.dumps(spec_schema(), indent=2)
    if output:
        from seqcli.files import write_text_atomic
        from seqcli.outputs import claim_output

        try:
            with claim_output(output, "seq schema", folder=False, overwrite=overwrite or _is_seq_schema(output)):
                write_text_atomic(output, text + "\n")
        except OSError as error:
            raise SeqError(
                f"cannot write the schema to {output}: {error.strerror or error}", hint="choose another --output"
            ) from error
    else:
        click.echo(text)


@seq_command("plot")
@click.argument("source", metavar="SPEC_OR_RUN", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The image: .png or .svg.")
@click.option("--curves", is_flag=True, help="Training curves of a run directory (the default for a run).")
@click.option(
    "--engine",
    type=click.Choice(["matplotlib", "graphviz"]),
    default="matplotlib",
    show_default=True,
    help="graphviz uses keras.utils.plot_model and needs the 'dot' program.",
)
@click.option(
    "--confusion", is_flag=True, help="A classifier run's confusion matrix on its test (else validation) data."
)
@click.option("--data", "data", metavar="SOURCE", help="With --confusion: the data with labels to count on.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
def plot_command(source, output, curves, engine, confusion, data, overwrite):
    """Draw a spec's (or a .keras model's) architecture, a run's training curves, or a tuning study's
    objective over trials (a 'seq tune' output folder: each trial and the best so far).

    One box per layer with its name, class, output shape and parameters; frozen layers are grey and
    dashed, a pretrained base is one box. A spec is drawn without allocating weights.
    """
    from seqcli.verbs.plot import plot

    result = plot(source, output, curves=curves, engine=engine, overwrite=overwrite, confusion=confusion, data=data)
    echo_text(f"Wrote {result.description()} to {result.output}")


@seq_command("import")
@click.argument("model", metavar="MODEL.keras", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the spec here instead of stdout.")
@click.option(
    "--weights-out",
    type=click.Path(dir_okay=False),
    metavar="W.weights.h5",
    help="Also write the model's weights, for 'seq train --set' or 'seq extract --weights'.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --output or --weights-out.")
def import_command(model, output, weights_out, overwrite):
    """Turn a saved Keras Sequential model into a spec that builds the same model.

    The model is loaded in safe mode. Arguments equal to Keras's defaults are left out; a
    keras.applications base becomes its entry (MobileNetV2: {...}, weights: null); a model a spec
    cannot express (a Lambda, a functional graph, a custom class, another nested model) is refused,
    naming the layer.
    """
    from seqcli.verbs.importer import import_model

    result = import_model(model, output=output, weights_out=weights_out, overwrite=overwrite)
    for note in result.notes:
        echo_text(f"note: {note}", err=True)
    if output is None:
        click.echo(result.text, nl=False)
    else:
        params = "unbuilt" if result.params is None else f"{result.params:,} params"
        name = result.spec.get("name", result.model)
        echo_text(f"Wrote the spec of '{name}' ({result.layers} layers, {params}) to {output}", err=True)
    if result.weights is not None:
        echo_text(f"Wrote its weights to {result.weights}", err=True)


@seq_command("init", reads_files=False)
@click.argument("kind", type=click.Choice(["mlp", "cnn", "transfer"]))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def init_command(kind, file, force):
    """Write a commented starter spec (mlp, cnn or transfer) that trains on a Keras dataset.

    The spec passes 'seq check' as written; its first line points editors at the schema
    ('seq schema -o seq.schema.json' beside it enables completion).
    """
    from seqcli.verbs.starters import write_starter

    starter = write_starter(kind, file, force=force)
    echo_text(f"Wrote the {starter.kind} starter '{starter.name}' to {starter.path}")
    path = shlex.quote(str(starter.path))
    echo_text(f"Next: seq check {path} && seq train {path}")


def _is_seq_schema(path) -> bool:
    """Whether ``path`` holds a schema ``seq schema`` wrote (read at most 64 KB; anything else is not)."""
    from seqcli.inputs import read_head

    try:
        head = read_head(path, "--output", 65536)  # the door: a FIFO or a device is no schema, and never blocks
    except (OSError, SeqError):
        return False
    return b'"title": "seq spec"' in head
