"""Bounds on what any input can make seq do, checked before anything is read or allocated: the memory budget,
and the one door every file seq reads passes through.

- The memory budget: ``--max-memory`` (a size such as ``8G``), else ``$SEQ_MAX_MEMORY``, else
  :data:`MEMORY_SHARE` of the memory available now (``MemAvailable``, or the cgroup's limit when lower).
- :func:`open_input` is the one open function for every file seq reads: specs, data files, every file inside
  a folder source, weights and models, files layer arguments name. It opens a file only once it is
  confined (with every symbolic link followed, inside one of the folders it may be read from: the folder it
  was named in and those of ``--allow-path``; a path the user typed on the command line is theirs and is
  not confined), a regular file (opened with ``O_NONBLOCK`` and judged by ``fstat`` on the open descriptor,
  so a FIFO never blocks; devices and sockets are refused), and within a size. :func:`read_into` reads in
  chunks that Ctrl-C and SIGTERM can stop. A reader that gives a path to a library that opens it itself
  (Keras, h5py, TensorFlow's image decoder) passes it through :func:`check_input` first; a reader that can
  price what a file decodes to reads the bytes that say so through the door first (:func:`read_head`).
- Zip archives and ``.npy`` headers, priced before they are read, are :mod:`seqcli.archives`, which opens
  its files through this door.

Refusals name the file and the kind of problem, never a byte of what the file holds.
Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import io
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from seqcli.errors import SeqError

MEMORY_SHARE = 0.7  # of the memory available now, when neither --max-memory nor SEQ_MAX_MEMORY says otherwise
FALLBACK_AVAILABLE = 4 << 30  # when the available memory cannot be read
# The largest keras.applications bases have about 1,040 layers and 3 levels of layers in layers; Keras recurses
# once per layer of a chain (its graph map), so a few thousand layers reach Python's recursion limit. A spec is
# checked against both in seqcli.specfile.validate, a .keras config in seqcli.archives, before anything is built.
MAX_LAYERS = 2000  # in one model, nested layers included
MAX_NESTING = 16  # layers in layers: a model's layers are at level 1, a TimeDistributed's layer at level 2
ENVIRONMENT = "SEQ_MAX_MEMORY"
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)

_configured: int | None = None


class LimitError(SeqError):
    """An input or a model that would take more memory than seq may use, or a file that cannot be data.
    ``where`` names the input in front of the message (``data.train: ...``); :attr:`detail` is the message
    without it, for a caller that shows the position itself (a spec entry)."""

    def __init__(self, message: str, hint: str | None = None, *, where: str | None = None):
        super().__init__(message, hint)
        self.where = where

    @property
    def detail(self) -> str:
        return self.message.removeprefix(f"{self.where}: ") if self.where else self.message


def parse_size(text: str | int) -> int:
    """Bytes from ``8G``, ``512M``, ``1.5GB``, ``2GiB`` or a plain number of bytes; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as 8G or 512M; received {text!r}")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"a size must be positive; received {text}")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"expected a size such as 8G, 512M or 1.5GB; received {text!r}")
    value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise ValueError(f"a size must be positive; received {text!r}")
    return value


def human_size(count: int) -> str:
    """``1.50 GB``-style text for a number of bytes."""
    if count >= 1 << 70:  # past what float formatting shows sensibly (or at all: float() overflows at 2**1024)
        return f"{power_of_two(count)} B"
    size = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if size < 1024 or unit == "EB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} EB"  # pragma: no cover


def power_of_two(count: int) -> str:
    """A number too large to write out, as ``about 2**N``."""
    return f"about 2**{int(count).bit_length() - 1}"


def available_memory() -> int:
    """Bytes of memory available now: ``MemAvailable``, lowered to the cgroup's headroom when it has a limit."""
    available = _meminfo_available()
    headroom = _cgroup_headroom()
    candidates = [value for value in (available, headroom) if value is not None]
    return min(candidates) if candidates else FALLBACK_AVAILABLE


def default_max_memory() -> int:
    return int(available_memory() * MEMORY_SHARE)


def configure(max_memory: str | int | None) -> None:
    """Set the process's budget (``--max-memory``); None goes back to the default."""
    global _configured
    if max_memory is None:
        _configured = None
        return
    try:
        _configured = parse_size(max_memory)
    except ValueError as error:
        raise LimitError(f"--max-memory: {error}", hint="give a size such as 8G or 512M") from error


def max_memory() -> int:
    """The budget for one command: ``--max-memory``, else ``$SEQ_MAX_MEMORY``, else the default share."""
    if _configured is not None:
        return _configured
    value = os.environ.get(ENVIRONMENT)
    if value:
        try:
            return parse_size(value)
        except ValueError as error:
            raise LimitError(f"{ENVIRONMENT}: {error}", hint="give a size such as 8G or 512M") from error
    return default_max_memory()


def budget_source() -> str:
    """Where :func:`max_memory` comes from, in words, for messages."""
    if _configured is not None:
        return "--max-memory"
    if os.environ.get(ENVIRONMENT):
        return ENVIRONMENT
    return f"{MEMORY_SHARE:.0%} of the memory available now"


def over_budget_hint() -> str:
    return (
        f"the limit is {human_size(max_memory())} ({budget_source()}); raise it with --max-memory SIZE "
        f"(or {ENVIRONMENT}) if the machine really has the memory"
    )


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
) -> io.BufferedReader:
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


def read_into(handle: io.BufferedIOBase, buffer, *, where: str = "", path: str | Path = "") -> None:
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


# ----------------------------------------------------------------------------- available memory


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """A cgroup v2 memory limit less what the group uses now; None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - current, 0)
    except (OSError, ValueError):
        return None
