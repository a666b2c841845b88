"""The one door every file seq reads passes through, and the bounded reads behind it.

- :func:`open_input` is the one open function for every file seq reads: specs, data files, every file inside
  a folder source, weights and models, files layer arguments name. It opens a file only once it is
  confined (with every symbolic link followed, inside one of the folders it may be read from: the folder it
  was named in and those of ``--allow-path``; a path the user typed on the command line is theirs and is
  not confined), a regular file (opened with ``O_NONBLOCK`` and judged by ``fstat`` on the open descriptor,
  so a FIFO never blocks; devices and sockets are refused), and within a size (by default the memory budget,
  :mod:`seqcli.budget`). :func:`read_into` reads in chunks that Ctrl-C and SIGTERM can stop. A reader that
  gives a path to a library that opens it itself (Keras, h5py, TensorFlow's image decoder) passes it through
  :func:`check_input` first; a reader that can price what a file decodes to reads the bytes that say so
  through the door first (:func:`read_head`).
- Zip archives and ``.npy`` headers, priced before they are read, are :mod:`seqcli.archives`, and record
  files :mod:`seqcli.records`; both open their files through this door.

Refusals name the file and the kind of problem, never a byte of what the file holds.
Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from seqcli.budget import LimitError, human_size, max_memory, over_budget_hint

ALLOW_PATH_ENV = "SEQ_ALLOW_PATH"
CHUNK = 1 << 20  # bytes read at a time: an interrupt is seen between two chunks
BUDGET = -1  # ``limit=BUDGET``: the memory budget at the time of the read
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_ALLOWED: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("seq_allowed_paths", default=())


class ReadRefused(LimitError):
    """A file seq will not read: outside the folders it may read, not a regular file, or too large."""


# ----------------------------------------------------------------------------- the door: the folders seq may read


@contextlib.contextmanager
def allowed_paths(folders: Sequence[str | Path]) -> Iterator[None]:
    """Let specs and folder sources read files under ``folders`` too, within this block: ``--allow-path``."""
    token = _ALLOWED.set(tuple(Path(folder).resolve() for folder in folders))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def extra_roots() -> list[Path]:
    """The ``--allow-path`` folders and those of ``SEQ_ALLOW_PATH``, resolved."""
    from_env = [Path(part).resolve() for part in os.environ.get(ALLOW_PATH_ENV, "").split(os.pathsep) if part]
    return [*_ALLOWED.get(), *from_env]


def allowed_roots(base_dir: str | Path) -> list[Path]:
    """The folders a file named in ``base_dir`` (a spec's folder) may resolve into: that folder, resolved,
    and the allowed ones."""
    return [Path(base_dir).resolve(), *extra_roots()]


def inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def confinement_problem(shown: str, joined: Path, roots: Sequence[Path], *, origin: str = "the spec's folder"):
    """Why ``joined`` (the path as named, made absolute) may not be read from inside ``roots``, in words
    that name it as ``shown``; None when it may. Never opens the file."""
    if URL.match(shown):
        return f"{shown!r} is a URL; seq reads local files only"
    if inside(joined.resolve(), roots):
        return None
    if Path(os.path.expanduser(shown)).is_absolute() and not inside(Path(os.path.normpath(joined)), roots):
        return f"{shown!r} is an absolute path outside {origin}"
    if not inside(Path(os.path.normpath(joined)), roots):
        return f"{shown!r} leads out of {origin}"
    return f"{shown!r} is a symbolic link that leads out of {origin}"


# ----------------------------------------------------------------------------- kinds and sizes


def kind_of(mode: int) -> str:
    """A file's kind in words, for a mode that is not a regular file's."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _limit_of(limit: int | None) -> int | None:
    return max_memory() if limit == BUDGET else limit


def _refuse(where: str, message: str, hint: str | None) -> ReadRefused:
    return ReadRefused(f"{where}: {message}" if where else message, hint=hint, where=where or None)


KIND_HINT = "seq reads regular files only; copy the data into a file first"
CONFINED_HINT = (
    "seq reads files inside the folder they were named in only; move the file there, or allow a folder "
    f"with --allow-path DIR (or {ALLOW_PATH_ENV} in CI)"
)


def _check_confined(path: Path, where: str, roots: Sequence[Path] | None, origin: str) -> None:
    if roots is None:
        return
    problem = confinement_problem(str(path), Path(os.path.abspath(path)), roots, origin=origin)
    if problem:
        raise _refuse(where, problem, CONFINED_HINT)


def _check_status(info: os.stat_result, path: Path, where: str, limit: int | None, directory_ok: bool) -> None:
    if stat.S_ISDIR(info.st_mode) and directory_ok:
        return
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(where, f"{path} is {kind_of(info.st_mode)}, not a regular file", KIND_HINT)
    limit = _limit_of(limit)
    if limit is not None and info.st_size > limit:
        raise _refuse(
            where,
            f"{path} holds {human_size(info.st_size)}, over the memory limit",
            over_budget_hint(),
        )


# ----------------------------------------------------------------------------- the door


def open_input(
    path: str | Path,
    where: str,
    *,
    roots: Sequence[Path] | None = None,
    limit: int | None = BUDGET,
    origin: str = "the folder it was named in",
) -> BinaryIO:
    """``path`` opened for binary reading, once it is confined to ``roots`` (None: not confined), a regular
    file (never blocking on a FIFO) and at most ``limit`` bytes (``BUDGET``: the memory budget; None: any
    size). ``where`` names the input in messages. FileNotFoundError and other OSErrors pass through for the
    caller to word; every refusal is a :class:`ReadRefused`."""
    path = Path(path)
    _check_confined(path, where, roots, origin)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_status(os.fstat(descriptor), path, where, limit, directory_ok=False)
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
        fcntl.fcntl(descriptor, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def check_input(
    path: str | Path,
    where: str,
    *,
    roots: Sequence[Path] | None = None,
    limit: int | None = BUDGET,
    directory_ok: bool = False,
    origin: str = "the folder it was named in",
) -> Path:
    """What :func:`open_input` checks, for a file a library will open itself (or a folder, when
    ``directory_ok``): returns ``path`` once it passes."""
    path = Path(path)
    if directory_ok and path.is_dir():
        _check_confined(path, where, roots, origin)
        return path
    open_input(path, where, roots=roots, limit=limit, origin=origin).close()
    return path


def read_head(path: str | Path, where: str, size: int, *, roots: Sequence[Path] | None = None) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer when it is shorter), through the door."""
    with open_input(path, where, roots=roots, limit=None) as handle:
        return handle.read(size)


def read_into(handle: BinaryIO, buffer, *, where: str = "", path: str | Path = "") -> None:
    """Fill ``buffer`` (an array, or anything with the buffer protocol) from ``handle`` a chunk at a time (an
    interrupt stops it between chunks); a file that ends before the buffer is full is refused."""
    view = memoryview(buffer)
    if view.nbytes == 0:
        return
    view = view.cast("B")
    offset = 0
    while offset < len(view):
        count = handle.readinto(view[offset : offset + CHUNK])
        if not count:
            raise _refuse(where, f"{path} ends before the data it declares", "the file is truncated; write it again")
        offset += count


# ----------------------------------------------------------------------------- files


def check_data_file(path: str | Path, where: str, *, roots: Sequence[Path] | None = None) -> None:
    """Refuse anything but a regular file or a directory (a FIFO, socket or device) through the door:
    a missing or unreadable path is left to the caller's own error, which says which."""
    try:
        check_input(path, where, roots=roots, limit=None, directory_ok=True)
    except ReadRefused:
        raise
    except OSError:
        return


UNREADABLE_HINT = "check the file's permissions"
