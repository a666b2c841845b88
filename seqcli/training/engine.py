"""``seq train``: a spec in, a run directory out, and nothing lost on the way.

Under multi-worker training only the chief's files land in the run directory
(:func:`seqcli.distribute.chief_output_dir`). The checkpoint that marks a run finished is written after
its result files; resuming a finished run whose result files are gone writes them again from that
checkpoint. Resuming compares the spec and the files it reads with the checkpoint's record
(:mod:`seqcli.training.resume`) and never trains fewer epochs than the run has started.

Batches come from :class:`seqcli.data.Datasets`, whose order for epoch ``k`` is a pure function of
``(seed, k)``. A checkpoint (:mod:`seqcli.training.checkpoint`) records weights, optimizer and metric
state, the seed-generator states and the position inside the epoch; resuming feeds that epoch less the
batches already done, so a resumed run takes exactly the optimizer steps an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

from seqcli.outputs import claim_output, clean_stale
from seqcli.specfile import Spec, read_spec
from seqcli.specfile.paths import absolute_file_fields, file_fields
from seqcli.stages import stage
from seqcli.training.checkpoint import TrainingState
from seqcli.training.events import Reporter, TrainOptions, TrainResult
from seqcli.training.loop import Trainer
from seqcli.training.results import final_metrics
from seqcli.training.resume import require_checkpoint, resume_state
from seqcli.training.rundir import RunDirectory
from seqcli.training.setup import prepare_training, static_problems
from seqcli.training.signals import SignalGuard


def train_spec(options: TrainOptions, reporter: Reporter | None = None) -> TrainResult:
    """Train the spec's model into its run directory, resuming when asked; see the module docstring.

    Every spec problem (structure, layers, compile names, data that does not fit the model) is reported
    together as one SpecError before training starts, and so is an output directory that cannot be written.
    """
    reporter = reporter or Reporter()
    with stage("spec: read and validate"):
        spec = read_spec(options.spec, options.spec_overrides())
    run = RunDirectory(Path(options.output) if options.output else Path("runs") / spec.display_name)
    inputs = run_inputs(spec, options.spec)
    if options.resume:  # a run resumed from its own spec copy, which resuming writes again unchanged
        inputs = [path for path in inputs if path.resolve() != run.spec.resolve()]
    if options.resume:
        require_checkpoint(run)  # before anything is written or cleaned in a folder that may hold no run
    rule = {"overwrite": options.overwrite, "own_ok": True, "resume": options.resume}
    with claim_output(run.path, "seq train", folder=True, inputs=inputs, adopt=run.adopt_killed_logs, **rule):
        run.create()
        clean_stale(run.path, every_process=True)
        try:
            return _train(spec, options, run, reporter)
        finally:
            with stage("run folder: seal the manifest"):
                run.seal()  # what this process wrote, as it left it


def run_inputs(spec: Spec, spec_path: str | Path) -> list[Path]:
    """The files a run reads (the spec, data, weights, saved models), which its directory may not hold."""
    try:
        data = absolute_file_fields(spec.resolved(), spec.base_dir)
    except Exception:  # a spec too broken to resolve: its problems are reported by training
        data = {}
    return [Path(spec_path), *(path for field in file_fields(data) for path in field.files(Path.cwd()))]


def _train(spec: Spec, options: TrainOptions, run: RunDirectory, reporter: Reporter) -> TrainResult:
    if spec.problems:
        raise spec.error(spec.problems + static_problems(spec))
    with stage("run folder: read any checkpoint to resume"):
        state, note = resume_state(spec, run, resume=options.resume, overwrite=options.overwrite)
    complete = state is not None and state.finished and (state.stopped_early or state.epoch >= spec.train.epochs)
    if state is not None and complete and run.has_results():
        if note:  # the damaged last checkpoint was replaced by the one before it: say so here too
            reporter.note(note)
        return _completed_result(run, state)
    replaces_run = not options.resume and run.holds_run()
    with SignalGuard() as guard:
        try:
            setup = prepare_training(spec, run, state)
            setup.notes += [note] if note else []
            trainer = Trainer(setup, reporter, guard, spec_label=options.spec)
            return trainer.rewrite_results() if complete else trainer.train(replaces_run=replaces_run)
        finally:
            reporter.close()


def _completed_result(run: RunDirectory, state: TrainingState) -> TrainResult:
    history = state.history
    return TrainResult(
        output=run.path,
        history=history,
        metrics=final_metrics(history, state.early_stopping),
        epochs_done=state.epoch,
        epochs=state.epochs,
        stopped_early=state.stopped_early,
        best_epoch=(state.early_stopping or {}).get("best_epoch"),
        elapsed=state.elapsed,
        files=run.files(),
        already_complete=True,
    )
