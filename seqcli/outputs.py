"""What a writing command may do to the disk: one rule for ``seq train``, ``transfer``, ``extract``,
``predict`` and ``freeze``.

- An output that exists is refused unless ``--overwrite`` is given.
- A folder seq writes (a run directory, an extract folder) lists its members in a manifest
  (:data:`MANIFEST`); ``--overwrite`` removes only those, and is refused when the folder holds
  anything else. A single output file may be replaced with ``--overwrite``.
- An output never equals or contains an input (spec, data, weights, models), and never lies inside
  an input folder.
- The filesystem root, the home folder and the current folder (or a folder above it) are never an
  output folder.
- Temporary files and staging folders are named with :data:`seqcli.files.TEMPORARY_PREFIX` and the
  process id; :func:`clean_stale` removes those of processes that are gone.
- A run directory has one writer at a time: :func:`exclusive_lock` holds an OS lock (``flock``) on
  :data:`LOCK` for the whole command; the OS drops it when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.files import TEMPORARY_PREFIX, write_text_atomic

MANIFEST = ".seq-run.json"
LOCK = ".seq-lock"
PROBE = ".seq-write-test"
INTERNAL = (MANIFEST, LOCK, PROBE)
FOREIGN_SHOWN = 8  # foreign entries named in an error; the rest are counted
_TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\d+)-")


class OutputRefused(SeqError):
    """An output that would replace or remove something seq did not write, or an input."""


class OutputInUse(OutputRefused):
    """A run directory another seq process is writing."""

    kind = "environment"


# ----------------------------------------------------------------------------- checks before writing


def check_output_file(target: str | Path, *, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """A single output file (predictions, a frozen model, an ``.npz`` of features): never one of
    ``inputs`` nor inside an input folder; an existing file only with ``overwrite``. Removes stale
    temporary files of dead seq processes beside it."""
    target = Path(target)
    _check_not_an_input(target, inputs)
    if target.exists() and not target.is_dir() and not overwrite:
        raise OutputRefused(f"{target} exists", hint="add --overwrite to replace it, or choose another --output")
    with contextlib.suppress(OSError):
        clean_stale(target.resolve().parent)
    return target


def check_output_folder(
    target: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    own_ok: bool = False,
    resume: bool = False,
    members: list[str] | None = None,
) -> Path:
    """A folder seq fills (a run directory, an extract folder). Refused: a folder that may never be an
    output (root, home, the current folder or above), one that is or holds an input, an existing folder that
    holds anything seq did not write, and one of seq's own without ``overwrite`` (unless ``own_ok``: the
    caller decides, as ``seq train`` does about a run). ``resume`` accepts any existing folder (nothing is
    removed); an empty folder is used as it is. ``members`` stand in for a missing manifest."""
    target = Path(target)
    _check_not_a_home(target)
    _check_not_an_input(target, inputs)
    with contextlib.suppress(OSError):  # staging folders lie beside the target
        recover_replaced(target)
        clean_stale(target.resolve().parent)
    if not target.is_dir():
        return target
    clean_stale(target)
    if resume or not any(_visible(target)):
        return target
    foreign = foreign_entries(target, members if read_manifest(target) is None else None)
    if foreign:
        raise OutputRefused(
            f"cannot overwrite {target}: it holds {_listing(foreign)} that seq did not write; nothing was removed"
            if overwrite
            else f"{target} exists and holds {_listing(foreign)} that seq did not write",
            hint="move those out of the folder, or choose another --output"
            if overwrite
            else "choose another --output (a new or empty folder)",
        )
    if not (overwrite or own_ok):
        raise OutputRefused(f"{target} exists", hint="add --overwrite to replace it, or choose another --output")
    return target


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


# ----------------------------------------------------------------------------- the manifest


def read_manifest(folder: Path) -> list[str] | None:
    """The members a folder's manifest lists (paths relative to it, ``*`` globs allowed), or None."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        members = data["members"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(m) for m in members] if isinstance(members, list) else None


def record_members(folder: Path, members: Iterable[str], writer: str) -> None:
    """Add ``members`` to ``folder``'s manifest, before they are written: a kill between the two leaves
    a manifest that claims a file not yet there, never a file that it does not claim."""
    known = read_manifest(folder) or []
    merged = known + [m for m in members if m not in known]
    if merged == known and (folder / MANIFEST).exists():
        return
    text = json.dumps({"written_by": writer, "members": merged}, indent=1) + "\n"
    write_text_atomic(folder / MANIFEST, text)


def foreign_entries(folder: Path, members: list[str] | None = None) -> list[str]:
    """Paths (relative to ``folder``) of the entries its manifest does not claim; a member folder with its
    own manifest is judged by that one. Without a manifest every entry is foreign."""
    members = read_manifest(folder) if members is None else members
    return _foreign(folder, "", members or [])


def _foreign(folder: Path, prefix: str, members: list[str]) -> list[str]:
    found = []
    for entry in sorted(folder.iterdir()):
        relative = prefix + entry.name
        if entry.name in INTERNAL or _TEMPORARY.match(entry.name):
            continue
        claimed = any(fnmatch.fnmatchcase(relative, member) for member in members)
        if entry.is_dir() and not entry.is_symlink() and claimed:  # a member folder, named or by a glob
            nested = read_manifest(entry)
            found += (
                [relative + "/" + f for f in foreign_entries(entry, nested)]
                if nested is not None
                else _foreign(entry, relative + "/", members)
            )
        elif not claimed or entry.is_dir():
            found.append(relative + ("/" if entry.is_dir() else ""))
    return found


def remove_members(folder: Path) -> None:
    """Remove what ``folder``'s manifest claims (files, then the member folders left empty), nothing else.
    Refuses when the folder holds anything else."""
    members = read_manifest(folder) or []
    foreign = foreign_entries(folder, members)
    if foreign:
        raise OutputRefused(
            f"cannot overwrite {folder}: it holds {_listing(foreign)} that seq did not write; nothing was removed",
            hint="move those out of the folder, or choose another --output",
        )
    folders = []
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            folders.append(path)
        elif any(fnmatch.fnmatchcase(relative, member) for member in members):
            path.unlink()
    for path in folders:
        with contextlib.suppress(OSError):
            path.rmdir()


def replace_folder(staged: Path, target: Path) -> None:
    """Put the finished folder ``staged`` (which holds its manifest) at ``target``: a folder there is first
    checked again (nothing seq did not write), moved aside, then removed."""
    if target.is_dir():
        foreign = foreign_entries(target)
        if foreign:
            raise OutputRefused(
                f"cannot overwrite {target}: it holds {_listing(foreign)} that seq did not write; nothing was removed",
                hint="move those out of the folder, or choose another --output",
            )
        retired = _retired(target)
        os.replace(target, retired)  # a kill from here on: the next command puts it back (recover_replaced)
        os.replace(staged, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, target)


def _retired(target: Path) -> Path:
    """Where a folder being replaced waits: a name seq's stale-file cleaning never removes."""
    return target.with_name(f".{target.name}.seq-replaced")


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
    return (e for e in folder.iterdir() if e.name not in (LOCK, PROBE) and not _TEMPORARY.match(e.name))


def _listing(entries: list[str]) -> str:
    shown = ", ".join(entries[:FOREIGN_SHOWN])
    more = f" and {len(entries) - FOREIGN_SHOWN} more" if len(entries) > FOREIGN_SHOWN else ""
    return shown + more


# ----------------------------------------------------------------------------- leftovers


def clean_stale(folder: Path, *, every_process: bool = False) -> list[Path]:
    """Remove the temporary files and staging folders that seq processes which are gone left in ``folder``
    (and in its subfolders with ``every_process``, which also removes those of live processes: for a run
    directory whose lock this process holds). Returns what was removed."""
    removed = []
    entries = folder.rglob(TEMPORARY_PREFIX + "*") if every_process else folder.glob(TEMPORARY_PREFIX + "*")
    for entry in list(entries):
        match = _TEMPORARY.match(entry.name)
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
def exclusive_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold an exclusive OS lock on ``folder``'s :data:`LOCK` file while the block runs; another process
    holding it is an :class:`OutputInUse` naming it (PID, host, start time). The lock file stays behind,
    unlocked: removing it would let two processes lock two different files."""
    import fcntl

    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUse(
                f"{folder} is in use: {_holder(fd)} is writing it",
                hint="wait for that run to end, or choose another --output",
            ) from None
        holder = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
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
    "OutputInUse",
    "OutputRefused",
    "check_output_file",
    "check_output_folder",
    "clean_stale",
    "exclusive_lock",
    "foreign_entries",
    "read_manifest",
    "record_members",
    "remove_members",
    "replace_folder",
]
