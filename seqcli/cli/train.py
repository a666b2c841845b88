"""Commands that train: train, transfer, tune; an interrupted one prints the command that resumes it
(:func:`seqcli.cli.options.replay`)."""

from __future__ import annotations

import click

from seqcli.cli.options import (
    echo_json,
    result_format_option,
    seq_command,
    shared_words,
    stderr_console,
    stdout_console,
)


def parse_devices(ctx, param, value: str | None):
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@seq_command("train")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Run directory.  [default: runs/SPEC_NAME]")
@click.option("--epochs", type=click.IntRange(min=1), metavar="N", help="Train N epochs (sets train.epochs).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --output (only what seq wrote).")
@click.option(
    "--strategy",
    type=click.Choice(["auto", "one_device", "mirrored", "multi_worker"]),
    help="Distribution strategy (sets distribute.strategy).",
)
@click.option("--devices", callback=parse_devices, metavar="LIST", help="Devices to use, e.g. /cpu:0,/cpu:1.")
@click.option("--virtual-cpus", type=click.IntRange(min=1), metavar="N", help="Split the CPU into N devices.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (and the --format json result).")
@result_format_option
def train_command(spec, output, epochs, overrides, resume, overwrite, strategy, devices, virtual_cpus, quiet, fmt):
    """Train the model a SPEC describes on its data, into a run directory.

    The run directory gets model.keras, the spec as trained, history.csv, metrics.json, curves.png,
    TensorBoard logs and checkpoints. Ctrl-C (or SIGTERM) saves a checkpoint and prints the command
    that resumes the run exactly where it stopped; so does --resume after a crash.
    """
    from seqcli.training import TrainOptions, train_spec
    from seqcli.views.progress import make_reporter, result_table

    options = TrainOptions(
        spec,
        output=output,
        epochs=epochs,
        overrides=list(overrides),
        resume=resume,
        overwrite=overwrite,
        strategy=strategy,
        devices=devices,
        virtual_cpus=virtual_cpus,
    )
    console = stderr_console() if fmt == "json" else stdout_console()
    result = train_spec(options, make_reporter(console, quiet=quiet))
    if fmt == "json":
        echo_json(result.as_dict())
    elif not quiet:
        console.print(result_table(result))


@seq_command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for the phases: OUTPUT/phase1, OUTPUT/phase2.",
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="Pretrained weights of the whole model (.weights.h5 or .keras); sets transfer.weights.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), help="Phase one epochs.  [default: transfer.epochs, else train.epochs]"
)
@click.option(
    "--fine-tune-layers",
    type=click.IntRange(min=1),
    metavar="N",
    help="Phase two: unfreeze the top N layers of the base.  [default: transfer.fine_tune.layers]",
)
@click.option(
    "--fine-tune-epochs",
    type=click.IntRange(min=1),
    metavar="K",
    help="Phase two epochs.  [default: transfer.fine_tune.epochs, else 1]",
)
@click.option(
    "--fine-tune-lr",
    type=click.FloatRange(min=0, min_open=True),
    metavar="LR",
    help="Phase two learning rate.  [default: transfer.fine_tune.learning_rate, else 1e-5]",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("--resume", is_flag=True, help="Continue: finished phases are kept, an interrupted one resumes.")
@click.option("--overwrite", is_flag=True, help="Replace the runs already in --output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (and the --format json result).")
@result_format_option
def transfer(
    spec,
    output,
    weights,
    epochs,
    fine_tune_layers,
    fine_tune_epochs,
    fine_tune_lr,
    overrides,
    resume,
    overwrite,
    quiet,
    fmt,
):
    """Transfer learning, the guide's two blueprints: freeze, train the rest, optionally fine-tune.

    Without a pretrained base in the spec: load --weights into the model, freeze all layers but
    the last, train. With a base (e.g. '- Xception: {weights: imagenet, include_top: false}'):
    train the head with the base frozen, then, with --fine-tune-layers N, unfreeze the top N
    layers of the base and fine-tune at a low learning rate. Each phase resumes like 'seq train'.
    """
    from seqcli.verbs.transfer import TransferOptions, plan_transfer, run_transfer
    from seqcli.views.progress import make_reporter, result_table
    from seqcli.views.render import literal

    options = TransferOptions(
        spec,
        output=output,
        weights=weights,
        epochs=epochs,
        fine_tune_layers=fine_tune_layers,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_lr=fine_tune_lr,
        overrides=list(overrides),
        resume=resume,
        overwrite=overwrite,
    )
    console = stderr_console() if fmt == "json" else stdout_console()
    plan = plan_transfer(options)

    def reporter_for(phase):
        if not quiet:
            console.print(literal(f"Phase {phase.number} of {len(plan.phases)}: {phase.title}", "bold"))
            for line in phase.freeze_lines:
                console.print(literal(line))
        return make_reporter(console, quiet=quiet)

    result = run_transfer(options, reporter_for=reporter_for, plan=plan)
    if fmt == "json":
        echo_json(result.as_dict())
    elif not quiet:
        for phase_result in result.results:
            console.print(result_table(phase_result))


@seq_command("tune")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    help="Study directory: trial-NNNN/ runs, trials.csv, study.json, trials.png, best.yaml.  "
    "[default: runs/SPEC_NAME-tune]",
)
@click.option("--trials", type=click.IntRange(min=1), metavar="N", help="Trials in all (sets tune.trials).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Worker processes on this machine, each training one trial at a time.",
)
@click.option(
    "--storage",
    metavar="URL",
    help="Study database shared by several machines, e.g. "
    "postgresql://user@host/db.  [default: sqlite:///OUTPUT/study.db]",
)
@click.option("--resume", is_flag=True, help="Continue the study in --output (or --storage) to its total.")
@click.option("--worker-index", type=int, hidden=True)
@result_format_option
def tune_command(spec, output, trials, workers, storage, resume, worker_index, fmt):
    """Search the spec's 'tune:' space with Optuna; every trial is a seq run in OUTPUT/trial-NNNN.

    The space is checked before the first trial (every path, type, choice and bound). Rerun the
    same command, or add --resume, to continue a study to its total; a trial cut off mid-way is
    trained again from its checkpoint. Ctrl-C checkpoints the current trial and exits 130.
    """
    from seqcli.tune.runner import TuneOptions, tune_spec
    from seqcli.views.progress import TuneLines
    from seqcli.views.render import literal, tune_table

    console = stderr_console() if fmt == "json" else stdout_console()
    options = TuneOptions(
        spec,
        output=output,
        trials=trials,
        workers=workers,
        storage=storage,
        resume=resume,
        worker_index=worker_index,
        workers_print_to_stderr=fmt == "json",
        shared_arguments=shared_words(click.get_current_context()),
    )
    result = tune_spec(
        options, TuneLines(console, prefix=f"[worker {worker_index}] " if worker_index is not None else "")
    )
    if result is None:
        return
    if fmt == "json":
        return echo_json(result.as_dict())
    console.print(tune_table(result))
    if result.best is not None:
        console.print(literal(f"Best: trial {result.best['trial']}, {result.objective} {result.best['value']:.6g}"))
    for path in result.files:
        console.print(literal(f"Wrote {path}"))
