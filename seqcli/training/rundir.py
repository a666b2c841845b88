"""The run directory: the one place that knows what a run writes and where.

A run directory holds ``model.keras``, ``spec.yaml`` (the spec as trained), ``history.csv``,
``metrics.json``, ``curves.png``, ``checkpoints/last.npz`` (with ``previous.npz``, the one before it, and
``best.npz`` for early stopping that restores the best weights) and TensorBoard logs under ``logs/``.
``seq train`` writes it, and ``seq evaluate``/``predict``/``transfer`` read it through :class:`RunDirectory`.
A ``seq transfer`` folder is a run too, with each phase's run inside it (:meth:`RunDirectory.phase`).

:func:`resolve_run_or_model` is the one reading of a RUN_OR_MODEL argument (a run folder or a ``.keras``
file) for the verbs that take one: evaluate, predict, export and plot.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.files import probe_directory, temporary_prefix
from seqcli.manifest import (
    ManifestError,
    open_writing,
    read_manifest,
    record_members,
    remove_members,
    seal,
    writing_here,
)
from seqcli.models import ModelLoadError
from seqcli.outputs import process_alive

# metrics.json as seq train writes it: the keys readers use, and their types (read through seqcli.records).
METRICS_KIND = "a metrics.json as seq train writes it"
HISTORY_KIND = "a history.csv as seq train writes it"
METRICS_TYPES = {"model": str, "metrics": dict, "best_epoch": int, "class_names": list, "phases": list}
MAX_PHASES = 16  # a transfer run's phases (seq transfer makes two)
MAX_EPOCHS = 2**31
MAX_NAME = 1024  # characters in the model's name


class RunDirectoryError(SeqError):
    """An output directory that cannot be written, holds another run, or has nothing to resume."""


def _metrics_problem(data) -> str | None:
    """Why ``data`` (a metrics.json as read) is not what seq train writes; None when it is."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object"
    for key, kind in METRICS_TYPES.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{key!r} is a {type(value).__name__}, not a {kind.__name__}"
    if len(data.get("model") or "") > MAX_NAME:
        return f"'model' is longer than {MAX_NAME} characters, not a model's name"
    if data.get("best_epoch") is not None and not 1 <= data["best_epoch"] <= MAX_EPOCHS:
        return f"'best_epoch' is not an epoch (1 to {MAX_EPOCHS:,})"
    if not all(isinstance(name, str) for name in data.get("class_names") or []):
        return "'class_names' holds something other than names"
    if not _phases_ok(data.get("phases") or []):
        return f"'phases' is not a list of at most {MAX_PHASES} phases with their first epochs"
    return None


def _phases_ok(phases: list) -> bool:
    """Whether a metrics.json's ``phases`` are what seq transfer writes: each with an epoch it starts at."""
    return len(phases) <= MAX_PHASES and all(
        isinstance(phase, dict) and type(phase.get("first_epoch")) is int and 1 <= phase["first_epoch"] <= MAX_EPOCHS
        for phase in phases
    )


@dataclass(frozen=True)
class RunDirectory:
    """The files of one run, under ``path``."""

    path: Path

    # What a finished run must have; a finished run resumed without them writes them again from its checkpoint.
    RESULT_NAMES = ("model.keras", "spec.yaml", "history.csv", "metrics.json")
    FILE_NAMES = (*RESULT_NAMES, "curves.png")
    # What the manifest (seqcli.manifest) claims, exactly (``name/`` a folder): --overwrite removes these and
    # nothing else. TensorBoard's event files are claimed by name as they are made (claim_log_files).
    MEMBERS = (
        *FILE_NAMES,
        "checkpoints/",
        "checkpoints/last.npz",
        "checkpoints/previous.npz",
        "checkpoints/best.npz",
        "logs/",
        "logs/train/",
        "logs/validation/",
    )
    LOG_PREFIX = "events.out.tfevents."

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def model(self) -> Path:
        return self.path / "model.keras"

    @property
    def spec(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def checkpoint(self) -> Path:
        """The last checkpoint: where the run stands."""
        return self.path / "checkpoints" / "last.npz"

    @property
    def previous(self) -> Path:
        """The checkpoint written before the last: resuming falls back to it when the last is damaged."""
        return self.path / "checkpoints" / "previous.npz"

    @property
    def best(self) -> Path:
        """The weights of the best epoch, for early stopping that restores them."""
        return self.path / "checkpoints" / "best.npz"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def phase(self, number: int) -> RunDirectory:
        """Phase ``number``'s own run, in a ``seq transfer`` folder (which is itself the run of all phases)."""
        return RunDirectory(self.path / f"phase{number}")

    def read_metrics(self) -> dict:
        """``metrics.json`` (``{}`` when the run has none yet), checked to be what seq train writes: a file
        edited or replaced since is an error that names it, not a crash in whoever reads a key."""
        from seqcli.records import RecordError, read_json

        if not self.metrics.is_file():
            return {}
        try:
            data = read_json(self.metrics, METRICS_KIND)
        except RecordError as error:
            raise RunDirectoryError(error.message, hint=self._tampered("").hint) from error
        why = _metrics_problem(data)
        if why is not None:
            raise self._tampered(why)
        return data

    def read_history(self) -> list[dict]:
        """``history.csv`` as rows of numbers (``epoch`` an int), read through :func:`seqcli.records.read_csv`;
        an empty cell (a metric not logged that epoch) is left out of its row."""
        from seqcli.records import INTEGER, NUMBER, Column, read_csv

        columns = {"epoch": Column(INTEGER.parse, INTEGER.kind, required=True)}
        rows = read_csv(self.history, HISTORY_KIND, columns, other=NUMBER)
        return [{key: value for key, value in row.items() if value is not None} for row in rows]

    def _tampered(self, why: str) -> RunDirectoryError:
        return RunDirectoryError(
            f"{self.metrics} is not {METRICS_KIND}: {why}",
            hint=f"delete it; 'seq train SPEC --output {self.path} --resume' writes it again from the run's checkpoint",
        )

    def files(self) -> list[Path]:
        """The run's files that exist, in the order a result lists them."""
        return [self.path / name for name in self.FILE_NAMES if (self.path / name).exists()]

    def has_results(self) -> bool:
        return all((self.path / name).exists() for name in self.RESULT_NAMES)

    def holds_run(self) -> bool:
        return self.checkpoint.exists() or self.previous.exists() or self.model.exists()

    def describe(self) -> str:
        """How far the run in this directory got, in a few words."""
        from seqcli.training.checkpoint import CheckpointError, read_state

        for checkpoint in (self.checkpoint, self.previous):
            with contextlib.suppress(CheckpointError):
                state = read_state(checkpoint)
                return "finished" if state.finished else f"interrupted at {state.position()}"
        return "model.keras" if self.model.exists() else "some of its files"

    def create(self) -> None:
        """Create the directory and prove a file can be written there, before anything slow happens."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunDirectoryError(
                f"cannot use {self.path} as the output directory: it is a file", hint="choose another --output"
            ) from None
        except OSError as error:
            raise RunDirectoryError(
                f"cannot create output directory {self.path}: {error.strerror or error}",
                hint="choose another --output, or fix the permissions of its parent",
            ) from error
        try:
            probe_directory(self.path, temporary_prefix("probe"))
        except OSError as error:
            raise RunDirectoryError(
                f"cannot write to output directory {self.path}: {error.strerror or error}",
                hint="choose another --output, or fix its permissions",
            ) from error

    def claim(self) -> None:
        """Record the run's members in the manifest before writing them, and mark the run as being written:
        a kill between the two leaves a manifest that claims a file not yet there, never a file it does not
        claim."""
        record_members(self.path, self.MEMBERS, "seq train")
        open_writing(self.path, "seq train")

    def adopt_killed_logs(self) -> None:
        """TensorBoard's event files that a killed run made between TensorFlow creating them and this folder's
        manifest claiming them: those named for the process the manifest says was writing, on this host, once
        that process is gone. (A name holds its writer's host and PID; nothing else is taken.)"""
        with contextlib.suppress(ManifestError, OSError):
            manifest = read_manifest(self.path)
            pid = manifest.writing.get("pid") if manifest is not None and manifest.writing else None
            if not isinstance(pid, int) or pid == os.getpid() or process_alive(pid):
                return
            own = re.compile(
                rf"{re.escape(self.LOG_PREFIX)}\d+(\.\d+)?\.{re.escape(socket.gethostname())}\.{pid}\.\d+\.v2"
            )
            record_members(
                self.path, [name for name in self._log_files() if own.fullmatch(name.rsplit("/")[-1])], "seq train"
            )

    def _log_files(self) -> list[str]:
        return [
            f"logs/{split}/{entry.name}"
            for split in ("train", "validation")
            if (self.logs / split).is_dir() and not (self.logs / split).is_symlink()
            for entry in (self.logs / split).iterdir()
            if entry.name.startswith(self.LOG_PREFIX) and entry.is_file() and not entry.is_symlink()
        ]

    def claim_log_files(self) -> None:
        """Claim TensorBoard's event files, by their exact names, as soon as TensorFlow has made them."""
        found = self._log_files()
        if found:
            record_members(self.path, found, "seq train")

    def seal(self) -> None:
        """Record every member file's size as it is now: the run's files as this process wrote them (nothing
        when it did not claim the run)."""
        if writing_here(self.path):
            self.claim_log_files()
            seal(self.path, "seq train")

    def remove_run(self) -> None:
        """Remove what the manifest claims, and nothing else (refused when anything else is there)."""
        remove_members(self.path)


@dataclass(frozen=True)
class RunOrModel:
    """What a RUN_OR_MODEL argument names: a model file and, when it names a run folder, the run."""

    model: Path
    run: RunDirectory | None = None

    @property
    def spec(self) -> Path | None:
        """The run's spec as trained; None for a bare model file or a run without one."""
        return self.run.spec if self.run is not None and self.run.spec.exists() else None

    def class_names(self) -> list[str] | None:
        """The class names the run recorded, else those the model file carries (a ``.keras`` file written by
        seq holds them: :func:`seqcli.models.saved_class_names`); None when neither has them."""
        from seqcli.models import saved_class_names

        names = self.run.read_metrics().get("class_names") if self.run is not None else None
        return names if names is not None else saved_class_names(self.model)


def run_or_model_inputs(target: str | Path) -> list[Path]:
    """What a verb given RUN_OR_MODEL reads, for the output rules, known without resolving it (an output that
    is an input is refused first, whatever the target holds): the path and, for a folder, the run files the
    verbs read (each, in case it links elsewhere)."""
    path = Path(target)
    if not path.is_dir():
        return [path] if path.exists() else []
    run = RunDirectory(path)
    return [path, *(file for file in (run.model, run.spec, run.metrics) if file.exists())]


def resolve_run_or_model(target: str | Path) -> RunOrModel:
    """A run folder (its ``model.keras``; a ``seq transfer`` folder is one once its last phase finishes) or a
    ``.keras`` file; a ModelLoadError that says how to get a model otherwise."""
    path = Path(target)
    if path.is_dir():
        run = RunDirectory(path)
        if not run.model.exists():
            raise ModelLoadError(f"{path} holds no model.keras", hint=_no_model_hint(run))
        return RunOrModel(run.model, run)
    if not path.exists():
        raise ModelLoadError(
            f"no such run directory or model file: {path}",
            hint="give a run directory written by 'seq train' (runs/NAME), or a .keras file",
        )
    if path.suffix != ".keras":
        raise ModelLoadError(
            f"{path} is not a .keras model file",
            hint="give a run directory written by 'seq train', or a file saved as .keras",
        )
    return RunOrModel(path)


def _no_model_hint(run: RunDirectory) -> str:
    """How to get a model out of a folder that has none yet: an interrupted run, an unfinished transfer."""
    if run.checkpoint.exists():
        return (
            f"the run was interrupted before it finished: continue it with 'seq train SPEC --output {run.path} "
            "--resume'"
        )
    if run.phase(1).path.is_dir():
        return (
            "a 'seq transfer' folder gets its model.keras when its last phase (phase1, or phase2 when it fine-tunes) "
            f"finishes: continue it with 'seq transfer SPEC --output {run.path} --resume', or give {run.phase(1).path}"
        )
    return "give a run directory written by 'seq train' or 'seq transfer', or a .keras file"
