"""Checkpoints: everything needed to continue a run exactly where it stopped, in one atomic file.

A checkpoint is an ``.npz`` archive: the model's variables (weights, non-trainable state and the
random-seed state of layers such as Dropout), the optimizer's variables (its step counter, moments,
learning rate), the metrics' running totals, and a JSON record of where the run stands (epoch, step
inside the epoch, seed, history so far, early-stopping state, the spec's fingerprint and the digests of
the files the run reads).

Values are plain NumPy arrays in the model's variable order, so a checkpoint does not depend on
the distribution strategy that wrote it: a run may resume on a different number of devices.
Writes go through :func:`seqcli.files.atomic_path`; the previous checkpoint stays until the new
one is complete, and the last checkpoint's predecessor is kept beside it (``previous.npz``), so that a
checkpoint damaged after it was written (a bad disk, a copy cut short) costs one checkpoint interval,
not the run: :func:`usable_checkpoint`. Reading the record (:func:`read_state`) needs no TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqcli import archives, records
from seqcli.budget import LimitError
from seqcli.errors import SeqError
from seqcli.files import atomic_path, keep_copy
from seqcli.records import RecordError
from seqcli.stages import stage

FORMAT = 1
GROUPS = ("model", "optimizer", "metrics")


DAMAGED_HINT = "the file changed after seq wrote it; start the run again with --overwrite"


class CheckpointError(SeqError):
    """A checkpoint that cannot be read, written, or does not fit the model."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint that is missing, or whose bytes are not what seq wrote (not a zip, a failed CRC)."""


@dataclass
class TrainingState:
    """Where a run stands. ``epoch`` is the epoch in progress (0-based; equal to the number of
    finished epochs), ``step`` the optimizer steps already taken inside it."""

    fingerprint: str
    seed: int
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    early_stopping: dict[str, Any] | None = None
    finished: bool = False
    stopped_early: bool = False
    elapsed: float = 0.0
    spec: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] | None = None  # input file -> size, sha256 or mtime (training.resume)
    adapted: dict[str, dict[str, Any]] | None = None  # layer index -> state learned from the data (build.adapt)
    format: int = FORMAT

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def position(self) -> str:
        """'epoch 3/20, step 12/23' (1-based epoch) or 'end of epoch 3/20'."""
        if self.step == 0:
            return f"end of epoch {self.epoch}/{self.epochs}" if self.epoch else "the start"
        return f"epoch {self.epoch + 1}/{self.epochs}, step {self.step}/{self.steps_per_epoch}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_json_default)

    @classmethod
    def from_json(cls, text: str, path: Path) -> TrainingState:
        """The record read back from a checkpoint at ``path``, through :func:`seqcli.records.parse_json`."""
        data = records.parse_json(text, path, "a checkpoint seq wrote")
        if not isinstance(data, dict):
            raise ValueError("its record is not a JSON object")
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


def read_state(path: str | Path) -> TrainingState:
    """The record of a checkpoint, without loading its arrays (or TensorFlow)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with archives.load_npz(path, "checkpoint") as archive:
            state = TrainingState.from_json(str(archive["meta"]), path)
    except LimitError as error:  # not a zip, forged sizes, or over the memory budget
        detail = error.detail  # "PATH is not a readable zip archive: ...", or "cannot read PATH: why"
        if detail.startswith(str(path)):
            message = f"checkpoint {detail}"
        else:
            message = f"cannot read checkpoint {path}: {detail.removeprefix(f'cannot read {path}: ')}"
        raise CheckpointError(message, hint=error.hint or DAMAGED_HINT) from error
    except RecordError as error:
        raise CheckpointError(f"checkpoint {error.message}", hint=DAMAGED_HINT) from error
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}", hint=DAMAGED_HINT) from error
    if state.format > FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state.format}; this seq reads format {FORMAT}",
            hint="upgrade seq to resume this run",
        )
    return state


def verify_checkpoint(path: str | Path) -> TrainingState:
    """The record of a checkpoint whose every member passes its CRC check: one that resuming can trust. A
    missing file, or one whose bytes are not what seq wrote, is a :class:`DamagedCheckpoint`; a sound one
    that cannot be used (a newer format, over the memory budget, unreadable) a plain CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise DamagedCheckpoint(f"no checkpoint at {path}")
    try:
        state = read_state(path)  # within the memory budget: the members' declared sizes are checked first
    except CheckpointError:
        if not zipfile.is_zipfile(path):
            raise DamagedCheckpoint(f"checkpoint {path} is damaged: it is not a zip archive", hint=DAMAGED_HINT)
        raise
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {error}", hint=DAMAGED_HINT) from error
    if bad is not None:
        raise DamagedCheckpoint(f"checkpoint {path} is damaged: {bad} fails its CRC check", hint=DAMAGED_HINT)
    return state


def usable_checkpoint(last: Path, previous: Path) -> tuple[Path, TrainingState, str | None]:
    """The checkpoint to resume from, its record, and a note when it is not ``last``: ``last`` unless it is
    missing or damaged and ``previous`` (the checkpoint written before it) is sound. A last checkpoint that
    is sound but cannot be used is never passed over: its error stands."""
    try:
        return last, verify_checkpoint(last), None
    except DamagedCheckpoint as error:
        if not previous.exists():
            raise
        try:
            state = verify_checkpoint(previous)
        except CheckpointError as before:
            raise CheckpointError(
                f"{error.message}; the checkpoint before it cannot be used either: {before.message}",
                hint=before.hint if not isinstance(before, DamagedCheckpoint) else DAMAGED_HINT,
            ) from before
        return previous, state, f"resumed from {previous}, the checkpoint before the last: {error.message}"


@stage("checkpoint: copy the variables")
def snapshot(model, state: TrainingState, *, groups: tuple[str, ...] = GROUPS) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint, copied now: training may go on while :func:`write_snapshot` writes them."""
    arrays: dict[str, np.ndarray] = {"meta": np.array(state.to_json())}
    for group in groups:
        for index, variable in enumerate(_variables(model, group)):
            arrays[f"{group}/{index:05d}"] = np.array(variable.numpy(), copy=True)
    return arrays


def restamp(path: str | Path, state: TrainingState) -> dict[str, np.ndarray]:
    """A checkpoint's arrays as they are on disk, with ``state`` as its record: for marking a run finished
    that trained no step since that checkpoint (its metric variables are not built again until it does)."""
    with archives.load_npz(path, "checkpoint") as archive:
        arrays = {name: archive[name] for name in archive.files if name != "meta"}
    return {"meta": np.array(state.to_json()), **arrays}


@stage("checkpoint: write")
def write_snapshot(path: str | Path, arrays: dict[str, np.ndarray], previous: Path | None = None) -> None:
    """Write a :func:`snapshot` atomically: a kill or a full disk leaves the previous file intact. With
    ``previous``, the file being replaced is kept there (once the new one is complete)."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=".npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, allow_pickle=False, **arrays)  # what load_npz reads back
            if previous is not None and path.exists():
                keep_copy(path, previous)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}",
            hint="the previous checkpoint is intact; free space or fix permissions, then continue with --resume",
        ) from error


def restore_variables(path: str | Path, model, *, groups: tuple[str, ...] = ("model", "optimizer")) -> None:
    """Assign the checkpoint's values to ``model``'s variables (the optimizer must be built)."""
    with archives.load_npz(path, "checkpoint") as archive:
        for group in groups:
            variables = _variables(model, group)
            values = _group_values(archive, group)
            _check_group(path, group, variables, values)
            for variable, value in zip(variables, values):
                variable.assign(value)


def restore_metrics(path: str | Path, model, strategy=None) -> bool:
    """Put the checkpoint's running metric totals back (the epoch in progress); False when they do not fit."""
    with archives.load_npz(path, "checkpoint") as archive:
        values = _group_values(archive, "metrics")
    variables = _variables(model, "metrics")
    if (
        not values
        or len(values) != len(variables)
        or any(tuple(v.shape) != value.shape for v, value in zip(variables, values))
    ):
        return False
    if strategy is None or strategy.num_replicas_in_sync == 1:
        for variable, value in zip(variables, values):
            variable.assign(value)
        return True
    return _assign_on_first_replica(strategy, variables, values)


def _assign_on_first_replica(strategy, variables, values) -> bool:
    """Metric totals are summed over replicas when read: give replica 0 the totals, the others zero."""
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()

    def assign():
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        for variable, value in zip(variables, values):
            variable.assign(tf.where(first, tf.constant(value), tf.zeros_like(value)))

    try:
        strategy.run(assign)
    except (ValueError, TypeError, NotImplementedError, RuntimeError):
        return False
    return True


def _variables(model, group: str) -> list:
    if group == "model":
        return list(model.variables)
    if group == "optimizer":
        return list(model.optimizer.variables) if model.optimizer is not None else []
    return list(model.metrics_variables)


def _group_values(archive, group: str) -> list[np.ndarray]:
    names = sorted(name for name in archive.files if name.startswith(group + "/"))
    return [archive[name] for name in names]


def _check_group(path, group: str, variables: list, values: list[np.ndarray]) -> None:
    if len(variables) != len(values):
        raise CheckpointError(
            f"checkpoint {path} holds {len(values)} {group} variables, the model has {len(variables)}",
            hint="the checkpoint was written for a different model",
        )
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(
                f"checkpoint {path}: {group} variable {variable.path} has shape "
                f"{tuple(variable.shape)} in the model but {value.shape} in the checkpoint",
                hint="the checkpoint was written for a different model",
            )


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
