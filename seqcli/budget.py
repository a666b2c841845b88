"""The memory budget, and the sizes and bounds measured against it: how much memory one command of seq may
take, checked before anything is read or allocated.

- The budget: ``--max-memory`` (a size such as ``8G``), else ``$SEQ_MAX_MEMORY``, else :data:`MEMORY_SHARE`
  of the memory available now (``MemAvailable``, or the cgroup's limit when lower); :func:`max_memory`.
- Sizes in and out of text: :func:`parse_size` (``8G``, ``1.5GB``) and :func:`human_size` (``1.50 GB``).
- Bounds on a model's structure whatever the memory: :data:`MAX_LAYERS`, :data:`MAX_NESTING`.
- :class:`LimitError`, the error of anything over a bound; what a reader may read is :mod:`seqcli.inputs`,
  a model's estimate against the budget :mod:`seqcli.memory`.

Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import os
import re
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
