"""Resuming a run: is the spec the same, are the files it reads the same, and where does it stand.

A checkpoint records a fingerprint of everything in the spec that decides a run's steps (file paths made
absolute, the seed used; less what its sections declare a resume may change,
:class:`~seqcli.specfile.sections.SpecSections`) and the size and sha256 of every file the run reads.
Resuming compares both with the spec and files of today and never trains fewer epochs than the run has started.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seqcli.files import keep_copy
from seqcli.inputs import CHUNK, open_input
from seqcli.specfile import Spec, format_path
from seqcli.specfile.fingerprint import comparable, fingerprint, may_change_in_words
from seqcli.specfile.paths import absolute_file_fields, file_fields
from seqcli.training.checkpoint import TrainingState, usable_checkpoint
from seqcli.training.rundir import RunDirectory, RunDirectoryError

HASHED_FILE_BYTES = 50 << 20  # input files up to this size are compared by sha256 on resume, larger by mtime


def run_fingerprint(spec: Spec, seed: int | None) -> str:
    """A hash of everything in the spec that decides the steps of a run (:func:`comparable_spec`). The files it
    reads are compared on their own (:func:`input_files`)."""
    return fingerprint(comparable_spec(spec, seed))


def comparable_spec(spec: Spec, seed: int | None) -> dict:
    """The spec with file paths made absolute and the seed actually used, less what its sections declare a
    resumed run may change (train.epochs, train.checkpoint_every, distribute)."""
    data = comparable(absolute_file_fields(spec.resolved(), spec.base_dir), "run")
    if not isinstance(data.get("train"), dict):
        data["train"] = {}
    data["train"]["seed"] = seed
    return data


def input_files(spec: Spec) -> dict[str, dict]:
    """Size and sha256 (size and modification time above ``HASHED_FILE_BYTES``; names, sizes and times for
    an image folder) of every local file that decides a run's steps: training and validation data, base
    weights and models, ``transfer.weights``; the shards of a glob or a list share one ``HASHED_FILE_BYTES``
    of hashing. Files that do not exist are left to the data and build checks."""
    data = absolute_file_fields(spec.resolved(), spec.base_dir)
    shard_bytes = HASHED_FILE_BYTES  # left to hash among shards
    files = {}
    for path, shard in _step_files(data).items():
        if Path(path).exists():
            files[path] = _file_digest(Path(path), shard_bytes if shard else HASHED_FILE_BYTES)
            if shard and "sha256" in files[path]:
                shard_bytes -= files[path]["size"]
    return files


def _step_files(data: dict) -> dict[str, bool]:
    """The files that decide a run's steps (every file the spec names but ``data.test``), each with whether it
    is a shard (a glob's match or a list's file): shards share one :data:`HASHED_FILE_BYTES` of hashing, the
    rest compared by size and time, so that thousands of shards are not read whole before each run."""
    fields = [field for field in file_fields(data) if field.path[:2] != ("data", "test")]
    found: dict[str, bool] = {}
    for field in fields:
        shard = field.pattern or isinstance(field.path[-1], int)
        for path in field.files(Path.cwd()):
            found.setdefault(str(path), shard)
    return found


def _file_digest(path: Path, hashed_up_to: int = HASHED_FILE_BYTES) -> dict:
    if path.is_dir():
        listing = sorted(
            (str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns) for f in path.rglob("*") if f.is_file()
        )
        return {"files": len(listing), "listing": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}
    status = path.stat()
    if status.st_size > hashed_up_to:
        return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    digest = hashlib.sha256()
    with open_input(path, "resume", limit=None) as handle:  # the door: a FIFO never blocks here
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return {"size": status.st_size, "sha256": digest.hexdigest()}


def changed_file(before: dict[str, dict] | None, now: dict[str, dict]) -> str | None:
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
    added = [path for path in now if before is not None and path not in before]
    return f"{added[0]} (a new file the data's glob matches)" if added else None


# ----------------------------------------------------------------------------- before training


def resume_state(
    spec: Spec, run: RunDirectory, *, resume: bool, overwrite: bool
) -> tuple[TrainingState | None, str | None]:
    """The state to continue from when resuming (checked against today's spec and files), else None after
    making sure a new run may start in ``run``; and a note when the run resumes from the checkpoint before
    its last one (the last is missing or damaged, and is then replaced by that one)."""
    output = run.path
    if not resume:
        if run.holds_run() and not overwrite:
            raise RunDirectoryError(
                f"{output} already holds a run ({run.describe()})",
                hint="continue it with --resume, replace it with --overwrite, or choose another --output",
            )
        return None, None
    require_checkpoint(run)
    checkpoint, state, note = usable_checkpoint(run.checkpoint, run.previous)
    seed = spec.train.seed if spec.train.seed is not None else state.seed
    if run_fingerprint(spec, seed) != state.fingerprint:
        raise RunDirectoryError(
            f"cannot resume {output}: the spec changed since the checkpoint was written"
            f"{_changes(state.spec, comparable_spec(spec, seed))}",
            hint="undo the changes to resume, or start a new run with --overwrite or another "
            f"--output (only {may_change_in_words('run')} may change on resume)",
        )
    files = input_files(spec)
    changed = changed_file(state.files, files)
    if changed:
        raise RunDirectoryError(
            f"cannot resume {output}: a file the run reads changed since the checkpoint was written: {changed}",
            hint="restore the file to resume, or start a new run with --overwrite or another --output",
        )
    check_epochs(spec, output, state)
    if checkpoint != run.checkpoint:  # every reader of the run's state reads the last checkpoint
        keep_copy(checkpoint, run.checkpoint)
    state.epochs = spec.train.epochs
    state.files = files
    return state, note


def require_checkpoint(run: RunDirectory) -> None:
    """A run to resume: its checkpoint exists (else nothing may be written in the folder)."""
    if not run.checkpoint.exists() and not run.previous.exists():
        raise RunDirectoryError(
            f"nothing to resume: {run.path} has no checkpoint ({run.checkpoint.relative_to(run.path)})",
            hint="start the run without --resume",
        )


def check_epochs(spec: Spec, output: Path, state: TrainingState) -> None:
    """A resumed run trains on from where it stands: no fewer epochs than it has started."""
    least = state.epoch + (1 if state.step else 0)
    if spec.train.epochs < least:
        raise RunDirectoryError(
            f"cannot resume {output} with train.epochs {spec.train.epochs}: the run stands at "
            f"{state.position()}, so it needs at least {least} epochs",
            hint=f"resume with --epochs {max(state.epochs, least)} (or any number from {least}), "
            "or start a new run with --overwrite or another --output",
        )


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
