"""Commands that put a model to work: evaluate, predict, extract, freeze, export."""

from __future__ import annotations

import json

import click

from seqcli.cli.options import (
    echo_json,
    echo_text,
    result_format_option,
    seq_command,
    stderr_console,
    stdout_console,
)
from seqcli.data.formats import source_help


@seq_command()
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option(
    "--data",
    "source",
    metavar="SOURCE",
    help=source_help("Data with labels") + "  [default: the run's data.test, else its validation data]",
)
@click.option("--spec", type=click.Path(dir_okay=False), help="Take loss, metrics and data from this spec.")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Samples per batch.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def evaluate(target, source, spec, batch_size, fmt):
    """Evaluate a trained run (or a .keras model) on a data source: loss and metrics.

    The model is loaded in Keras safe mode.
    """
    from seqcli.verbs.predict import evaluate_model
    from seqcli.views.progress import evaluation_view

    result = evaluate_model(target, data=source, spec=spec, batch_size=batch_size)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        stdout_console().print(evaluation_view(result))


@seq_command()
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--data", "source", required=True, metavar="SOURCE", help=source_help("Inputs"))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="PREDICTIONS.npy (raw outputs), .csv or .json (a classifier's classes, names and probabilities, "
    "then each output).",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="A classifier's N most probable classes per sample in .csv and .json.",
)
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Samples per batch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
def predict(target, source, output, top_k, batch_size, overwrite):
    """Predict with a trained run (or a .keras model) on a data source; write .npy, .csv or .json.

    The model is loaded in Keras safe mode; the output file appears atomically when complete.
    """
    from seqcli.shapes import shape_text
    from seqcli.verbs.predict import predict_to_file
    from seqcli.views.progress import stage_display

    with stage_display(stderr_console(), "predict") as stage:
        result = predict_to_file(
            target, data=source, output=output, batch_size=batch_size, overwrite=overwrite, stage=stage, top_k=top_k
        )
    echo_text(f"Wrote {result.count:,} predictions of shape {shape_text(result.shape)} to {result.output}")


@seq_command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="Trained weights: a .weights.h5 or .keras file. Without it, layers keep their spec weights.",
)
@click.option(
    "--data",
    "source",
    required=True,
    metavar="SOURCE",
    help=source_help("Inputs"),
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME",
    help="A layer to extract (repeatable); BASE/NAME reaches inside a pretrained base.",
)
@click.option("--all", "all_layers", is_flag=True, help="Extract every top-level layer.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(),
    help="FEATURES.npz (one array per layer), or a directory for one .npy file per layer.",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Samples per batch (default: data.batch_size).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output (only what seq wrote).")
@result_format_option
def extract(spec, weights, source, layers, all_layers, output, batch_size, overrides, overwrite, fmt):
    """Extract features: the outputs of named layers (or all) for every sample of the data.

    The guide's feature extractor, keras.Model(inputs, outputs=[...]), streamed to disk batch by
    batch, so memory stays flat however many samples there are. Arrays are keyed by layer name.
    """
    from seqcli.shapes import shape_text
    from seqcli.verbs.extract import run_extract
    from seqcli.views.progress import sample_progress

    if bool(layers) == all_layers:
        raise click.UsageError("give --layer NAME (one or more) or --all")
    if weights is None:
        click.echo(
            "note: no --weights; layers keep the weights the spec gives them (pretrained bases) or "
            "a fresh initialization",
            err=True,
        )
    result = run_extract(
        spec,
        data=source,
        output=output,
        layers=list(layers) or None,
        weights=weights,
        batch_size=batch_size,
        overrides=list(overrides),
        overwrite=overwrite,
        progress_factory=lambda total: sample_progress(total, stderr_console()),
    )
    if fmt == "json":
        return echo_json(result.as_dict())
    for name, shape in result.shapes.items():
        echo_text(f"{name}: {shape_text(shape)} {result.dtypes[name]}")
    echo_text(f"Wrote features of {result.count:,} samples to {result.output}")


@seq_command()
@click.argument("source", metavar="SPEC_OR_MODEL", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights to load first: .weights.h5 or .keras.")
@click.option(
    "--all-but-last", type=click.IntRange(min=0), metavar="N", help="Freeze every top-level layer but the last N."
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    metavar="NAME_OR_GLOB",
    help="Freeze layers by name or glob (repeatable); BASE/NAME reaches inside a base.",
)
@click.option("--unfreeze", multiple=True, metavar="NAME_OR_GLOB", help="Keep these trainable; wins over freezing.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The frozen model, a .keras file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@result_format_option
def freeze(source, weights, all_but_last, layers, unfreeze, output, overwrite, fmt):
    """Freeze layers of a model and save it: training it afterwards moves only the rest.

    Frozen BatchNormalization layers run in inference mode. In a spec, a 'freeze:' section
    does the same for 'seq train'.
    """
    from seqcli.verbs.freeze import freeze_file

    if all_but_last is None and not layers:
        raise click.UsageError("give --all-but-last N or --layer NAME_OR_GLOB")
    request = {"all_but_last": all_but_last, "layers": list(layers), "unfreeze": list(unfreeze)}
    report = freeze_file(source, output, request, weights=weights, overwrite=overwrite)
    if fmt == "json":
        return echo_json({"output": str(output), **report.as_dict()})
    for line in report.lines():
        echo_text(line)
    echo_text(f"Wrote {output}")


def _artifact_help() -> str:
    from seqcli.verbs.export_formats import FORMATS

    picked = ", ".join(f"{row.suffix} -> {row.name}" for row in FORMATS.values() if row.suffix)
    return f"Artifact format.  [default: from --output: {picked}, else saved_model]"


def _format_names() -> list[str]:
    from seqcli.verbs.export_formats import FORMATS

    return list(FORMATS)


def _export_spellings(fmt: str, artifact: str | None, as_json: bool) -> tuple[str, str | None]:
    """``(result format, artifact)`` from export's options, the older spellings included: ``--format onnx``
    (an artifact, now ``--to onnx``) and ``--json`` (now ``--format json``), each with one note saying so."""
    if fmt in _format_names():
        if artifact is not None and artifact != fmt:
            raise click.UsageError(f"--format {fmt} and --to {artifact} name two artifacts; give --to only")
        echo_text(f"note: '--format {fmt}' is now spelled '--to {fmt}'", err=True)
        fmt, artifact = "text", fmt
    if as_json:
        echo_text("note: '--json' is now spelled '--format json'", err=True)
        fmt = "json"
    return fmt, artifact


@seq_command("export")
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--to", "artifact", type=click.Choice(_format_names()), help=_artifact_help())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", *_format_names()]),
    metavar="[text|json]",
    default="text",
    show_default=True,
    help="Print the result as text, or as JSON on stdout (progress goes to stderr).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(),
    help="The artifact: for saved_model a folder in TF Serving's layout (OUTPUT/VERSION/), else a file "
    "(model.tflite, model.onnx).",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="saved_model: the version folder TF Serving loads (OUTPUT/N); an OUTPUT seq exported to keeps the others.",
)
@click.option(
    "--data",
    "source",
    metavar="SOURCE",
    help=source_help("Inputs to verify with") + "  [default: the run's data]",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    metavar="N",
    help="Real inputs compared between Keras and the exported model (as many random ones in their range are added).",
)
@click.option("--overwrite", is_flag=True, help="Replace what is already at --output (or its --version).")
@click.option("--json", "as_json", is_flag=True, hidden=True)  # the older spelling of --format json
def export_command(target, artifact, fmt, output, version, source, samples, overwrite, as_json):
    """Export a trained run (or a .keras model) for TF Serving, LiteRT or ONNX runtimes.

    The artifact is loaded back in its own runtime and must predict what the Keras model predicts
    on real inputs (within 1e-5) before it appears at --output; otherwise nothing is written.
    Its input and output are named after the spec's Input (else 'inputs') and 'outputs' in every
    format. A model a format cannot hold is refused before any work. ONNX needs: pip install 'seqcli[onnx]'.
    """
    from seqcli.verbs.export import export_model
    from seqcli.views.progress import stage_display
    from seqcli.views.render import literal

    fmt, artifact = _export_spellings(fmt, artifact, as_json)
    console = stderr_console()
    with stage_display(console, "export") as stage:
        result = export_model(
            target,
            output,
            fmt=artifact,
            data=source,
            samples=samples,
            overwrite=overwrite,
            version=version,
            stage=stage,
        )
    for warning in result.warnings:
        console.print(literal(f"warning: {warning}", "yellow", limit=None))
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        echo_text("\n".join(result.lines()))
