"""What a writing command may do to the disk: one door, :func:`claim_output`, that every command writing
a file or a folder passes through (``seq train``, ``transfer``, ``tune``, ``export``, ``extract``, ``predict``,
``freeze``, ``plot``, ``import``, ``init``, ``schema``).

- An output that exists is refused unless ``--overwrite`` is given; an output of the wrong kind (a folder
  where a file goes, a file where a folder goes) is refused before any work.
- A folder seq writes lists its members exactly in a manifest (:mod:`seqcli.manifest`); ``--overwrite``
  removes only those, and is refused when the folder holds anything else, a member changed since seq wrote
  it, or a manifest seq cannot trust. A folder holding a symbolic link is written inside, never through:
  it is refused.
- An output never equals or contains an input (spec, data, weights, models, a run read), and never lies
  inside an input folder; it is never one of seq's own working files (a lock, a manifest).
- The filesystem root, the home folder and the current folder (or a folder above it) are never an
  output folder.
- Temporary files and staging folders are named with :data:`seqcli.files.TEMPORARY_PREFIX` and the
  process id; :func:`clean_stale` removes those of processes that are gone.
- One writer at a time: the command holds an OS lock (``flock``) for its whole run, on :data:`LOCK` in the
  output folder, or for a single file on ``.NAME.seq-lock`` beside it (removed at the end, see
  :func:`exclusive_lock`), so that two commands writing two files of one folder do not wait on each other.
  A second writer of the same folder or file, or of a file in a folder another command holds (a run being
  trained), is refused as "in use"; the OS drops the lock when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from seqcli.files import TEMPORARY_PREFIX, check_writable_file
from seqcli.manifest import (
    INTERNAL,
    LOCK,
    MANIFEST,
    PROBE,
    RETIRED_SUFFIX,
    TEMPORARY,
    ManifestError,
    OutputRefused,
    judge,
    listing,
    read_manifest,
    record_members,
    refusal,
    remove_members,
)

_HELD: set[str] = set()  # the folders whose lock this process holds


class OutputInUse(OutputRefused):
    """A run directory another seq process is writing."""

    kind = "environment"


# ----------------------------------------------------------------------------- the door


@contextlib.contextmanager
def claim_output(
    target: str | Path,
    command: str,
    *,
    folder: bool,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    own_ok: bool = False,
    resume: bool = False,
    adopt: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """Check ``target`` (a ``folder`` seq fills, else one file) as every writing command must, then hold
    the one-writer lock while the block writes it; see the module docstring. A folder made here that is
    left holding nothing but the lock is removed again when the block ends. ``adopt`` first records what a
    killed writer of the folder made but had not yet recorded, where the folder's kind knows it exactly."""
    target = Path(target)
    inputs = list(inputs)

    def check() -> None:
        if folder:
            check_output_folder(target, inputs=inputs, overwrite=overwrite, own_ok=own_ok, resume=resume)
        else:
            check_output_file(target, inputs=inputs, overwrite=overwrite)

    home = target if folder else target.parent
    if adopt is not None and (overwrite or resume):
        adopt()
    try:
        check()  # before anything is made: a refused output is left as it was
    except OutputRefused:
        _raise_if_in_use(home)  # what another command is writing is "in use", whatever it holds now
        raise
    check_writable_file(target, directory_ok=folder)  # its folder made and proven writable
    created = _make_folder(home)
    try:
        if folder:
            # A lock file made here stays in a folder seq wrote (another command may be waiting on it), not
            # in a folder it wrote nothing in.
            lock = exclusive_lock(home, command, transient=lambda: not (target / MANIFEST).exists())
        else:
            _raise_if_in_use(home)  # a file in a folder another command writes (a run being trained)
            lock = exclusive_lock(home, command, transient=True, name=file_lock_name(target), what=target)
        with lock:
            check()  # again, now that no other seq command can change it
            yield target
    finally:
        if created is not None:
            _remove_if_bare(created)


def _check_kind(target: Path, folder: bool) -> None:
    if target.name in INTERNAL or TEMPORARY.match(target.name) or target.name.endswith((RETIRED_SUFFIX, LOCK)):
        raise OutputRefused(f"--output {target} is one of seq's own working files", hint="choose another --output")
    if folder and (target.is_symlink() and not target.is_dir() or target.exists() and not target.is_dir()):
        raise OutputRefused(
            f"--output {target} is a file, and this command writes a folder there",
            hint="choose another --output (a new or empty folder)",
        )
    if not folder and target.is_dir():
        raise OutputRefused(
            f"--output {target} is a folder, and this command writes a file there",
            hint="give --output a file name",
        )


def _make_folder(folder: Path) -> Path | None:
    """Create ``folder`` (and its parents); returns the topmost folder made, None when it existed."""
    if folder.is_dir():
        return None
    made = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputRefused(
            f"cannot create the folder {folder}: {error.strerror or error}",
            hint="choose another --output, or fix the permissions of its parent",
        ) from error
    return made


def _remove_if_bare(folder: Path) -> None:
    """Remove a folder this command made when only empty folders and a lock file are in it."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for root, folders, files in os.walk(folder):
        if any(name != LOCK for name in files) or any(Path(root, f).is_symlink() for f in folders):
            return
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- checks before writing


def check_output_file(target: str | Path, *, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """A single output file (predictions, a frozen model, an ``.npz`` of features): never one of
    ``inputs`` nor inside an input folder, never a folder; an existing file only with ``overwrite``.
    Removes stale temporary files of dead seq processes beside it."""
    target = Path(target)
    _check_kind(target, folder=False)
    _check_not_an_input(target, inputs)
    _check_not_a_member(target)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputRefused(f"{target} exists", hint="add --overwrite to replace it, or choose another --output")
    with contextlib.suppress(OSError):
        clean_stale(target.resolve().parent)
    return target


def _check_not_a_member(target: Path) -> None:
    """A single file is never one that a folder seq fills lists as its own (a run's spec.yaml or curves.png):
    replacing it would change the run behind its manifest's back, and its writer's --overwrite would then
    refuse the run."""
    resolved = target.resolve()
    for folder in resolved.parents:
        with contextlib.suppress(ManifestError, OSError):
            manifest = read_manifest(folder)
            if manifest is not None and resolved.relative_to(folder).as_posix() in manifest.members:
                raise OutputRefused(
                    f"--output {target} is a file of {folder}, which {manifest.writer} wrote",
                    hint="write the output outside that folder, or beside its files under another name",
                )


def check_output_folder(
    target: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    own_ok: bool = False,
    resume: bool = False,
) -> Path:
    """A folder seq fills (a run directory, an extract folder). Refused: a folder that may never be an
    output (root, home, the current folder or above), one that is or holds an input, one holding a link, an
    existing folder that holds anything seq did not write (or, with ``overwrite``, a member changed since),
    and one of seq's own without ``overwrite`` (unless ``own_ok``: the caller decides, as ``seq train`` does
    about a run). ``resume`` accepts a folder of seq's own as it is (nothing is removed); an empty folder is
    used as it is."""
    target = Path(target)
    _check_kind(target, folder=True)
    _check_not_a_home(target)
    _check_not_an_input(target, inputs)
    with contextlib.suppress(OSError):  # staging folders lie beside the target
        recover_replaced(target)
        clean_stale(target.resolve().parent)
    if not target.is_dir():
        return target
    clean_stale(target)
    _check_no_links(target)
    if not any(_visible(target)):
        return target
    judgement = judge(target)
    if judgement.foreign and not resume or overwrite and judgement.changed:
        raise refusal(target, judgement, overwrite=overwrite)
    if not (overwrite or own_ok or resume):
        raise OutputRefused(f"{target} exists", hint="add --overwrite to replace it, or choose another --output")
    return target


def _check_no_links(folder: Path) -> None:
    """seq writes inside its folders, never through a link in them (``logs -> elsewhere``)."""
    links = [
        Path(root, name).relative_to(folder).as_posix()
        for root, folders, files in os.walk(folder)
        for name in [*folders, *files]
        if Path(root, name).is_symlink()
    ]
    if links:
        raise OutputRefused(
            f"{folder} holds the symbolic link{'s' if len(links) > 1 else ''} {listing(links)}; "
            "seq writes inside its folders, never through a link",
            hint="replace the link with a folder, or choose another --output",
        )


def _check_not_a_home(target: Path) -> None:
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor):
        what = "the filesystem root"
    elif resolved == home:
        what = "your home folder"
    elif resolved == cwd or resolved in cwd.parents:
        what = "the current folder" if resolved == cwd else "a folder that holds the current folder"
    else:
        return
    raise OutputRefused(
        f"--output {target} is {what}; seq never writes its files loose in such a folder",
        hint=f"name a new folder for them, e.g. --output {target / 'run'}",
    )


def _check_not_an_input(target: Path, inputs: Iterable[str | Path]) -> None:
    resolved = target.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if resolved == source:
            raise OutputRefused(
                f"--output {target} is an input of this command",
                hint="write the output to another path; seq never replaces its inputs",
            )
        if resolved in source.parents:
            raise OutputRefused(
                f"--output {target} holds an input of this command: {item}",
                hint="choose an --output folder that holds none of the spec, data or weights",
            )
        if source.is_dir() and source in resolved.parents:
            raise OutputRefused(
                f"--output {target} is inside the input folder {item}", hint="write outputs outside the data folders"
            )


def replace_folder(staged: Path, target: Path) -> None:
    """Put the finished folder ``staged`` (which holds its manifest) at ``target``: a folder there is first
    judged again (exactly what seq wrote, as it wrote it), moved aside, then removed. The lock file this
    command holds in ``target`` moves into the new folder first (a rename keeps the lock)."""
    if target.is_dir():
        judgement = judge(target)
        if not judgement.clean():
            raise refusal(target, judgement, overwrite=True)
        if (target / LOCK).is_file():
            os.replace(target / LOCK, staged / LOCK)
        retired = _retired(target)
        os.replace(target, retired)  # a kill from here on: the next command puts it back (recover_replaced)
        os.replace(staged, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, target)


def _retired(target: Path) -> Path:
    """Where a folder being replaced waits: a name seq's stale-file cleaning never removes."""
    return target.with_name(f".{target.name}{RETIRED_SUFFIX}")


def recover_replaced(target: Path) -> None:
    """After a kill inside :func:`replace_folder`: the old folder goes back when nothing took its place, and is
    removed when the new one is in place."""
    retired = _retired(target)
    if not retired.is_dir():
        return
    if target.exists():
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(retired, target)


def _visible(folder: Path) -> Iterator[Path]:
    return (e for e in folder.iterdir() if e.name not in (LOCK, PROBE) and not TEMPORARY.match(e.name))


# ----------------------------------------------------------------------------- leftovers


def clean_stale(folder: Path, *, every_process: bool = False) -> list[Path]:
    """Remove the temporary files and staging folders that seq processes which are gone left in ``folder``
    (and in its subfolders with ``every_process``, which also removes those of live processes: for a run
    directory whose lock this process holds). Returns what was removed."""
    removed = []
    entries = folder.rglob(TEMPORARY_PREFIX + "*") if every_process else folder.glob(TEMPORARY_PREFIX + "*")
    for entry in list(entries):
        match = TEMPORARY.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if not every_process and (pid == os.getpid() or process_alive(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------- one writer


@contextlib.contextmanager
def exclusive_lock(
    folder: Path,
    command: str,
    *,
    transient: bool | Callable[[], bool] = False,
    name: str = LOCK,
    what: Path | None = None,
) -> Iterator[None]:
    """Hold an exclusive OS lock on ``folder``'s :data:`LOCK` file while the block runs; another process
    holding it is an :class:`OutputInUse` naming it (PID, host, start time). The lock file stays behind,
    unlocked, unless ``transient`` (or ``transient()`` at the end) and this process made it: it is
    removed while still held, and whoever locked the removed file finds it is no longer the one at the
    path and locks again, so two processes never hold two different lock files."""
    import fcntl

    path = Path(folder) / name
    what = folder if what is None else what
    key = str(path.parent.resolve() / name)
    if key in _HELD:  # this process holds it already (two outputs of one command in one folder)
        yield
        return
    for _ in range(100):
        fd, made = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputInUse(
                f"{what} is in use: {holder} is writing it",
                hint="wait for that run to end, or choose another --output",
            ) from None
        if _still_at(fd, path):
            break
        os.close(fd)  # removed or replaced between the open and the lock: lock the one there now
    else:
        raise OutputInUse(f"{what} is in use: its lock file keeps changing", hint="try again")
    _HELD.add(key)
    try:
        _write_holder(fd, command)
        yield
    finally:
        _HELD.discard(key)
        if made and (transient() if callable(transient) else transient):
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)


def file_lock_name(target: Path) -> str:
    """The lock file of a single output file, beside it: two commands writing two files of one folder do not
    wait on each other."""
    return f".{target.name[:200]}{LOCK}"


def _open_lock(path: Path) -> tuple[int, bool]:
    """The lock file, opened without following a link; whether this call made it."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0)
    try:
        for _ in range(100):
            try:
                return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                with contextlib.suppress(FileNotFoundError):  # removed by its last holder since: make it
                    return os.open(path, flags), False
        raise OSError(f"{path.name} keeps appearing and disappearing")
    except OSError as error:
        kind = "a link or not a plain file" if path.is_symlink() or path.is_dir() else "not writable"
        raise OutputRefused(
            f"cannot lock {path.parent}: its lock file {path.name} is {kind} ({error.strerror or error})",
            hint="remove it if no seq command runs there, or choose another --output",
        ) from error


def _still_at(fd: int, path: Path) -> bool:
    try:
        now, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) and stat.S_ISREG(held.st_mode)


def _write_holder(fd: int, command: str) -> None:
    holder = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _raise_if_in_use(folder: Path) -> None:
    """:class:`OutputInUse` when another process holds ``folder``'s lock (nothing is made or changed)."""
    import fcntl

    if str(Path(folder).resolve() / LOCK) in _HELD:
        return
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputInUse(
            f"{folder} is in use: {_holder(fd)} is writing it",
            hint="wait for that run to end, or choose another --output",
        ) from None
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{data.get('command', 'seq')} (PID {data['pid']} on {data['host']}, started {data['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another seq process"


__all__ = [
    "LOCK",
    "MANIFEST",
    "ManifestError",
    "OutputInUse",
    "OutputRefused",
    "check_output_file",
    "check_output_folder",
    "claim_output",
    "clean_stale",
    "exclusive_lock",
    "judge",
    "read_manifest",
    "record_members",
    "remove_members",
    "replace_folder",
]
