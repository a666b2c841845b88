"""``seq train``: a spec in, a run directory out, and nothing lost on the way.

A run directory holds ``model.keras``, ``spec.yaml`` (the spec as trained: overrides applied, file
paths absolute, the seed used), ``history.csv``, ``metrics.json``, ``curves.png``,
``checkpoints/last.npz`` and TensorBoard logs under ``logs/``. Every file is written atomically
(TensorBoard's event files are append-only logs; a cut-off last record is skipped by TensorBoard).
Under multi-worker training only the chief's files land there (:func:`seqcli.distribute.chief_output_dir`).
The checkpoint that marks a run finished is written after its result files; resuming a finished run whose
result files are gone writes them again from that checkpoint. Resuming compares the spec and the files it
reads (data, weights: size and sha256) with the checkpoint's record, and never trains fewer epochs than
the run has started.

Batches come from :class:`seqcli.data.Datasets`, whose order for epoch ``k`` is a pure function of
``(seed, k)``. A checkpoint (see :mod:`seqcli.checkpoint`) records weights, optimizer and metric
state, the seed-generator states and the position inside the epoch; resuming feeds that epoch less
the batches already done, so a resumed run takes exactly the optimizer steps an uninterrupted one
would. Checkpoints are taken at the end of every epoch (when epochs are shorter than
``EPOCH_CHECKPOINT_SECONDS``, of the first epoch to end that long after the last checkpoint, and of
the last epoch), every ``train.checkpoint_every`` steps, and when SIGINT or SIGTERM asks training to
stop. Keras runs ``steps_per_execution`` steps per call into TensorFlow and calls back between
calls, so in-epoch checkpoints land on the first execution boundary at or after the step asked for
(``auto`` picks a divisor of ``checkpoint_every``).

Speed: the remaining epochs run as one ``fit`` over :meth:`Datasets.train_epochs` when
``steps_per_execution`` divides an epoch (``auto`` looks for such a divisor), so no executions
straddle two epochs and no per-epoch pipeline is rebuilt; otherwise one ``fit`` per epoch, the next
epoch's dataset built in a helper thread. Checkpoints are copied at once and written by a writer
thread while training goes on. Measured with ``bench/train_throughput.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import shlex
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqcli.applications import APPLICATIONS, SAVED_MODEL, absolute_paths, resolve_path
from seqcli.checkpoint import (
    CheckpointError,
    TrainingState,
    read_state,
    restamp,
    restore_metrics,
    restore_variables,
    snapshot,
    write_snapshot,
)
from seqcli.data import KERAS_DATASETS
from seqcli.errors import Problem, SeqError, SpecError
from seqcli.files import atomic_path, probe_directory, write_text_atomic
from seqcli.models import save_model
from seqcli.spec import Spec, format_path, read_spec

RUN_FILES = ("model.keras", "spec.yaml", "history.csv", "metrics.json", "curves.png")
# What a finished run must have; a finished run resumed without them writes them again from its checkpoint.
RESULT_FILES = ("model.keras", "spec.yaml", "history.csv", "metrics.json")
CHECKPOINT = Path("checkpoints") / "last.npz"
BEST = Path("checkpoints") / "best.npz"
# Keys that may change between a run and its resume: how long to train, how often to checkpoint, where.
RESUMABLE_CHANGES = (("train", "epochs"), ("train", "checkpoint_every"), ("distribute",))
KERAS_DATASET_NAMES = tuple(KERAS_DATASETS)
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
EPOCH_CHECKPOINT_SECONDS = 2.0  # the most training a kill -9 can cost when epochs are shorter than this
HASHED_FILE_BYTES = 50 << 20  # input files up to this size are compared by sha256 on resume, larger by mtime


class RunDirectoryError(SeqError):
    """An output directory that cannot be written, holds another run, or has nothing to resume."""


class TrainingError(SeqError):
    """Training stopped on an error TensorFlow raised while running the model."""


class TrainingInterrupted(SeqError):
    """SIGINT or SIGTERM stopped training; a checkpoint was saved when training had started."""

    def __init__(self, signum: int, message: str, resume_command: str | None = None):
        super().__init__(message, f"resume with: {resume_command}" if resume_command else None)
        self.signum = signum
        self.exit_code = SIGNAL_EXIT.get(signum, 130)
        self.resume_command = resume_command

    def render(self) -> str:
        text = f"interrupted: {self.message}"
        if self.resume_command:
            text += f"\nresume with:\n  {self.resume_command}"
        return text


@dataclass
class TrainOptions:
    """What ``seq train`` was asked to do. CLI-level settings become spec overrides, validated like the file."""

    spec: str
    output: str | None = None
    epochs: int | None = None
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False
    strategy: str | None = None
    devices: list[str] | None = None
    virtual_cpus: int | None = None

    def spec_overrides(self) -> list[str]:
        extra = []
        if self.epochs is not None:
            extra.append(f"train.epochs={self.epochs}")
        if self.strategy is not None:
            extra.append(f"distribute.strategy={self.strategy}")
        if self.devices:
            extra.append(f"distribute.devices={json.dumps(list(self.devices))}")
        if self.virtual_cpus is not None:
            extra.append(f"distribute.virtual_cpus={self.virtual_cpus}")
        return [*self.overrides, *extra]

    def resume_command(self, output: Path) -> str:
        words = ["seq", "train", self.spec, "--output", str(output)]
        for override in self.overrides:
            words += ["--set", override]
        if self.epochs is not None:
            words += ["--epochs", str(self.epochs)]
        if self.strategy is not None:
            words += ["--strategy", self.strategy]
        if self.devices:
            words += ["--devices", ",".join(self.devices)]
        if self.virtual_cpus is not None:
            words += ["--virtual-cpus", str(self.virtual_cpus)]
        return shlex.join([*words, "--resume"])


@dataclass
class RunHeader:
    """What a run is about to do, for the display before the first epoch."""

    spec: str
    model: str
    params: int
    trainable_params: int
    output: Path
    epochs: int
    steps_per_epoch: int
    train_count: int
    validation_count: int | None
    seed: int
    distribution: dict[str, Any]
    compile: dict[str, str]
    steps_per_execution: int
    jit_compile: bool | str
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainResult:
    """What a run produced."""

    output: Path
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    epochs_done: int
    epochs: int
    stopped_early: bool = False
    best_epoch: int | None = None
    elapsed: float = 0.0
    files: list[Path] = field(default_factory=list)
    already_complete: bool = False

    def as_dict(self) -> dict:
        return {"output": str(self.output), "epochs_done": self.epochs_done, "epochs": self.epochs,
                "stopped_early": self.stopped_early, "best_epoch": self.best_epoch, "metrics": self.metrics,
                "elapsed_seconds": round(self.elapsed, 3), "files": [str(f) for f in self.files]}


class Reporter:
    """Receives training events. This one ignores them; see :mod:`seqcli.progress` for displays."""

    def run_started(self, header: RunHeader) -> None: ...

    def epoch_started(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...

    def steps_done(self, done: int, logs: dict[str, float]) -> None: ...

    def epoch_finished(self, row: dict[str, Any]) -> None: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...

    wants_step_logs = False


# ----------------------------------------------------------------------------- entry point


def train_spec(options: TrainOptions, reporter: Reporter | None = None) -> TrainResult:
    """Train the spec's model into its run directory, resuming when asked; see the module docstring.

    Every spec problem (structure, layers, compile names, data that does not fit the model) is reported
    together as one SpecError before training starts, and so is an output directory that cannot be written.
    """
    reporter = reporter or Reporter()
    spec = read_spec(options.spec, options.spec_overrides())
    output = Path(options.output) if options.output else Path("runs") / spec.display_name
    created = not output.exists()
    check_writable(output)
    try:
        return _train(spec, options, output, reporter)
    finally:
        # No empty run directory behind a run that never started, or on a multi-worker non-chief
        # (which writes to a temporary folder).
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()


def _train(spec: Spec, options: TrainOptions, output: Path, reporter: Reporter) -> TrainResult:
    if spec.problems:
        raise spec.error(spec.problems + _static_problems(spec))
    state = _resume_state(spec, output, options)
    complete = state is not None and state.finished and (state.stopped_early or state.epoch >= spec.train.epochs)
    if complete and all((output / name).exists() for name in RESULT_FILES):
        return _completed_result(output, state)
    with SignalGuard(reporter) as guard:
        run = _Run(spec, options, output, state, reporter, guard)
        run.replaces_run = not options.resume and _holds_run(output)
        try:
            run.prepare()
            return run.rewrite_results() if complete else run.train()
        finally:
            reporter.close()


def check_writable(output: Path) -> None:
    """Create ``output`` and prove a file can be written there, before anything slow happens."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirectoryError(f"cannot use {output} as the output directory: it is a file",
                                hint="choose another --output") from None
    except OSError as error:
        raise RunDirectoryError(f"cannot create output directory {output}: {error.strerror or error}",
                                hint="choose another --output, or fix the permissions of its parent") from None
    try:
        probe_directory(output)
    except OSError as error:
        raise RunDirectoryError(f"cannot write to output directory {output}: {error.strerror or error}",
                                hint="choose another --output, or fix its permissions") from None


def run_fingerprint(spec: Spec, seed: int | None) -> str:
    """A hash of everything in the spec that decides the steps of a run: the spec with file paths made
    absolute and the seed actually used, less what may change on resume (epochs, checkpoint_every,
    distribution). The files it reads are compared on their own (:func:`input_files`)."""
    import hashlib

    data = comparable_spec(spec, seed)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def comparable_spec(spec: Spec, seed: int | None) -> dict:
    data = absolute_spec_paths(spec.resolved(), spec.base_dir)
    for path in RESUMABLE_CHANGES:
        parent = data
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    if not isinstance(data.get("train"), dict):
        data["train"] = {}
    data["train"]["seed"] = seed
    return data


def absolute_spec_paths(data: dict, base_dir: Path) -> dict:
    """A spec's plain data with every file it names made absolute: data sources (Keras dataset names stay
    as they are), bases' weights and saved models, ``transfer.weights``; for a copy of the spec kept
    elsewhere, and for comparing a spec with the one a checkpoint records."""
    data = absolute_paths(data, base_dir)
    if isinstance(data.get("data"), dict):
        data["data"] = _absolute_sources(data["data"], base_dir)
    return data


def _absolute_sources(data: dict, base_dir: Path) -> dict:
    data = dict(data)
    for key in ("train", "validation", "test"):
        source = data.get(key)
        if isinstance(source, str) and source.partition(":")[0] not in KERAS_DATASET_NAMES:
            data[key] = _absolute(source, base_dir)
        elif isinstance(source, dict):
            source = dict(source)
            if isinstance(source.get("path"), str):
                source["path"] = _absolute(source["path"], base_dir)
            if isinstance(source.get("y"), str) and source["y"].lower().endswith(".npy"):
                source["y"] = _absolute(source["y"], base_dir)
            data[key] = source
    return data


def _absolute(path: str, base_dir: Path) -> str:
    return str(resolve_path(path, base_dir).resolve())


def input_files(spec: Spec) -> dict[str, dict]:
    """Size and sha256 (size and modification time above ``HASHED_FILE_BYTES``; names, sizes and times for
    an image folder) of every local file that decides a run's steps: training and validation data, base
    weights and models, ``transfer.weights``. Files that do not exist are left to the data and build checks."""
    data = absolute_spec_paths(spec.resolved(), spec.base_dir)
    return {path: _file_digest(Path(path)) for path in _step_files(data) if Path(path).exists()}


def _step_files(data: dict) -> list[str]:
    paths = []
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    for key in ("train", "validation"):
        source = section.get(key)
        if isinstance(source, str) and source.partition(":")[0] not in KERAS_DATASET_NAMES:
            paths.append(source)
        elif isinstance(source, dict):
            paths += [source[name] for name in ("path", "y") if isinstance(source.get(name), str)
                      and (name == "path" or source[name].lower().endswith(".npy"))]
    for entry in data.get("layers") or []:
        for name, args in (entry.items() if isinstance(entry, dict) else ()):
            key = "path" if name == SAVED_MODEL else "weights" if name in APPLICATIONS else None
            if key and isinstance(args, dict) and isinstance(args.get(key), str) and args[key] != "imagenet":
                paths.append(args[key])
    transfer = data.get("transfer")
    if isinstance(transfer, dict) and isinstance(transfer.get("weights"), str):
        paths.append(transfer["weights"])
    return list(dict.fromkeys(paths))


def _file_digest(path: Path) -> dict:
    import hashlib

    if path.is_dir():
        listing = sorted((str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                         for f in path.rglob("*") if f.is_file())
        return {"files": len(listing), "listing": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}
    status = path.stat()
    if status.st_size > HASHED_FILE_BYTES:
        return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": status.st_size, "sha256": digest.hexdigest()}


def _changed_file(before: dict[str, dict] | None, now: dict[str, dict]) -> str | None:
    """The first file that differs from the checkpoint's record, in words; None when none does."""
    for path, old in (before or {}).items():
        new = now.get(path)
        if new is None or new == old:
            continue
        if "listing" in old or "listing" in new:
            detail = "its files changed"
        elif old["size"] != new["size"]:
            detail = f"{old['size']:,} bytes -> {new['size']:,}"
        else:
            detail = "same size, other contents" if "sha256" in new else "same size, modified since"
        return f"{path} ({detail})"
    return None


# ----------------------------------------------------------------------------- before training


def _static_problems(spec: Spec) -> list[Problem]:
    """Layer and compile problems of a spec that already has structural ones, so all are reported at once."""
    from seqcli.build import build_model
    from seqcli.compile import probe_optimizer, resolve_compile

    problems = []
    with contextlib.suppress(SeqError):
        problems += build_model(spec, abstract=True).problems
    if spec.compile is not None or "compile" not in spec.document.data:
        problems += resolve_compile(spec)[1] or probe_optimizer(spec)
    return problems


def _resume_state(spec: Spec, output: Path, options: TrainOptions) -> TrainingState | None:
    checkpoint = output / CHECKPOINT
    if not options.resume:
        if _holds_run(output) and not options.overwrite:
            raise RunDirectoryError(f"{output} already holds a run ({_describe_run(output)})",
                                    hint="continue it with --resume, replace it with --overwrite, "
                                         "or choose another --output")
        return None
    if not checkpoint.exists():
        raise RunDirectoryError(f"nothing to resume: {output} has no checkpoint ({CHECKPOINT})",
                                hint="start the run without --resume")
    state = read_state(checkpoint)
    seed = spec.train.seed if spec.train.seed is not None else state.seed
    if run_fingerprint(spec, seed) != state.fingerprint:
        raise RunDirectoryError(f"cannot resume {output}: the spec changed since the checkpoint was written"
                                f"{_changes(state.spec, comparable_spec(spec, seed))}",
                                hint="undo the changes to resume, or start a new run with --overwrite or another "
                                     "--output (only train.epochs, train.checkpoint_every and distribute may "
                                     "change on resume)")
    files = input_files(spec)
    changed = _changed_file(state.files, files)
    if changed:
        raise RunDirectoryError(f"cannot resume {output}: a file the run reads changed since the checkpoint was "
                                f"written: {changed}",
                                hint="restore the file to resume, or start a new run with --overwrite or another "
                                     "--output")
    _check_epochs(spec, output, state)
    state.epochs = spec.train.epochs
    state.files = files
    return state


def _check_epochs(spec: Spec, output: Path, state: TrainingState) -> None:
    """A resumed run trains on from where it stands: no fewer epochs than it has started."""
    least = state.epoch + (1 if state.step else 0)
    if spec.train.epochs < least:
        raise RunDirectoryError(f"cannot resume {output} with train.epochs {spec.train.epochs}: the run stands at "
                                f"{state.position()}, so it needs at least {least} epochs",
                                hint=f"resume with --epochs {max(state.epochs, least)} (or any number from {least}), "
                                     "or start a new run with --overwrite or another --output")


def _holds_run(output: Path) -> bool:
    return (output / CHECKPOINT).exists() or (output / "model.keras").exists()


def _describe_run(output: Path) -> str:
    checkpoint = output / CHECKPOINT
    if checkpoint.exists():
        with contextlib.suppress(CheckpointError):
            state = read_state(checkpoint)
            return "finished" if state.finished else f"interrupted at {state.position()}"
    return "model.keras" if (output / "model.keras").exists() else "some of its files"


def _changes(before: dict | None, after: dict) -> str:
    if before is None:
        return ""
    changes = list(_differences(before, after, ()))
    shown = "".join(f"\n  {format_path(path) or '(spec)'}: {old!r} -> {new!r}" for path, old, new in changes[:8])
    more = f"\n  ... and {len(changes) - 8} more" if len(changes) > 8 else ""
    return ":" + shown + more if changes else ""


def _differences(old, new, path: tuple):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from _differences(old.get(key), new.get(key), path + (key,))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from _differences(a, b, path + (index,))
    elif old != new:
        yield path, old, new


def _remove_run(output: Path) -> None:
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (output / name).unlink()
    for name in (CHECKPOINT, BEST):
        with contextlib.suppress(FileNotFoundError):
            (output / name).unlink()
    shutil.rmtree(output / "logs", ignore_errors=True)


def _completed_result(output: Path, state: TrainingState) -> TrainResult:
    history = state.history
    return TrainResult(output=output, history=history, metrics=_final_metrics(history, state.early_stopping),
                       epochs_done=state.epoch, epochs=state.epochs, stopped_early=state.stopped_early,
                       best_epoch=(state.early_stopping or {}).get("best_epoch"), elapsed=state.elapsed,
                       files=[output / name for name in RUN_FILES if (output / name).exists()],
                       already_complete=True)


# ----------------------------------------------------------------------------- signals


class SignalGuard:
    """SIGINT and SIGTERM during training ask it to stop at the next step boundary with a checkpoint;
    a second signal exits at once. Before training starts (``armed`` False) a signal stops right away."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.received: int | None = None
        self.armed = False
        self._previous: dict = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            os.write(2, f"\n{name} again: exiting at once, without a checkpoint\n".encode())
            os._exit(SIGNAL_EXIT.get(signum, 130))
        self.received = signum
        if not self.armed:
            raise TrainingInterrupted(signum, f"{name}: stopped before training started; nothing was trained")
        os.write(2, f"\n{name}: saving a checkpoint after the current steps (again to exit at once)\n".encode())


# ----------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, spec: Spec, options: TrainOptions, output: Path, state: TrainingState | None,
                 reporter: Reporter, guard: SignalGuard):
        self.spec = spec
        self.options = options
        self.output = output
        self.write_dir = output
        self.state = state
        self.reporter = reporter
        self.guard = guard
        self.resuming = state is not None
        self.started = time.perf_counter()
        self.elapsed_before = state.elapsed if state else 0.0
        self.replaces_run = False
        self.notes: list[str] = []
        self.background = _Background()
        self.last_checkpoint_time = -math.inf
        self.fitted = False  # whether this process trained (a resumed run may have had no step left)

    # -- setting up

    def prepare(self) -> None:
        from seqcli.distribute import chief_output_dir, make_strategy

        # Every worker writes (saving reads variables with collective operations); only the chief's
        # files land in the run directory, the others' in a temporary folder.
        keras = self._keras()  # a quiet TensorFlow import; devices are not initialized yet
        self.info = make_strategy(self.spec.resolved().get("distribute") or None)
        self.write_dir = Path(chief_output_dir(self.output, self.info))
        self.strategy = self.info.strategy
        seed = self.state.seed if self.state else self.spec.train.seed
        self.seed = seed if seed is not None else secrets.randbelow(2**31)
        keras.utils.set_random_seed(self.seed)
        problems = self._load_data() + self._probe_optimizer()
        if self.data is not None:
            with self.strategy.scope():
                problems += self._build_and_compile()
        if problems:
            raise self.spec.error(problems)
        self._check_free_space()
        if self.state is None:
            self.state = TrainingState(fingerprint=run_fingerprint(self.spec, self.seed), seed=self.seed,
                                       epochs=self.spec.train.epochs, steps_per_epoch=self.data.steps_per_epoch,
                                       spec=comparable_spec(self.spec, self.seed), files=input_files(self.spec))
        else:
            self._restore()
        self.early_stopping = EarlyStopper.create(self.spec, self.state.early_stopping)

    def _keras(self):
        from seqcli.keras_env import import_keras

        return import_keras()

    def _probe_optimizer(self) -> list[Problem]:
        """Outside the strategy's scope (see :func:`seqcli.compile.probe_optimizer`)."""
        from seqcli.compile import probe_optimizer

        return probe_optimizer(self.spec)

    def _load_data(self) -> list[Problem]:
        from seqcli.data import DataError, load_datasets

        self.data = None
        if self.spec.data is None or self.spec.data.train is None:
            return [self.spec.problem(("data",) if self.spec.data else (), "there is no training data",
                                      "add for example:\ndata:\n  train: data/digits.npz\n  validation: 0.2")]
        try:
            self.data = load_datasets(self.spec.resolved()["data"], self.spec.base_dir, seed=self.seed)
        except DataError as error:
            return [self._data_problem(error)]
        self.validation = self.data.validation  # cached by seqcli.data when it fits
        return []

    def _data_problem(self, error: SeqError) -> Problem:
        message = error.message
        where = message.split(":", 1)[0] if message.startswith("data.") else "data"
        path = tuple(part for part in where.split(".") if part)
        return self.spec.problem(path, message, error.hint)

    def _build_and_compile(self) -> list[Problem]:
        from seqcli.build import build_model
        from seqcli.compile import logits_warning, probe_compile, resolve_compile, single_step_only

        # The data's shape for a spec without one; a spec's own shape is compared with the data's (_check_input).
        first = self.spec.layers[0] if self.spec.layers else None
        declared = first is not None and (first.class_name == "Input" or "input_shape" in first.args)
        built = build_model(self.spec, input_shape=None if declared else self.data.input_shape)
        problems = list(built.problems)
        settings, compile_problems = resolve_compile(self.spec, steps_per_epoch=self.data.steps_per_epoch,
                                                     single_step=single_step_only(self.strategy))
        problems += compile_problems
        problems += _monitor_problems(self.spec, settings, self.data.validation is not None)
        if built.model is not None:
            problems += self._check_input(built)
            problems += self._freeze(built.model)
        if built.model is None or problems:
            return problems
        labels = self._first_labels()
        problems += probe_compile(self.spec, settings, labels, built.output_shape)
        if problems:
            return problems
        self.model, self.settings, self.built = built.model, settings, built
        settings.compile(self.model)
        from seqcli.distribute import prepare_model

        prepare_model(self.model, self.info)
        self.notes = [note for note in [logits_warning(self.spec, self.model)] if note]
        return []

    def _check_input(self, built) -> list[Problem]:
        data_shape = tuple(self.data.input_shape)
        if built.input_shape is None or tuple(built.input_shape) == data_shape:
            return []
        first = self.spec.layers[0]
        path = first.path + (("Input", "shape") if built.input_source == "Input" else (first.class_name,
                                                                                      "input_shape"))
        from seqcli.shapes import shape_text

        return [self.spec.problem(path, f"the model takes inputs of shape {shape_text(built.input_shape)}, but "
                                  f"data.train's samples have shape {shape_text(data_shape)}",
                                  f"make the input shape {list(data_shape)}, or remove it and the model "
                                  "takes the data's shape")]

    def _freeze(self, model) -> list[Problem]:
        if self.spec.freeze is None:
            return []
        from seqcli.trainable import apply_freeze

        try:
            apply_freeze(model, self.spec.freeze)
        except SeqError as error:
            return [self.spec.problem(("freeze",), error.message, error.hint)]
        return []

    def _first_labels(self):
        for _, labels in self.data.train_for_epoch(0).take(1):
            return labels.numpy()
        return None

    def _check_free_space(self) -> None:
        """Room for two checkpoints (weights and about two optimizer slots each) and the model file."""
        import numpy as np

        weights = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in self.model.variables)
        needed = 3 * 3 * weights + (1 << 20)
        free = shutil.disk_usage(self.write_dir).free
        if free < needed:
            raise RunDirectoryError(f"{self.write_dir} has {free:,} bytes free; checkpoints and the model need "
                                    f"about {needed:,}", hint="free some space or choose another --output")

    def _restore(self) -> None:
        with self.strategy.scope():
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            restore_variables(self.output / CHECKPOINT, self.model)
        except CheckpointError:
            raise
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"cannot restore {self.output / CHECKPOINT}: {error}") from None

    # -- training

    def train(self) -> TrainResult:
        """Fit the remaining epochs: a resumed partial epoch on its own, then the rest in one ``fit`` call
        when ``steps_per_execution`` divides an epoch (Keras's executions then never straddle two epochs),
        else one ``fit`` call per epoch, the next epoch's dataset built while the current one trains."""
        state = self.state
        if self.replaces_run:
            _remove_run(self.write_dir)
        state.finished = False
        self._write_spec_copy()
        self.reporter.run_started(self._header())
        self.guard.armed = True
        self.callback = _StepCallback(self)
        self.epoch_clock = time.perf_counter()
        steps, execution = self.data.steps_per_epoch, self.settings.steps_per_execution
        with self._tensorboard() as self.board, self.background:
            if state.step and state.epoch < state.epochs:
                self._fit(self.data.train_for_epoch(state.epoch, state.step), state.epoch, state.epoch + 1)
            if steps % execution == 0:
                if state.epoch < state.epochs and not state.stopped_early:
                    self._fit(self.data.train_epochs(state.epoch, state.epochs), state.epoch, state.epochs,
                              steps_per_epoch=steps)
            else:
                self._fit_epoch_by_epoch()
        if state.stopped_early:
            self.reporter.note(self.early_stopping.message(state.epoch))
        return self._finish()

    def _fit_epoch_by_epoch(self) -> None:
        state = self.state
        upcoming = self.background.dataset(self.data.train_for_epoch, state.epoch, 0)
        while state.epoch < state.epochs and not state.stopped_early:
            epoch, dataset = state.epoch, upcoming.result()
            if epoch + 1 < state.epochs:
                upcoming = self.background.dataset(self.data.train_for_epoch, epoch + 1, 0)
            self._fit(dataset, epoch, epoch + 1)

    def _fit(self, dataset, first: int, stop: int, steps_per_epoch: int | None = None) -> None:
        """``model.fit`` over epochs ``first`` .. ``stop - 1``; the callback does each epoch's bookkeeping."""
        self.fitted = True
        try:
            with _keep_ema_weights(self.model.optimizer, partial=stop < self.state.epochs):
                self.model.fit(dataset, validation_data=self.validation, epochs=stop, initial_epoch=first,
                               steps_per_epoch=steps_per_epoch, callbacks=[self.callback.keras_callback],
                               shuffle=False, verbose=0)
        except _StopRequested:
            raise self._interrupted() from None
        except Exception as error:
            _raise_training_error(error)

    def end_epoch(self, epoch: int, logs: dict) -> None:
        """After an epoch's validation: history, early stopping, checkpoint, display; stop on a signal."""
        state = self.state
        seconds, self.epoch_clock = time.perf_counter() - self.epoch_clock, time.perf_counter()
        order = self.settings.log_names(validation=True)
        values = {name: float(value) for name, value in (logs or {}).items()}
        ordered = sorted(values, key=lambda name: order.index(name) if name in order else len(order))
        row = {"epoch": epoch + 1, **{name: values[name] for name in ordered}, "seconds": round(seconds, 4)}
        stop = self.early_stopping.update(row) if self.early_stopping else False
        state.history.append(row)
        state.epoch, state.step = epoch + 1, 0
        state.early_stopping = self.early_stopping.as_dict() if self.early_stopping else None
        state.stopped_early = bool(stop)
        last = stop or state.epoch >= state.epochs or self.guard.received is not None
        self._save_epoch(row, self.board, force=last)
        self.reporter.epoch_finished(row)
        if self.guard.received is not None:
            raise _StopRequested()
        if stop:
            self.model.stop_training = True

    def save_checkpoint(self) -> None:
        """Copy the state now; the file is written in the background (atomically, in order)."""
        self.state.elapsed = self._elapsed()
        self.last_checkpoint_time = time.perf_counter()
        self.background.write(write_snapshot, self.write_dir / CHECKPOINT, snapshot(self.model, self.state))

    def _save_epoch(self, row: dict, board, *, force: bool) -> None:
        """Checkpoint and history at an epoch's end, unless the last checkpoint is under
        EPOCH_CHECKPOINT_SECONDS old (epochs of a fraction of a second would spend ~10% on them)."""
        if force or time.perf_counter() - self.last_checkpoint_time >= EPOCH_CHECKPOINT_SECONDS:
            self.save_checkpoint()
            self.background.write(write_history, self.write_dir / "history.csv", list(self.state.history))
        if self.early_stopping and self.early_stopping.restore_best and self.early_stopping.best_epoch == row["epoch"]:
            self.background.write(write_snapshot, self.write_dir / BEST,
                                  snapshot(self.model, self.state, groups=("model",)))
        self.background.write(board.write, row)

    def _interrupted(self) -> TrainingInterrupted:
        signum = self.guard.received or signal.SIGINT
        name = signal.Signals(signum).name
        return TrainingInterrupted(signum, f"{name}: training stopped at {self.state.position()}; checkpoint saved "
                                           f"to {self.output / CHECKPOINT}",
                                   self.options.resume_command(self.output))

    def _finish(self) -> TrainResult:
        """The result files first, the finished checkpoint last: a run is marked finished only once its
        model, metrics and history are on disk. The checkpoint keeps the last epoch's weights (training
        longer continues from them), whatever weights early stopping restores into the model."""
        state = self.state
        state.finished = True
        state.elapsed = self._elapsed()
        finished = (snapshot(self.model, state) if self.fitted or not self.resuming
                    else restamp(self.output / CHECKPOINT, state))
        result = self._final_results()
        write_snapshot(self.write_dir / CHECKPOINT, finished)
        return result

    def rewrite_results(self) -> TrainResult:
        """A finished run whose result files are gone: write them again from its (restored) checkpoint."""
        self._write_spec_copy()
        result = self._final_results()
        result.already_complete = True
        self.reporter.note(f"{self.output} had finished but lacked some of its files; wrote them again from "
                           f"{self.output / CHECKPOINT}")
        return result

    def _final_results(self) -> TrainResult:
        state, stopper = self.state, self.early_stopping
        if stopper and stopper.restore_best and stopper.best_epoch not in (None, state.epoch) and (
                self.write_dir / BEST).exists():
            restore_variables(self.write_dir / BEST, self.model, groups=("model",))
            self.reporter.note(f"restored the weights of epoch {stopper.best_epoch}, the best {stopper.monitor}")
        metrics = _final_metrics(state.history, state.early_stopping)
        files = self._write_results(metrics)
        return TrainResult(output=self.output, history=state.history, metrics=metrics, epochs_done=state.epoch,
                           epochs=state.epochs, stopped_early=state.stopped_early,
                           best_epoch=(state.early_stopping or {}).get("best_epoch"), elapsed=state.elapsed,
                           files=files)

    def _write_results(self, metrics: dict) -> list[Path]:
        directory = self.write_dir
        save_model(self.model, directory / "model.keras")
        summary = {"model": self.model.name, "spec": str(Path(self.options.spec).resolve()),
                   "epochs_done": self.state.epoch, "epochs": self.state.epochs,
                   "stopped_early": self.state.stopped_early,
                   "best_epoch": (self.state.early_stopping or {}).get("best_epoch"), "seed": self.seed,
                   "elapsed_seconds": round(self.state.elapsed, 3), "metrics": metrics,
                   "samples_per_second": _throughput(self.state.history, self.data.train_count),
                   "distribution": self.info.describe(self.data.batch_size),
                   "class_names": self.data.class_names}
        write_text_atomic(directory / "metrics.json", json.dumps(summary, indent=2, default=str) + "\n")
        write_history(directory / "history.csv", self.state.history)
        with contextlib.suppress(ImportError):
            plot_curves(directory / "curves.png", self.state.history, self.model.name,
                        best_epoch=(self.state.early_stopping or {}).get("best_epoch"))
        return [directory / name for name in RUN_FILES if (directory / name).exists()]

    def _write_spec_copy(self) -> None:
        data = absolute_spec_paths(self.spec.resolved(), self.spec.base_dir)
        if not isinstance(data.get("train"), dict):
            data["train"] = {}
        data["train"]["seed"] = self.seed
        header = (f"# The spec as trained by seq train: {self.options.spec} with overrides applied,\n"
                  "# file paths made absolute and the seed used. `seq train` on this file repeats the run.\n")
        write_text_atomic(self.write_dir / "spec.yaml", header + dump_spec(data))

    def _header(self) -> RunHeader:
        settings = self.settings
        resumed = f"{self.state.position()} of {self.output / CHECKPOINT}" if self.resuming else None
        return RunHeader(spec=self.options.spec, model=self.model.name, params=self.model.count_params(),
                         trainable_params=sum(math.prod(w.shape) for w in self.model.trainable_weights),
                         output=self.output, epochs=self.state.epochs, steps_per_epoch=self.data.steps_per_epoch,
                         train_count=self.data.train_count, validation_count=self.data.validation_count,
                         seed=self.seed, distribution=self.info.describe(self.data.batch_size),
                         compile=settings.descriptions, steps_per_execution=settings.steps_per_execution,
                         jit_compile=self.model.jit_compile, resumed_from=resumed, notes=self.notes)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @contextlib.contextmanager
    def _tensorboard(self):
        board = _TensorBoard(self.write_dir / "logs")
        try:
            yield board
        finally:
            board.close()


class _Background:
    """Two helper threads: one builds the next epoch's dataset while the current one trains, one writes
    checkpoints, history and logs in order. A write that failed raises at the next write or on exit."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.data = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq-data")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq-writer")
        self.pending: list = []

    def dataset(self, build, epoch: int, skip: int):
        return self.data.submit(build, epoch, skip)

    def write(self, function, *args) -> None:
        self._raise_failures()
        self.pending.append(self.writer.submit(function, *args))

    def flush(self) -> None:
        for future in self.pending:
            future.result()
        self.pending.clear()

    def _raise_failures(self) -> None:
        done = [future for future in self.pending if future.done()]
        self.pending = [future for future in self.pending if not future.done()]
        for future in done:
            future.result()

    def __enter__(self) -> _Background:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()  # a checkpoint asked for (by a signal too) is on disk before seq exits
        finally:
            self.data.shutdown(wait=False, cancel_futures=True)
            self.writer.shutdown(wait=True)


class _StopRequested(Exception):
    """Raised from a Keras callback to leave ``fit`` at once after a signal's checkpoint."""


class _StepCallback:
    """Inside ``fit``: each epoch's start and end, and every execution's end (live progress, in-epoch
    checkpoints, stop on a signal). Keras calls batch hooks once per ``steps_per_execution`` steps."""

    def __init__(self, run: _Run):
        import keras

        self.run = run
        self.every = run.spec.train.checkpoint_every
        self.keras_callback = keras.callbacks.LambdaCallback(on_epoch_begin=self._on_epoch_begin,
                                                             on_train_batch_end=self._on_batch_end,
                                                             on_epoch_end=self._on_epoch_end)
        self.restore_metrics_from: Path | None = (run.output / CHECKPOINT if run.resuming and run.state.step
                                                  else None)

    def _on_epoch_begin(self, epoch, logs=None) -> None:
        run = self.run
        skip = run.state.step
        run.reporter.epoch_started(epoch, run.state.epochs, run.data.steps_per_epoch, skip)
        self.base = int(run.model.optimizer.iterations.numpy()) - skip
        self.last_checkpoint = skip
        if self.restore_metrics_from is not None:
            if not restore_metrics(self.restore_metrics_from, run.model, run.strategy):
                run.reporter.note("this epoch's training metrics cover the steps after the resume only")
            self.restore_metrics_from = None

    def _on_batch_end(self, batch, logs=None) -> None:
        run = self.run
        done = int(run.model.optimizer.iterations.numpy()) - self.base
        run.state.step = done
        if run.reporter.wants_step_logs:
            run.reporter.steps_done(done, {k: float(v) for k, v in (logs or {}).items()})
        if run.guard.received is not None and done < run.data.steps_per_epoch:
            run.save_checkpoint()
            raise _StopRequested()
        if self.every and done - self.last_checkpoint >= self.every and done < run.data.steps_per_epoch:
            run.save_checkpoint()
            self.last_checkpoint = done

    def _on_epoch_end(self, epoch, logs=None) -> None:
        self.run.end_epoch(epoch, logs)


@contextlib.contextmanager
def _keep_ema_weights(optimizer, *, partial: bool):
    """``fit`` ends by copying an EMA optimizer's averages into the weights; after a partial epoch
    training goes on, so that copy must wait for the real end."""
    if not (partial and getattr(optimizer, "use_ema", False)):
        yield
        return
    optimizer.finalize_variable_values = lambda variables: None
    try:
        yield
    finally:
        del optimizer.finalize_variable_values


# ----------------------------------------------------------------------------- early stopping


@dataclass
class EarlyStopper:
    """Keras's EarlyStopping rules with state that a checkpoint can carry across a resume."""

    monitor: str
    mode: str
    patience: int
    min_delta: float
    restore_best: bool
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    @classmethod
    def create(cls, spec: Spec, saved: dict | None) -> EarlyStopper | None:
        section = spec.train.early_stopping
        if section is None:
            return None
        mode = section.mode
        if mode == "auto":
            increasing = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
            mode = "max" if any(word in section.monitor for word in increasing) else "min"
        stopper = cls(section.monitor, mode, section.patience, abs(float(section.min_delta)),
                      section.restore_best_weights)
        if saved:
            stopper.best, stopper.best_epoch, stopper.wait = saved.get("best"), saved.get("best_epoch"), saved["wait"]
        return stopper

    def update(self, row: dict) -> bool:
        """Record an epoch's logs; True when training should stop."""
        value = row.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.best is None or self._improved(value):
            self.best, self.best_epoch, self.wait = value, row["epoch"], 0
            return False
        self.wait += 1
        return self.wait > self.patience

    def _improved(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def message(self, epoch: int) -> str:
        epochs = "1 epoch" if self.wait == 1 else f"{self.wait} epochs"
        return (f"early stopping after epoch {epoch}: {self.monitor} has not improved for {epochs} "
                f"(best {self.best:.4g} at epoch {self.best_epoch})")

    def as_dict(self) -> dict:
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "restore_best_weights": self.restore_best}


def _monitor_problems(spec: Spec, settings, validation: bool) -> list[Problem]:
    """early_stopping.monitor against the logs' names (read from the spec when compile has problems)."""
    from seqcli.compile import CompileSettings, metric_log_name
    from seqcli.errors import did_you_mean

    section = spec.train.early_stopping
    if section is None:
        return []
    if settings is None:
        metrics = spec.compile.metrics if spec.compile else []
        settings = CompileSettings(None, None, metric_names=[metric_log_name(m) for m in metrics])
    log_names = settings.log_names(validation)
    if section.monitor in log_names:
        return []
    return [spec.problem(("train", "early_stopping", "monitor"), f"training logs no {section.monitor!r}",
                         did_you_mean(section.monitor, log_names) or f"it logs: {', '.join(log_names)}")]


# ----------------------------------------------------------------------------- writing results


def write_history(target: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    write_text_atomic(target, buffer.getvalue())


def dump_spec(data: dict) -> str:
    """YAML in the style specs are written in: lists of plain values inline (``shape: [8, 8, 1]``)."""

    class Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper, value):
        flow = all(isinstance(item, (int, float, str, bool)) or item is None for item in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    Dumper.add_representer(list, represent_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True)


def plot_curves(target: Path, history: list[dict], title: str, best_epoch: int | None = None) -> None:
    """One panel per quantity (loss, each metric), training and validation curves together."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [k for k in history[0] if k not in ("epoch", "seconds") and not k.startswith("val_")] if history else []
    figure = Figure(figsize=(5 * max(len(names), 1), 3.6), layout="constrained")
    epochs = [row["epoch"] for row in history]
    for index, name in enumerate(names):
        axes = figure.add_subplot(1, len(names), index + 1)
        axes.plot(epochs, [row.get(name) for row in history], marker="o", markersize=3, label="train")
        if any(f"val_{name}" in row for row in history):
            axes.plot(epochs, [row.get(f"val_{name}") for row in history], marker="o", markersize=3,
                      label="validation")
        if best_epoch is not None:
            axes.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
        axes.set_xlabel("epoch")
        axes.set_title(name)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)


class _TensorBoard:
    """Epoch scalars in TensorBoard's event format (``logs/train``, ``logs/validation``), written with
    ``tf.summary.write``, which needs no TensorBoard installation."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.writers: dict[str, Any] = {}

    def write(self, row: dict) -> None:
        if self.directory is None:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name="scalars"))
        for key, value in row.items():
            if key in ("epoch", "seconds") or not isinstance(value, float):
                continue
            split = "validation" if key.startswith("val_") else "train"
            name = key[4:] if split == "validation" else key
            writer = self.writers.get(split)
            if writer is None:
                writer = self.writers[split] = tf.summary.create_file_writer(str(self.directory / split))
            with writer.as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(value, tf.float32), step=row["epoch"],
                                 metadata=metadata)
        for writer in self.writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _final_metrics(history: list[dict], early_stopping: dict | None) -> dict[str, float]:
    if not history:
        return {}
    row = history[-1]
    best_epoch = (early_stopping or {}).get("best_epoch")
    if (early_stopping or {}).get("restore_best_weights") and best_epoch is not None and best_epoch != row["epoch"]:
        row = next((r for r in history if r["epoch"] == best_epoch), row)
    return {k: v for k, v in row.items() if k not in ("epoch", "seconds")}


def _throughput(history: list[dict], train_count: int | None) -> float | None:
    """Training samples per second over the epochs after the first (which pays for tracing)."""
    times = [row["seconds"] for row in history[1:]] or [row["seconds"] for row in history]
    if not times or not train_count:
        return None
    return round(train_count * len(times) / sum(times), 1)


def _raise_training_error(error: Exception):
    """TensorFlow's runtime errors (bad labels, NaN checks, out of memory) as a SeqError; anything else as is."""
    import tensorflow as tf

    if isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.ResourceExhaustedError)):
        text = str(error).strip().splitlines()
        message = next((line for line in reversed(text) if line.strip() and not line.startswith("\t")), str(error))
        raise TrainingError(f"training failed: {message.strip()}",
                            hint="check that the labels fit the model's output and loss "
                                 "(e.g. labels 0..N-1 for N output units)") from None
    raise error


__all__ = ["RunDirectoryError", "SpecError", "TrainOptions", "TrainResult", "TrainingInterrupted", "train_spec"]
