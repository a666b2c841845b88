"""Bounds on the memory any input can make seq use, checked before anything is read or allocated.

- The memory budget: ``--max-memory`` (a size such as ``8G``), else ``$SEQ_MAX_MEMORY``, else
  :data:`MEMORY_SHARE` of the memory available now (``MemAvailable``, or the cgroup's limit when lower).
- :func:`check_data_file`: FIFOs, sockets and device files are refused at once (a FIFO would block forever).
- :func:`open_archive` is the one door to zip archives (``.npz`` data, ``.keras`` models, checkpoints): every
  member's declared size is checked for consistency with its compressed size, and their total against the
  budget, before a byte is decompressed (zipfile never inflates past a member's declared size).
- :data:`MAX_LAYERS` and :data:`MAX_NESTING` bound the layers of any model seq loads or builds (a spec's
  layers, a ``.keras`` config), checked before Keras makes any of them: :func:`check_model_structure`.
- :func:`check_npy_header`: an ``.npy`` array (a file or an archive member) whose header claims more bytes than
  the file holds, or than the budget, is refused before numpy allocates it.

Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from seqcli.errors import SeqError

MEMORY_SHARE = 0.7  # of the memory available now, when neither --max-memory nor SEQ_MAX_MEMORY says otherwise
FALLBACK_AVAILABLE = 4 << 30  # when the available memory cannot be read
CONFIG_LIMIT = 64 << 20  # a .keras config.json: the largest Keras applications need a few MB
# The largest keras.applications bases have about 1,040 layers and 3 levels of layers in layers; Keras recurses
# once per layer of a chain (its graph map), so a few thousand layers reach Python's recursion limit.
MAX_LAYERS = 2000  # in one model, nested layers included
MAX_NESTING = 16  # layers in layers: a model's layers are at level 1, a TimeDistributed's layer at level 2
MAX_JSON_DEPTH = 100  # a .keras config.json: the applications' configs nest about 14 levels deep
DEFLATE_MAX_RATIO = 1100  # deflate cannot expand data more than ~1032 times; a member claiming more lies
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
        raise LimitError(f"--max-memory: {error}", hint="give a size such as 8G or 512M") from None


def max_memory() -> int:
    """The budget for one command: ``--max-memory``, else ``$SEQ_MAX_MEMORY``, else the default share."""
    if _configured is not None:
        return _configured
    value = os.environ.get(ENVIRONMENT)
    if value:
        try:
            return parse_size(value)
        except ValueError as error:
            raise LimitError(f"{ENVIRONMENT}: {error}", hint="give a size such as 8G or 512M") from None
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


# ----------------------------------------------------------------------------- files


def check_data_file(path: str | Path, where: str) -> None:
    """Refuse anything but a regular file or a directory (a FIFO, socket or device), without opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the caller's own error says which
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a file"
    )
    raise LimitError(
        f"{where}: {path} is {kind}, not a regular file",
        hint="seq reads data and models from regular files only; copy the data into a file first",
        where=where,
    )


@contextlib.contextmanager
def open_archive(path: str | Path, what: str, *, limit: int | None = None) -> Iterator[zipfile.ZipFile]:
    """The zip archive at ``path`` once its members' declared sizes are consistent and their total fits
    ``limit`` (default: the memory budget). ``what`` names the file in messages (e.g. ``"data.train"``)."""
    check_data_file(path, what)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as error:
        raise LimitError(
            f"{what}: {path} is not a readable zip archive: {error}",
            hint="the file is damaged or not what its extension says",
            where=what,
        ) from None
    except OSError as error:
        raise LimitError(
            f"{what}: cannot read {path}: {error.strerror or error}", hint=UNREADABLE_HINT, where=what
        ) from None
    with archive:
        check_members(archive, path, what, limit=max_memory() if limit is None else limit)
        try:
            yield archive
        except DAMAGED_MEMBER as error:  # a member read without open_member, which names it
            raise LimitError(f"{what}: {path} is damaged: {error}", hint=DAMAGED_HINT, where=what) from None


DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error)  # a bad CRC-32, corrupt deflate data
DAMAGED_HINT = (
    "the file changed after it was written (an interrupted copy or download, a full disk, bad storage); "
    "write or copy it again"
)
UNREADABLE_HINT = "check the file's permissions"


@contextlib.contextmanager
def open_member(archive: zipfile.ZipFile, member: str, path, what: str) -> Iterator:
    """A member of an archive from :func:`open_archive`, opened for reading: a damaged member (a bad CRC-32,
    corrupt deflate data) is a LimitError that names the file and the member."""
    try:
        with archive.open(member) as handle:
            yield handle
    except DAMAGED_MEMBER as error:
        raise LimitError(
            f"{what}: member {member!r} of {path} is damaged: {_damage(error)}", hint=DAMAGED_HINT, where=what
        ) from None


def _damage(error: Exception) -> str:
    if isinstance(error, zlib.error):
        return f"its compressed data is corrupt ({error})"
    if "CRC" in str(error):
        return "its CRC-32 checksum does not match its data"
    return str(error)


def check_members(archive: zipfile.ZipFile, path, what: str, *, limit: int) -> int:
    """Total declared size of ``archive``'s members; LimitError for an impossible or too large one."""
    total = 0
    for info in archive.infolist():
        _check_member(info, path, what)
        total += info.file_size
    if total > limit:
        raise LimitError(
            f"{what}: {path} would take {human_size(total)} when read ({len(archive.infolist())} "
            f"members, {human_size(Path(path).stat().st_size)} on disk), over the memory limit",
            hint=over_budget_hint(),
            where=what,
        )
    return total


def _check_member(info: zipfile.ZipInfo, path, what: str) -> None:
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        problem = f"is stored uncompressed but declares {info.file_size:,} bytes for {info.compress_size:,}"
    elif info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 1024:
        problem = (
            f"declares {human_size(info.file_size)} from {human_size(info.compress_size)} compressed, "
            "more than deflate can produce"
        )
    else:
        return
    raise LimitError(
        f"{what}: {path}: member {info.filename!r} {problem}",
        hint="the archive is damaged or forged; write it again (numpy.savez, model.save)",
        where=what,
    )


def load_npz(path: str | Path, what: str):
    """``numpy.load`` of an ``.npz`` (no pickles) once :func:`open_archive` has checked it: checkpoints."""
    import numpy as np

    with open_archive(path, what):
        pass
    return np.load(path, allow_pickle=False)


def check_model_file(path: str | Path, what: str) -> None:
    """A ``.keras`` archive (or an ``.h5`` weights file) that can be read within the budget: the archive's
    members fit it and its ``config.json`` is at most :data:`CONFIG_LIMIT`."""
    path = Path(path)
    check_data_file(path, what)
    if path.suffix != ".keras":
        size = path.stat().st_size if path.is_file() else 0
        if size > max_memory():
            raise LimitError(
                f"{what}: {path} holds {human_size(size)}, over the memory limit", hint=over_budget_hint(), where=what
            )
        return
    with open_archive(path, what) as archive:
        _check_config_size(archive, path, what)


def read_model_config(path: str | Path, what: str) -> dict:
    """The ``config.json`` of a ``.keras`` archive, read within :data:`CONFIG_LIMIT`; nothing else is read."""
    import json

    with open_archive(path, what) as archive:
        _check_config_size(archive, path, what)
        try:
            config = json.loads(archive.read("config.json"))
        except RecursionError:
            raise _too_deep(path, what) from None
        except KeyError:
            raise LimitError(
                f"{what}: {path} has no config.json", hint="a .keras file written by model.save holds one", where=what
            ) from None
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise LimitError(f"{what}: cannot read the config.json of {path}: {error}", where=what) from None
    check_model_structure(config, path, what)
    return config


LAYER_SLOTS = frozenset({"layers", "layer", "backward_layer", "forward_layer", "cell", "cells"})


def check_model_structure(config, path: str | Path, what: str) -> None:
    """LimitError when a ``.keras`` config (parsed JSON, not yet given to Keras) nests deeper than
    :data:`MAX_JSON_DEPTH`, holds more than :data:`MAX_LAYERS` layers, or layers in layers deeper than
    :data:`MAX_NESTING`. One pass, without recursion."""
    layers = 0
    stack = [(config, 1, 0, True)]  # (value, JSON depth, layers around it, whether a layer may sit there)
    while stack:
        value, depth, nesting, slot = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(path, what)
        if isinstance(value, list):
            stack += [(item, depth + 1, nesting, slot) for item in value]
            continue
        if not isinstance(value, dict):
            continue
        if slot and "class_name" in value:  # a layer, or at the top the model itself
            layers, nesting = layers + (nesting > 0), nesting + 1
            _check_layers(layers, nesting, path, what)
        stack += [(item, depth + 1, nesting, key in LAYER_SLOTS) for key, item in value.items()]


def _check_layers(layers: int, nesting: int, path, what: str) -> None:
    if layers > MAX_LAYERS:
        problem = f"holds more than {MAX_LAYERS:,} layers, seq's limit for one model (nested layers included)"
    elif nesting > MAX_NESTING + 1:  # the model itself is the outermost level
        problem = f"nests layers in layers more than {MAX_NESTING} levels deep, seq's limit"
    else:
        return
    raise LimitError(
        f"{what}: the config.json of {path} {problem}",
        hint="seq loads and builds models within these limits only (see 'Bounded memory' in the README)",
        where=what,
    )


def _too_deep(path, what: str) -> LimitError:
    return LimitError(
        f"{what}: the config.json of {path} nests JSON more than {MAX_JSON_DEPTH} levels deep, seq's limit "
        "for a model's config",
        hint="model.save writes configs a few levels deep; the file is damaged or forged",
        where=what,
    )


def _check_config_size(archive: zipfile.ZipFile, path: Path, what: str) -> None:
    try:
        size = archive.getinfo("config.json").file_size
    except KeyError:
        return
    if size > CONFIG_LIMIT:
        raise LimitError(
            f"{what}: the config.json of {path} declares {human_size(size)}; a model's config "
            f"is at most {human_size(CONFIG_LIMIT)}",
            hint="the file is damaged or forged; save the model again with model.save",
            where=what,
        )


def check_npy_header(handle, available: int, where: str, label: str) -> tuple[tuple, str]:
    """Read an ``.npy`` header from ``handle`` (positioned at its start) and check that the array it
    declares fits in ``available`` bytes (what follows the header) and in the budget.
    Returns ``(shape, dtype text)``. ``label`` names the array in messages."""
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(handle, max_header_size=1 << 16)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(handle, max_header_size=1 << 16)
        else:  # format 3.0 (utf-8 field names) has no public header reader
            shape, _, dtype = fmt._read_array_header(handle, version, max_header_size=1 << 16)
        offset = handle.tell()
    except (ValueError, OSError, SyntaxError, TypeError, EOFError) as error:
        raise LimitError(f"{where}: cannot read {label} as an .npy array: {error}", where=where) from None
    itemsize = dtype.itemsize
    declared = math.prod(shape) * itemsize
    left = available - offset
    if dtype.hasobject:
        return shape, str(dtype)
    if declared > left:
        raise LimitError(
            f"{where}: {label} claims shape {tuple(shape)} of {dtype} ({human_size(declared)}), "
            f"but holds {human_size(max(left, 0))} of data",
            hint="the file is truncated or its header is wrong; write it again with numpy.save",
            where=where,
        )
    if declared > max_memory():
        raise LimitError(
            f"{where}: {label} holds {human_size(declared)} (shape {tuple(shape)} of {dtype}), over the memory limit",
            hint=over_budget_hint(),
            where=where,
        )
    return shape, str(dtype)


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
