"""Files: paths relative to a spec, and writing output files (check up front that a target can be
written, then write it atomically).

:func:`atomic_path` writes a temporary file beside the target, flushed and fsynced, then renamed over
it: a kill or a full disk mid-write leaves the previous good file intact. What goes wrong with the
target's folder (it cannot be created, written in, or renamed into) is an :class:`OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.stages import stage

# Every temporary file or staging folder seq makes starts with this prefix and its process id, so that a
# later run can recognise (and remove) what a killed one left behind: :func:`seqcli.outputs.clean_stale`.
TEMPORARY_PREFIX = ".seq-tmp-"


_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EMFILE}


class OutputError(SeqError, OSError):
    """An output file that cannot be written. Also an OSError, so callers that catch OSError around a
    write keep working; ``errno`` and ``strerror`` are those of the OS error behind it."""

    def __init__(self, message: str, hint: str | None = None, *, cause: OSError | None = None):
        super().__init__(message, hint)
        if cause is not None:
            self.errno, self.strerror = cause.errno, cause.strerror
        # A full, read-only or failing disk is the machine's; a path that cannot be a file is the input's.
        self.kind = "environment" if cause is not None and cause.errno in _MACHINE_ERRNOS else "input"

    def __str__(self) -> str:
        return self.message


def check_writable_file(target: str | Path, *, directory_ok: bool = False) -> Path:
    """Prove, before anything slow happens, that ``target`` can be written: create its folder if
    needed and write (then remove) a probe file there. With ``directory_ok`` an existing directory at
    ``target`` may be replaced; otherwise it is an error. Returns ``target`` as a Path; raises
    :class:`OutputError` saying what is wrong and how to fix it."""
    target = Path(target)
    if target.is_dir() and not directory_ok:
        raise OutputError(f"cannot write {target}: it is a directory", hint="give --output a file name")
    _make_parent(target)
    try:
        probe_directory(target.parent, temporary_prefix(target.name))
    except OSError as error:
        raise _output_error(
            f"cannot write {target}", error, f"choose another --output, or make {target.parent} writable"
        ) from error
    return target


def probe_directory(directory: str | Path, prefix: str = ".seq-write-test.") -> None:
    """Write and remove a small file in the existing folder ``directory``: the one writability probe.
    Raises the OSError that writing there gives."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".probe", dir=directory)
    try:
        os.write(fd, b"seq")
    finally:
        os.close(fd)
        os.unlink(name)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Failing to create the temporary file or to put it in place raises :class:`OutputError`; an error
    raised by the caller's own writing passes through unchanged. Either way ``target`` keeps its
    previous content and the temporary file is removed."""
    target = Path(target)
    _make_parent(target)
    try:
        fd, name = tempfile.mkstemp(
            prefix=temporary_prefix(target.name), suffix=suffix or target.suffix or ".tmp", dir=target.parent
        )
        os.close(fd)
    except OSError as error:
        raise _output_error(
            f"cannot write {target}", error, f"choose another output, or make {target.parent} writable"
        ) from error
    temporary = Path(name)
    try:
        yield temporary
        _replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def resolve_path(path: str | Path, base_dir: str | Path) -> Path:
    """``path`` with ``~`` expanded, relative to ``base_dir`` unless absolute (a spec's files are relative to
    the spec's folder)."""
    resolved = Path(os.path.expanduser(path))
    return resolved if resolved.is_absolute() else Path(base_dir) / resolved


GLOB_CHARACTERS = frozenset("*?[")
MAX_PATTERN_MATCHES = 100_000  # shards one glob may name


def is_pattern(text: str, base_dir: str | Path | None = None) -> bool:
    """Whether a file name is a glob (``data/train-*.npz``): it holds ``*``, ``?`` or ``[`` and, given the folder
    it is relative to, names no file or folder as it is written (``d[1].npz`` that exists is that file)."""
    if not any(character in GLOB_CHARACTERS for character in text):
        return False
    return base_dir is None or not os.path.lexists(resolve_path(text, base_dir))


def pattern_folder(pattern: str | Path, base_dir: str | Path) -> Path:
    """The folder a glob searches: its longest leading part without glob characters, resolved against
    ``base_dir``."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts[:-1]:
        if is_pattern(part):
            break
        fixed.append(part)
    return resolve_path(Path(*fixed) if fixed else Path("."), base_dir)


def matching_files(pattern: str, base_dir: str | Path, *, folders: bool = False) -> list[Path]:
    """The files (with ``folders``, the folders instead) a glob matches, relative to ``base_dir``, in sorted
    order; names starting with a dot match only a pattern that starts with one. At most
    :data:`MAX_PATTERN_MATCHES` (ValueError past it)."""
    import glob

    full = str(resolve_path(pattern, base_dir))
    keep = os.path.isdir if folders else os.path.isfile
    found = []
    for name in glob.iglob(full):
        if keep(name):
            found.append(Path(name))
            if len(found) > MAX_PATTERN_MATCHES:
                raise ValueError(f"matches more than {MAX_PATTERN_MATCHES:,} {'folders' if folders else 'files'}")
    return sorted(found)


def matching_sources(pattern: str, base_dir: str | Path) -> list[Path]:
    """What a glob of data shards names: the files it matches, or, when it matches none, the folders it
    matches (image folders read as one source). ValueError past :data:`MAX_PATTERN_MATCHES`."""
    return matching_files(pattern, base_dir) or matching_files(pattern, base_dir, folders=True)


def keep_copy(source: str | Path, target: str | Path) -> None:
    """Make ``target`` a copy of ``source``, atomically: a hard link where the filesystem has them (no
    bytes copied; replacing ``source`` later leaves ``target`` as it was), else a copy."""
    with atomic_path(target) as temporary:
        temporary.unlink()
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def temporary_prefix(name: str) -> str:
    """The name prefix of a temporary file or folder made for ``name`` by this process."""
    return f"{TEMPORARY_PREFIX}{os.getpid()}-{name[:100]}."


# ----------------------------------------------------------------------------- internals


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), target.parent)
        raise OutputError(
            f"cannot create the folder {target.parent} for {target.name}: {blocker} is a file",
            hint="choose another output path",
        ) from None
    except OSError as error:
        raise _output_error(
            f"cannot create the folder {target.parent} for {target.name}",
            error,
            "choose another output path, or create that folder first",
        ) from error


def _replace(temporary: Path, target: Path) -> None:
    """Flush ``temporary`` to disk and rename it over ``target``."""
    try:
        _fsync_file(temporary)
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as error:
        hint = (
            "remove that directory or choose another output"
            if target.is_dir()
            else "the previous file, if any, is intact; free some space or fix the folder's permissions"
        )
        raise _output_error(f"cannot write {target}", error, hint) from error
    _fsync_directory(target.parent)


def _output_error(what: str, error: OSError, hint: str) -> OutputError:
    return OutputError(f"{what}: {error.strerror or error}", hint=hint, cause=error)


def _mode_for(target: Path) -> int:
    """The replaced file's mode, or what a plain open() would give (mkstemp makes files 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~UMASK


def _process_umask() -> int:
    """The process's umask, read where Linux shows it (/proc/self/status) without changing it; elsewhere set
    and put back at once, which only this module's import does, before seq starts a thread of its own."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Read once: seq never changes its umask, and setting it to read it would race other threads' new files.
UMASK = _process_umask()


@stage("fsync (every file written)")
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
