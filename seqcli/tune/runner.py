"""``seq tune``: check the space, open the study, run trials with seq's own training loop, write the results.

Each trial is an ordinary run directory ``OUTPUT/trial-NNNN/`` made by :func:`seqcli.training.train_spec`
(resolved spec.yaml, history, model; ``seq evaluate`` accepts it), trained at the trial's values with
``--set`` overrides, ``tune.epochs`` and one seed for all trials. Trials run inside the worker process, so
TensorFlow is imported once per worker; ``--workers N`` starts N worker processes on this machine against
the same study, and the same command on other machines with one ``--storage`` URL joins them.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from seqcli.errors import Interrupted, SeqError
from seqcli.manifest import MANIFEST, Manifest, Member, judge, record_members, refusal, seal, writing
from seqcli.outputs import claim_output
from seqcli.specfile import Spec, read_spec
from seqcli.training import Reporter, TrainingInterrupted, TrainOptions, train_spec
from seqcli.tune.folder import TRIAL_NAME, StudyFolder
from seqcli.tune.outputs import TuneResult, write_outputs
from seqcli.tune.space import Parameter, check_tune, direction_of, epochs_of, parameters_of, seed_of
from seqcli.tune.study import (
    TuneError,
    heartbeat,
    make_storage,
    next_trial,
    open_study,
    reclaim_trials,
    require_optuna,
)


class TuneInterrupted(Interrupted):
    """Ctrl-C or SIGTERM stopped the study; the current trial is checkpointed and will be retried."""


@dataclass
class TuneOptions:
    """What ``seq tune`` was asked to do."""

    spec: str
    _: KW_ONLY
    output: str | None = None
    trials: int | None = None
    workers: int = 1
    storage: str | None = None
    resume: bool = False
    worker_index: int | None = None  # set in the worker processes that --workers starts
    workers_print_to_stderr: bool = False  # keep this process's stdout for its result alone
    shared_arguments: list[str] = field(default_factory=list)  # --allow-path, --max-memory: for the workers too


@dataclass
class TrialEvent:
    """A trial that started or ended, for the display."""

    number: int
    run: str
    params: dict[str, Any]
    state: str = "running"
    value: float | None = None
    seconds: float = 0.0
    note: str | None = None


class TuneReporter:
    """Receives study events; this one ignores them (the CLI prints them)."""

    def study_started(self, plan: TunePlan, done: int) -> None: ...

    def trial_started(self, event: TrialEvent) -> None: ...

    def trial_finished(self, event: TrialEvent) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class TunePlan:
    """The study to run: its spec, space, budget and where everything goes."""

    spec: Spec
    spec_path: str
    output: Path
    storage_url: str
    parameters: list[Parameter]
    objective: str
    direction: str
    total: int
    epochs: int
    seed: int
    pruning: bool


def tune_spec(options: TuneOptions, reporter: TuneReporter | None = None) -> TuneResult | None:
    """Run the study to its total (continuing one that exists) and write its results; a worker process
    (``worker_index`` set) only runs trials and returns None."""
    reporter = reporter or TuneReporter()
    require_optuna()
    plan = plan_study(options)
    if options.worker_index is not None:  # the process that started this worker holds the study folder
        storage = make_storage(plan.storage_url)
        study = open_study(plan.spec, storage, resume=False, sampler_seed=plan.seed)
        _run_worker(plan, study, storage, reporter, options.worker_index, options)
        return None
    folder = StudyFolder(plan.output)
    unrecorded = folder.database.is_file() and not (plan.output / MANIFEST).exists()
    with claim_output(
        plan.output, "seq tune", folder=True, inputs=study_inputs(plan.spec), own_ok=True, resume=unrecorded
    ):
        folder.create()
        if unrecorded:
            _record_study(folder)
        with writing(plan.output, "seq tune", StudyFolder.MEMBERS):
            return _run_study(plan, options, reporter)


def _run_study(plan: TunePlan, options: TuneOptions, reporter: TuneReporter) -> TuneResult:
    """The study's trials (continuing one that exists), in this process or in worker processes, then its
    result files."""
    storage = make_storage(plan.storage_url)
    study = open_study(plan.spec, storage, resume=options.resume, sampler_seed=plan.seed)
    for number in reclaim_trials(study):
        reporter.note(f"trial {number} was cut off (its process is gone); it will be trained again")
    done = _finished_count(study)
    reporter.study_started(plan, done=done)
    workers = min(options.workers, max(plan.total - done, 1))  # a worker with no trial left to train is idle
    if workers > 1:
        _run_worker_processes(plan, options, reporter, workers)
    else:
        _run_worker(plan, study, storage, reporter, 0, options)
    return write_outputs(plan, study)


def _record_study(folder: StudyFolder) -> None:
    """A study folder with a study.db and no manifest (made by an earlier seq, or by Optuna for seq to
    continue): seq's study files and the trial folders that are runs, by their exact names, are recorded as
    they are; anything else there refuses the study."""
    output = folder.path
    names = [name for name in folder.MEMBERS if (output / name).is_file() and not (output / name).is_symlink()]
    names += [
        f"{entry.name}/"
        for entry in output.iterdir()
        if TRIAL_NAME.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()
        if (entry / MANIFEST).is_file()
    ]
    judgement = judge(
        output,
        Manifest("seq tune", {name.rstrip("/"): Member("folder" if name.endswith("/") else "file") for name in names}),
    )
    if judgement.foreign:
        raise refusal(output, judgement, overwrite=False)
    record_members(output, names, "seq tune")
    seal(output, "seq tune")


def study_inputs(spec) -> list[Path]:
    """What a study reads (the spec and the files it names), which its folder may not hold."""
    from seqcli.specfile.paths import file_fields

    return [Path(spec.file), *(spec.base_dir / field.value for field in file_fields(spec.resolved()))]


def plan_study(options: TuneOptions) -> TunePlan:
    """Read the spec and check it and its search space: every problem at once, before any trial."""
    from seqcli.modelbuild import build_model

    spec = read_spec(options.spec)
    if spec.tune is None and not spec.problems:
        raise TuneError(
            f"{options.spec} has no 'tune:' section",
            hint="add for example:\ntune:\n  objective: val_accuracy\n  trials: 20\n  parameters:\n"
            "    layers[1].Dense.units: {choice: [32, 64, 128]}",
        )
    problems = list(spec.problems)
    checked = options.worker_index is not None  # the process that started this worker checked everything
    if not problems and not checked:
        problems += build_model(spec, abstract=True).problems
    if spec.tune is not None and not checked:
        problems += check_tune(spec, base_ok=not problems)
    if problems:
        raise spec.error(problems)
    section = spec.tune
    output = Path(options.output) if options.output else Path("runs") / f"{spec.display_name}-tune"
    parameters = parameters_of(section)
    total = options.trials or section.trials
    grid = [p.grid_values() for p in parameters] if _sampler_name(section) == "grid" else None
    if grid is not None:
        total = min(total, math.prod(len(values) for values in grid))
    check_workers(options.workers, total)
    return TunePlan(
        spec=spec,
        spec_path=options.spec,
        output=output,
        storage_url=options.storage or StudyFolder(output).storage_url,
        parameters=parameters,
        objective=section.objective,
        direction=direction_of(spec),
        total=total,
        epochs=epochs_of(spec),
        seed=seed_of(spec),
        pruning=_pruner_name(section) != "none",
    )


MAX_WORKERS = 64


def workers_limit() -> int:
    """The most worker processes ``--workers`` starts on this machine: one per core, at least 4, at most
    :data:`MAX_WORKERS` (each trains with TensorFlow's own threads and holds its own copy of TensorFlow:
    more only share the cores and the memory)."""
    return min(MAX_WORKERS, max(4, os.cpu_count() or 1))


def check_workers(workers: int, total: int) -> None:
    """TuneError, before any trial, when ``--workers`` is more than this machine's cores or the study's trials."""
    limit = workers_limit()
    if workers > limit:
        raise TuneError(
            f"--workers {workers} is more than this machine can use ({os.cpu_count()} cores; at most {limit})",
            hint=f"use at most {limit}; to run more trials at once, start the same command on other machines "
            "with one --storage URL",
        )
    if workers > total:
        raise TuneError(
            f"--workers {workers} is more than the study's {total} trials: at most {total} would ever train",
            hint=f"use at most {total} workers, or more trials (--trials, tune.trials)",
        )


def _sampler_name(section) -> str:
    return section.sampler if isinstance(section.sampler, str) else next(iter(section.sampler))


def _pruner_name(section) -> str:
    return section.pruner if isinstance(section.pruner, str) else next(iter(section.pruner))


def _finished_count(study) -> int:
    from seqcli.tune.study import finished

    return sum(map(finished, study.get_trials(deepcopy=False)))


# ----------------------------------------------------------------------------- one worker


class _StopBetweenTrials:
    """Outside training, SIGINT and SIGTERM stop the worker before its next trial (training has its own
    SignalGuard, which checkpoints)."""

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _run_worker(plan: TunePlan, study, storage, reporter: TuneReporter, index: int, options: TuneOptions) -> None:
    from optuna.storages import fail_stale_trials

    from seqcli.tune.space import make_sampler

    # Workers (and continued studies) draw different random streams from one seed.
    study.sampler = make_sampler(
        plan.spec.tune, plan.parameters, seed=plan.seed + 7919 * index + len(study.get_trials(deepcopy=False))
    )
    with _StopBetweenTrials() as stop:
        while stop.received is None:
            fail_stale_trials(study)
            trial = next_trial(study, plan.parameters, plan.total)
            if trial is None:
                return
            _run_trial(plan, study, storage, trial, reporter, options)
    raise TuneInterrupted(stop.received, f"{signal.Signals(stop.received).name}: stopped between trials", plan.output)


class _TrialReporter(Reporter):
    """Reports each epoch's objective to the trial and asks the pruner whether to stop it."""

    def __init__(self, trial, plan: TunePlan):
        self.trial, self.plan = trial, plan
        self.pruned: str | None = None

    def stop_after_epoch(self, row: dict[str, Any]) -> str | None:
        value = row.get(self.plan.objective)
        if not isinstance(value, float) or math.isnan(value):
            return None
        self.trial.report(value, step=row["epoch"])
        if self.plan.pruning and row["epoch"] < self.plan.epochs and self.trial.should_prune():
            self.pruned = f"pruned after epoch {row['epoch']}: {self.plan.objective} {value:.4g}"
            return f"trial {self.trial.number} {self.pruned}"
        return None


def _run_trial(plan: TunePlan, study, storage, trial, reporter: TuneReporter, options: TuneOptions) -> None:
    from optuna.trial import TrialState

    run = trial.user_attrs["run"]
    record_members(plan.output, [f"{run}/"], "seq tune")  # before the trial writes it: the study made it
    params = dict(trial.params)
    event = TrialEvent(trial.number, run, params)
    reporter.trial_started(event)
    started = time.perf_counter()
    trial_reporter = _TrialReporter(trial, plan)
    with heartbeat(storage, trial):
        try:
            result = train_spec(_train_options(plan, run, params), trial_reporter)
        except TrainingInterrupted as error:
            from seqcli.tune.study import retry_trial

            retry_trial(study, study.tell(trial, state=TrialState.FAIL))
            raise TuneInterrupted(error.signum, f"trial {trial.number} stopped; {error.message}", plan.output) from None
        except SeqError as error:
            trial.set_user_attr("error", error.message[:500])
            study.tell(trial, state=TrialState.FAIL)
            event.state, event.note = "failed", error.message
        else:
            value = result.metrics.get(plan.objective)
            if trial_reporter.pruned:
                study.tell(trial, state=TrialState.PRUNED)
                event.state, event.note = "pruned", trial_reporter.pruned
            elif not isinstance(value, float) or math.isnan(value):
                trial.set_user_attr("error", f"{plan.objective} is {value!r}")
                study.tell(trial, state=TrialState.FAIL)
                event.state, event.note = "failed", f"{plan.objective} is {value!r}"
            else:
                study.tell(trial, value)
                event.state = "complete"
            event.value = value
    event.seconds = time.perf_counter() - started
    reporter.trial_finished(event)


def _train_options(plan: TunePlan, run: str, params: dict[str, Any]) -> TrainOptions:
    """A trial as ``seq train`` would run it: the spec with the trial's values, tune.epochs, one seed for all."""
    trial_run = StudyFolder(plan.output).trial(run)
    overrides = [p.override(params[p.name]) for p in plan.parameters if p.name in params]
    overrides += ["tune=null", f"train.seed={plan.seed}"]
    resume = trial_run.checkpoint.exists()
    return TrainOptions(
        spec=plan.spec_path,
        output=str(trial_run.path),
        epochs=plan.epochs,
        overrides=overrides,
        resume=resume,
        overwrite=not resume,
    )


# ----------------------------------------------------------------------------- several workers


def _run_worker_processes(plan: TunePlan, options: TuneOptions, reporter: TuneReporter, workers: int) -> None:
    """``workers`` processes (each its own session, so a terminal's Ctrl-C reaches them once, from here)."""
    processes = []
    for index in range(workers):
        command = [
            sys.executable,
            "-m",
            "seqcli",
            "tune",
            plan.spec_path,
            "--output",
            str(plan.output),
            "--storage",
            plan.storage_url,
            "--trials",
            str(plan.total),
            "--worker-index",
            str(index),
            *options.shared_arguments,
        ]
        stdout = sys.stderr.fileno() if options.workers_print_to_stderr else None
        processes.append(subprocess.Popen(command, start_new_session=True, stdout=stdout))
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [process.wait() for process in processes]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received or any(code in (130, 143) for code in codes):
        signum = received[0] if received else signal.SIGINT
        raise TuneInterrupted(signum, "the workers stopped; their trials are checkpointed", plan.output)
    failed = [(index, code) for index, code in enumerate(codes) if code != 0]
    if failed:
        raise TuneError(
            "worker processes failed: " + ", ".join(f"#{i} (exit {c})" for i, c in failed),
            hint="their messages are above; rerun the same command to continue the study",
        )
