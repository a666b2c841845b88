"""Scratch space: what training keeps on disk for the length of a run (images decoded once, the parsed copy of a
streamed source), in files under the system's temporary folder that have no name (:func:`scratch_file`: none ever,
where the system allows; decoded images' memory map loses its name as soon as it is made). The system frees their
blocks when the process ends, however it ends (``kill -9`` included): nothing needs cleaning.

Every scratch file passes :func:`has_room` first: its file system must keep files on disk (a ``tmpfs`` keeps them
in memory, where they would count against no budget) and have room for it, with :data:`DISK_HEADROOM` to spare.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import IO

import numpy as np

DISK_HEADROOM = 1 << 30  # free space a scratch file leaves on its file system
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTS = "/proc/self/mounts"  # Linux's table of mounted file systems; elsewhere none is known to be in memory


def has_room(folder: str, size: int) -> bool:
    """Whether a scratch file of ``size`` bytes belongs in ``folder``: its file system keeps files on disk and
    has ``size`` bytes free with :data:`DISK_HEADROOM` to spare."""
    return not in_memory(folder) and shutil.disk_usage(folder).free >= size + DISK_HEADROOM


def in_memory(folder: str) -> bool:
    """Whether ``folder``'s file system keeps its files in memory (tmpfs, ramfs)."""
    try:
        with open(MOUNTS, encoding="utf-8", errors="replace") as handle:
            table = handle.read()
    except OSError:
        return False
    return mount_kind(os.path.realpath(folder), table) in MEMORY_FILE_SYSTEMS


def mount_kind(path: str, table: str) -> str | None:
    """The type of the file system ``path`` (a real, absolute path) lies on, by the mount table ``table`` (in
    the format of ``/proc/self/mounts``: the mount point with octal escapes, then the type): the innermost mount
    point holding it wins, the one mounted last among equals."""
    found, depth = None, -1
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda escape: chr(int(escape[1], 8)), fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= depth:
            found, depth = fields[2], len(point)
    return found


def scratch_file(size: int) -> IO[bytes] | None:
    """A new empty file with no name for ``size`` bytes, open to read and write (its blocks freed when it is
    closed or the process ends); None when the temporary folder has no room for it (:func:`has_room`) or cannot
    hold a file (not writable, too many files open)."""
    try:
        folder = tempfile.gettempdir()
        if not has_room(folder, size):
            return None
        return tempfile.TemporaryFile(dir=folder)  # nameless from the start where the system allows (O_TMPFILE)
    except OSError:
        return None


def read_at(handle: int, offset: int, size: int) -> np.ndarray | None:
    """``size`` bytes of an open file from ``offset``, read straight into an array of bytes; None when the file
    ends sooner."""
    target = np.empty(size, np.uint8)
    view, done = target.data, 0
    while done < size:
        read = os.preadv(handle, [view[done:]], offset + done)
        if not read:
            return None
        done += read
    return target


def write_at(handle: int, offset: int, data: np.ndarray) -> None:
    """The bytes of the contiguous array ``data`` written into an open file from ``offset``."""
    view, done = data.data.cast("B"), 0
    while done < len(view):
        done += os.pwrite(handle, view[done:], offset + done)
