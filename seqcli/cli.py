"""The ``seq`` command line: click only. Each command parses options, calls one core function,
renders the result, and turns SeqError into a clear message and an :class:`ExitStatus`."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys

import click
from rich.console import Console

from seqcli.errors import SeqError, SpecError
from seqcli.exit_status import ExitStatus


def stdout_console() -> Console:
    """Rich console for tables; piped output gets a fixed 120 columns unless COLUMNS says otherwise."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


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
            message = " ".join(str(error).split())[:300] or "(no message)"
            click.echo(f"error: unexpected {type(error).__name__}: {message}\n"
                       "  hint: this is a bug in seq, or an input it does not check yet; run again with "
                       "SEQ_DEBUG=1 for the traceback and report it", err=True)
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

    return click.option("--allow-path", "allow_paths", multiple=True, metavar="DIR",
                        type=click.Path(file_okay=False),
                        help=f"Let specs read files in DIR too (repeatable); a spec reads files inside its own "
                             f"folder only. Also SEQ_ALLOW_PATH (folders separated by '{os.pathsep}').")(wrapper)


def set_max_memory(ctx, param, value: str | None):
    from seqcli.limits import configure

    try:
        configure(value)
    except SeqError as error:
        raise click.BadParameter(error.message.removeprefix("--max-memory: ")) from None
    return value


def memory_option(command):
    """``--max-memory SIZE``: the budget checked before reading inputs and building real weights."""
    return click.option("--max-memory", callback=set_max_memory, expose_value=False, metavar="SIZE",
                        help="Refuse inputs and models estimated to need more memory than SIZE (e.g. 8G).  "
                             "[default: 70% of the memory available, or $SEQ_MAX_MEMORY]")(command)


def result_format_option(command):
    """``--format text|json``: the result for people, or as one JSON document on stdout (progress and notes
    then go to stderr), for the commands that print a result."""
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        help="Print the result as text, or as JSON on stdout (progress goes to stderr).")(command)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


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


def disable_color(ctx, param, value: bool) -> None:
    """--no-color: the NO_COLOR convention (https://no-color.org), which rich honours, for this process."""
    if value:
        os.environ["NO_COLOR"] = "1"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="seqcli", prog_name="seq")
@click.option("--no-color", is_flag=True, expose_value=False, is_eager=True, callback=disable_color,
              help="Plain text without colors (also: the NO_COLOR environment variable).")
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
@allow_path_option
@fail_on_seq_error
def summary(spec, input_shape, upto, fmt, overrides):
    """Show the model a SPEC builds: layers, output shapes, parameters, expectations.

    No weights are allocated, so this is fast for any model size.
    """
    from seqcli.render import summary_table
    from seqcli.report import inspect_spec

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
@allow_path_option
@fail_on_seq_error
def check(specs, fmt):
    """Validate and build each SPEC and compare every 'expect'. Exit 1 if any fails.

    Made for CI: 'seq check specs/*.yaml --format github' annotates pull requests.
    """
    from seqcli import render
    from seqcli.report import inspect_spec

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
        sys.exit(ExitStatus.ERROR)


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the schema to a file.")
@fail_on_seq_error
def schema(output):
    """Print the spec format as a JSON Schema, for editor completion and checks."""
    from seqcli.spec.schema import spec_schema

    text = json.dumps(spec_schema(), indent=2)
    if output:
        from seqcli.files import write_text_atomic

        try:
            write_text_atomic(output, text + "\n")
        except OSError as error:
            raise SeqError(f"cannot write the schema to {output}: {error.strerror or error}",
                           hint="choose another --output") from None
    else:
        click.echo(text)


# --- extract / freeze / transfer (feature extraction and transfer learning) -------------------------------


def sample_progress(total: int):
    """A rich progress bar on stderr when it is a terminal; nothing otherwise (logs stay clean)."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=stderr_console(), transient=True) as progress:
            task = progress.add_task("samples", total=total)
            yield lambda done: progress.update(task, completed=done)

    return bar()


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Trained weights: a .weights.h5 or .keras file. Without it, layers keep their spec weights.")
@click.option("--data", "source", required=True, metavar="SOURCE",
              help="Inputs: an .npz/.npy/.csv file, an image folder, or a Keras dataset such as mnist:test.")
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="A layer to extract (repeatable); BASE/NAME reaches inside a pretrained base.")
@click.option("--all", "all_layers", is_flag=True, help="Extract every top-level layer.")
@click.option("--output", "-o", required=True, type=click.Path(),
              help="FEATURES.npz (one array per layer), or a directory for one .npy file per layer.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Samples per batch (default: data.batch_size).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output (only what seq wrote).")
@result_format_option
@allow_path_option
@memory_option
@fail_on_seq_error
def extract(spec, weights, source, layers, all_layers, output, batch_size, overrides, overwrite, fmt):
    """Extract features: the outputs of named layers (or all) for every sample of the data.

    The guide's feature extractor, keras.Model(inputs, outputs=[...]), streamed to disk batch by
    batch, so memory stays flat however many samples there are. Arrays are keyed by layer name.
    """
    from seqcli.extract import run_extract
    from seqcli.shapes import shape_text

    if bool(layers) == all_layers:
        raise click.UsageError("give --layer NAME (one or more) or --all")
    if weights is None:
        click.echo("note: no --weights; layers keep the weights the spec gives them (pretrained bases) or "
                   "a fresh initialization", err=True)
    result = run_extract(spec, data=source, output=output, layers=list(layers) or None, weights=weights,
                         batch_size=batch_size, overrides=list(overrides), overwrite=overwrite,
                         progress_factory=sample_progress)
    if fmt == "json":
        return echo_json(result.as_dict())
    for name, shape in result.shapes.items():
        click.echo(f"{name}: {shape_text(shape)} {result.dtypes[name]}")
    click.echo(f"Wrote features of {result.count:,} samples to {result.output}")


@cli.command()
@click.argument("source", metavar="SPEC_OR_MODEL", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights to load first: .weights.h5 or .keras.")
@click.option("--all-but-last", type=click.IntRange(min=0), metavar="N",
              help="Freeze every top-level layer but the last N.")
@click.option("--layer", "layers", multiple=True, metavar="NAME_OR_GLOB",
              help="Freeze layers by name or glob (repeatable); BASE/NAME reaches inside a base.")
@click.option("--unfreeze", multiple=True, metavar="NAME_OR_GLOB", help="Keep these trainable; wins over freezing.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The frozen model, a .keras file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@result_format_option
@allow_path_option
@memory_option
@fail_on_seq_error
def freeze(source, weights, all_but_last, layers, unfreeze, output, overwrite, fmt):
    """Freeze layers of a model and save it: training it afterwards moves only the rest.

    Frozen BatchNormalization layers run in inference mode. In a spec, a 'freeze:' section
    does the same for 'seq train'.
    """
    from seqcli.freeze import freeze_file

    if all_but_last is None and not layers:
        raise click.UsageError("give --all-but-last N or --layer NAME_OR_GLOB")
    request = {"all_but_last": all_but_last, "layers": list(layers), "unfreeze": list(unfreeze)}
    report = freeze_file(source, output, request, weights=weights, overwrite=overwrite)
    if fmt == "json":
        return echo_json({"output": str(output), **report.as_dict()})
    for line in report.lines():
        click.echo(line)
    click.echo(f"Wrote {output}")


# --- train / evaluate / predict ------------------------------------------------------------------------------


def parse_devices(ctx, param, value: str | None):
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@cli.command("train")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Run directory.  [default: runs/SPEC_NAME]")
@click.option("--epochs", type=click.IntRange(min=1), metavar="N", help="Train N epochs (sets train.epochs).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --output (only what seq wrote).")
@click.option("--strategy", type=click.Choice(["auto", "one_device", "mirrored", "multi_worker"]),
              help="Distribution strategy (sets distribute.strategy).")
@click.option("--devices", callback=parse_devices, metavar="LIST", help="Devices to use, e.g. /cpu:0,/cpu:1.")
@click.option("--virtual-cpus", type=click.IntRange(min=1), metavar="N", help="Split the CPU into N devices.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (and the --format json result).")
@result_format_option
@allow_path_option
@memory_option
@fail_on_seq_error
def train_command(spec, output, epochs, overrides, resume, overwrite, strategy, devices, virtual_cpus, quiet, fmt):
    """Train the model a SPEC describes on its data, into a run directory.

    The run directory gets model.keras, the spec as trained, history.csv, metrics.json, curves.png,
    TensorBoard logs and checkpoints. Ctrl-C (or SIGTERM) saves a checkpoint and prints the command
    that resumes the run exactly where it stopped; so does --resume after a crash.
    """
    from seqcli.progress import make_reporter, result_table
    from seqcli.training import TrainingInterrupted, TrainOptions, train_spec

    options = TrainOptions(spec, output, epochs, list(overrides), resume, overwrite, strategy, devices, virtual_cpus)
    console = stderr_console() if fmt == "json" else stdout_console()
    try:
        result = train_spec(options, make_reporter(console, quiet=quiet))
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:
            stop.resume_command = resume_command(
                "train", spec, output=stop.output, overrides=overrides,
                flags={"--epochs": epochs, "--strategy": strategy, "--devices": ",".join(devices or []) or None,
                       "--virtual-cpus": virtual_cpus})
        raise
    if fmt == "json":
        echo_json(result.as_dict())
    elif not quiet:
        console.print(result_table(result))


@cli.command()
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--data", "source", metavar="SOURCE",
              help="Data with labels: .npz/.csv file, image folder, or e.g. mnist:test.  "
                   "[default: the run's data.test, else its validation data]")
@click.option("--spec", type=click.Path(dir_okay=False), help="Take loss, metrics and data from this spec.")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Samples per batch.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@allow_path_option
@memory_option
@fail_on_seq_error
def evaluate(target, source, spec, batch_size, fmt):
    """Evaluate a trained run (or a .keras model) on a data source: loss and metrics.

    The model is loaded in Keras safe mode.
    """
    from seqcli.predict import evaluate_model
    from seqcli.progress import evaluation_view

    result = evaluate_model(target, data=source, spec=spec, batch_size=batch_size)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        stdout_console().print(evaluation_view(result))


@cli.command()
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--data", "source", required=True, metavar="SOURCE", help="Inputs: .npz/.npy/.csv, image folder...")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="PREDICTIONS.npy (raw outputs) or .csv (predicted class, then each output).")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="N", help="Samples per batch.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@memory_option
@fail_on_seq_error
def predict(target, source, output, batch_size, overwrite):
    """Predict with a trained run (or a .keras model) on a data source; write .npy or .csv.

    The model is loaded in Keras safe mode; the output file appears atomically when complete.
    """
    from seqcli.predict import predict_to_file
    from seqcli.shapes import shape_text

    result = predict_to_file(target, data=source, output=output, batch_size=batch_size, overwrite=overwrite)
    click.echo(f"Wrote {result.count:,} predictions of shape {shape_text(result.shape)} to {result.output}")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory for the phases: OUTPUT/phase1, OUTPUT/phase2.")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Pretrained weights of the whole model (.weights.h5 or .keras); sets transfer.weights.")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Phase one epochs.  [default: transfer.epochs, else train.epochs]")
@click.option("--fine-tune-layers", type=click.IntRange(min=1), metavar="N",
              help="Phase two: unfreeze the top N layers of the base.  [default: transfer.fine_tune.layers]")
@click.option("--fine-tune-epochs", type=click.IntRange(min=1), metavar="K",
              help="Phase two epochs.  [default: transfer.fine_tune.epochs, else 1]")
@click.option("--fine-tune-lr", type=click.FloatRange(min=0, min_open=True), metavar="LR",
              help="Phase two learning rate.  [default: transfer.fine_tune.learning_rate, else 1e-5]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--resume", is_flag=True, help="Continue: finished phases are kept, an interrupted one resumes.")
@click.option("--overwrite", is_flag=True, help="Replace the runs already in --output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (and the --format json result).")
@result_format_option
@allow_path_option
@memory_option
@fail_on_seq_error
def transfer(spec, output, weights, epochs, fine_tune_layers, fine_tune_epochs, fine_tune_lr, overrides, resume,
             overwrite, quiet, fmt):
    """Transfer learning, the guide's two blueprints: freeze, train the rest, optionally fine-tune.

    Without a pretrained base in the spec: load --weights into the model, freeze all layers but
    the last, train. With a base (e.g. '- Xception: {weights: imagenet, include_top: false}'):
    train the head with the base frozen, then, with --fine-tune-layers N, unfreeze the top N
    layers of the base and fine-tune at a low learning rate. Each phase resumes like 'seq train'.
    """
    from seqcli.progress import make_reporter, result_table
    from seqcli.training import TrainingInterrupted
    from seqcli.transfer import TransferOptions, plan_transfer, run_transfer

    options = TransferOptions(spec, output, weights, epochs, fine_tune_layers, fine_tune_epochs, fine_tune_lr,
                              list(overrides), resume, overwrite)
    console = stderr_console() if fmt == "json" else stdout_console()
    plan = plan_transfer(options)

    def reporter_for(phase):
        if not quiet:
            console.print(f"[bold]Phase {phase.number} of {len(plan.phases)}: {phase.title}[/bold]")
            for line in phase.freeze_lines:
                console.print(line, highlight=False)
        return make_reporter(console, quiet=quiet)

    try:
        result = run_transfer(options, reporter_for=reporter_for, plan=plan)
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:
            stop.resume_command = resume_command(
                "transfer", spec, output=output, overrides=overrides,
                flags={"--weights": weights, "--epochs": epochs, "--fine-tune-layers": fine_tune_layers,
                       "--fine-tune-epochs": fine_tune_epochs, "--fine-tune-lr": fine_tune_lr})
        raise
    if fmt == "json":
        echo_json(result.as_dict())
    elif not quiet:
        for phase_result in result.results:
            console.print(result_table(phase_result))


@cli.command("tune")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False),
              help="Study directory: trial-NNNN/ runs, trials.csv, study.json, trials.png, best.yaml.  "
                   "[default: runs/SPEC_NAME-tune]")
@click.option("--trials", type=click.IntRange(min=1), metavar="N", help="Trials in all (sets tune.trials).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Worker processes on this machine, each training one trial at a time.")
@click.option("--storage", metavar="URL", help="Study database shared by several machines, e.g. "
              "postgresql://user@host/db.  [default: sqlite:///OUTPUT/study.db]")
@click.option("--resume", is_flag=True, help="Continue the study in --output (or --storage) to its total.")
@click.option("--worker-index", type=int, hidden=True)
@result_format_option
@fail_on_seq_error
def tune_command(spec, output, trials, workers, storage, resume, worker_index, fmt):
    """Search the spec's 'tune:' space with Optuna; every trial is a seq run in OUTPUT/trial-NNNN.

    The space is checked before the first trial (every path, type, choice and bound). Rerun the
    same command, or add --resume, to continue a study to its total; a trial cut off mid-way is
    trained again from its checkpoint. Ctrl-C checkpoints the current trial and exits 130.
    """
    from seqcli.progress import TuneLines
    from seqcli.render import tune_table
    from seqcli.tune.runner import TuneInterrupted, TuneOptions, tune_spec

    console = stderr_console() if fmt == "json" else stdout_console()
    options = TuneOptions(spec, output, trials, workers, storage, resume, worker_index,
                          workers_print_to_stderr=fmt == "json")
    try:
        result = tune_spec(options, TuneLines(console, prefix=f"[worker {worker_index}] " if worker_index is not None
                                              else ""))
    except TuneInterrupted as stop:
        stop.resume_command = resume_command("tune", spec, output=stop.output, overrides=[], flags={
            "--storage": storage, "--trials": trials, "--workers": workers if workers != 1 else None})
        raise
    if result is None:
        return
    if fmt == "json":
        return echo_json(result.as_dict())
    console.print(tune_table(result))
    if result.best is not None:
        console.print(f"Best: trial {result.best['trial']}, {result.objective} {result.best['value']:.6g}")
    for path in result.files:
        console.print(f"Wrote {path}", highlight=False)


def resume_command(verb: str, spec: str, *, output, overrides, flags: dict) -> str:
    """The command that resumes an interrupted ``seq train`` or ``seq transfer`` with the same options."""
    words = ["seq", verb, spec, "--output", str(output)]
    for flag, value in flags.items():
        if value is not None:
            words += [flag, str(value)]
    for override in overrides:
        words += ["--set", override]
    return shlex.join([*words, "--resume"])


# --- export / plot / import / init (deployment and tools) ----------------------------------------------------


@cli.command("export")
@click.argument("target", metavar="RUN_OR_MODEL", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["saved_model", "tflite", "onnx"]),
              help="Artifact format (for JSON output use --json).  "
                   "[default: from --output: .tflite, .onnx, else saved_model]")
@click.option("--output", "-o", required=True, type=click.Path(), help="The artifact: a folder for saved_model, "
              "else a file (model.tflite, model.onnx).")
@click.option("--data", "source", metavar="SOURCE",
              help="Inputs to verify with: .npz/.npy/.csv, image folder...  [default: the run's data]")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True, metavar="N",
              help="Inputs compared between Keras and the exported model.")
@click.option("--overwrite", is_flag=True, help="Replace what is already at --output.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (here --format names the artifact, so JSON has its own flag).")
@fail_on_seq_error
def export_command(target, fmt, output, source, samples, overwrite, as_json):
    """Export a trained run (or a .keras model) for TF Serving, LiteRT or ONNX runtimes.

    The artifact is loaded back in its own runtime and must predict what the Keras model predicts
    on real inputs (within 1e-5) before it appears at --output; otherwise nothing is written.
    ONNX needs: pip install 'seqcli[onnx]'.
    """
    from seqcli.export import export_model

    result = export_model(target, output, fmt=fmt, data=source, samples=samples, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo("\n".join(result.lines()))


@cli.command("plot")
@click.argument("source", metavar="SPEC_OR_RUN", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="The image: .png or .svg.")
@click.option("--curves", is_flag=True, help="Training curves of a run directory (the default for a run).")
@click.option("--engine", type=click.Choice(["matplotlib", "graphviz"]), default="matplotlib", show_default=True,
              help="graphviz uses keras.utils.plot_model and needs the 'dot' program.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@fail_on_seq_error
def plot_command(source, output, curves, engine, overwrite):
    """Draw a spec's (or a .keras model's) architecture, a run's training curves, or a tuning study's
    objective over trials (a 'seq tune' output folder: each trial and the best so far).

    One box per layer with its name, class, output shape and parameters; frozen layers are grey and
    dashed, a pretrained base is one box. A spec is drawn without allocating weights.
    """
    from seqcli.plot import plot

    result = plot(source, output, curves=curves, engine=engine, overwrite=overwrite)
    click.echo(f"Wrote {result.description()} to {result.output}")


@cli.command("import")
@click.argument("model", metavar="MODEL.keras", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the spec here instead of stdout.")
@click.option("--weights-out", type=click.Path(dir_okay=False), metavar="W.weights.h5",
              help="Also write the model's weights, for 'seq train --set' or 'seq extract --weights'.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output or --weights-out.")
@fail_on_seq_error
def import_command(model, output, weights_out, overwrite):
    """Turn a saved Keras Sequential model into a spec that builds the same model.

    The model is loaded in safe mode. Arguments equal to Keras's defaults are left out; a model
    a spec cannot express (a Lambda, a functional graph, a custom class) is refused, naming the layer.
    """
    from seqcli.importer import import_model

    result = import_model(model, output=output, weights_out=weights_out, overwrite=overwrite)
    if output is None:
        click.echo(result.text, nl=False)
    else:
        params = "unbuilt" if result.params is None else f"{result.params:,} params"
        click.echo(f"Wrote the spec of '{result.model}' ({result.layers} layers, {params}) to {output}", err=True)
    if result.weights is not None:
        click.echo(f"Wrote its weights to {result.weights}", err=True)


@cli.command("init")
@click.argument("kind", type=click.Choice(["mlp", "cnn", "transfer"]))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@fail_on_seq_error
def init_command(kind, file, force):
    """Write a commented starter spec (mlp, cnn or transfer) that trains on a Keras dataset.

    The spec passes 'seq check' as written; its first line points editors at the schema
    ('seq schema -o seq.schema.json' beside it enables completion).
    """
    from seqcli.starters import write_starter

    starter = write_starter(kind, file, force=force)
    click.echo(f"Wrote the {starter.kind} starter '{starter.name}' to {starter.path}")
    click.echo(f"Next: seq check {starter.path} && seq train {starter.path}")


def main():
    cli(prog_name="seq")


__all__ = ["cli", "main", "SpecError"]
