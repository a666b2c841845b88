"""The parsed copy of a streamed source: the samples of its TFRecord, CSV or compressed .npz shards as they come out
of parsing (float32 inputs, scaled; labels as batches hold them), kept for training's later epochs in a scratch
file that has no name (:mod:`seqcli.data.scratch`).

Parsing such a shard costs more than reading its bytes: tf.data's cost per TFRecord record in ``TFRecordDataset``
and ``parse_example``, Python's for a CSV. So the blocks an epoch parses are written into the copy as they go by
(:meth:`ParsedCopy.keep`), and once every block of a shard is there, the epochs that open the shard after that read
it from the copy, a whole shard or a block at a time, in the same blocks (:meth:`ParsedCopy.rows`): an epoch holds
the same samples in the same order either way. No pass over the data is added, and nothing waits for the copy.

Every read of a shard parses the same samples into the same blocks (the file is checked to be the one the source
opened each time it is opened), so a block written by any epoch, or by two at once, is the same bytes. Samples lie
shard after shard: every input first, then every label.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from seqcli.data.scratch import read_at, scratch_file, write_at

ABSENT, WRITING, WRITTEN = 0, 1, 2  # the states of a block of the copy


@dataclass
class ParsedCopy:
    """The parsed samples of a stream's shards, written a block of ``block`` samples at a time in any order
    (:meth:`keep`), read once every shard is whole (:meth:`complete`, :meth:`rows`)."""

    file: IO[bytes]
    counts: list[int]  # samples each shard holds
    block: int
    x_shape: tuple
    y_shape: tuple | None  # None: no labels
    y_dtype: str
    firsts: list[int] = field(default_factory=list)  # each shard's first sample, counted over all of them
    states: list[np.ndarray] = field(default_factory=list)  # each shard's blocks: ABSENT, WRITING or WRITTEN
    missing: list[int] = field(default_factory=list)  # each shard's blocks not written yet
    broken: bool = False  # a write failed (the disk filled up): the copy is never read
    writing: int = 0  # writes in flight
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls, counts: list[int], block: int, x_shape: tuple, y_shape: tuple | None, y_dtype: str
    ) -> ParsedCopy | None:
        """An empty copy for shards of ``counts`` samples parsed ``block`` at a time; None when the temporary
        folder has no room for it."""
        file = scratch_file(sum(counts) * sum(_sample_bytes(x_shape, y_shape, y_dtype)))
        if file is None:
            return None
        blocks = [math.ceil(count / block) for count in counts]
        y_shape = None if y_shape is None else tuple(y_shape)
        states = [np.full(count, ABSENT, np.uint8) for count in blocks]
        firsts = [0, *itertools.accumulate(counts)][:-1]
        return cls(file, list(counts), block, tuple(x_shape), y_shape, y_dtype, firsts, states, blocks)

    @property
    def x_bytes(self) -> int:
        return _sample_bytes(self.x_shape, self.y_shape, self.y_dtype)[0]

    @property
    def y_bytes(self) -> int:
        return _sample_bytes(self.x_shape, self.y_shape, self.y_dtype)[1]

    def complete(self) -> np.bool_:
        """Whether every shard is whole in the copy (and no write failed)."""
        with self.lock:
            return np.bool_(not self.broken and not any(self.missing))

    def keep(self, index, number, x: np.ndarray, y: np.ndarray | None = None) -> np.bool_:
        """Block ``number`` of shard ``index`` as parsed: written into the copy unless it is there already or
        being written. A block of another size than the shard's count gives (the shard is no longer what the
        source opened: its epoch stops on that), or a write that fails (a full disk), breaks the copy: it is never
        read, its blocks are freed, and every epoch parses the shards as without one."""
        index, number = int(index), int(number)
        with self.lock:
            states = self.states[index]
            expected = min(self.block, self.counts[index] - number * self.block)
            labels = self.y_shape is None or (y is not None and len(y) == expected)
            if number >= len(states) or len(x) != expected or not labels:
                self.broken = True
            if self.broken or states[number] != ABSENT:
                self._free_if_broken()
                return np.bool_(False)
            states[number] = WRITING
            self.writing += 1
        written = False
        try:
            x_at, y_at = self._offsets(index, number * self.block)
            write_at(self.file.fileno(), x_at, np.ascontiguousarray(x, np.float32))
            if y is not None and self.y_shape is not None:
                write_at(self.file.fileno(), y_at, np.ascontiguousarray(y, self.y_dtype))
            written = True
        except OSError:  # a full disk: the copy breaks (below) and the epoch goes on
            pass
        finally:
            with self.lock:
                self.writing -= 1
                if written:
                    states[number] = WRITTEN
                    self.missing[index] -= 1
                else:
                    self.broken = True
                self._free_if_broken()
        return np.bool_(written)

    def _free_if_broken(self) -> None:
        """A broken copy's blocks back to the disk, once no write is in flight (the lock held)."""
        if self.broken and not self.writing:
            with contextlib.suppress(OSError):
                self.file.truncate(0)

    def rows(self, index, start, rows) -> tuple[np.ndarray, ...]:
        """Samples ``start .. start + rows`` of shard ``index``: inputs (and labels)."""
        index, start, rows = int(index), int(start), int(rows)
        x_at, y_at = self._offsets(index, start)
        handle = self.file.fileno()
        x = read_at(handle, x_at, rows * self.x_bytes)
        if x is None:
            raise OSError(f"the copy of shard {index} ends before sample {start + rows}")
        parts = [x.view(np.float32).reshape(rows, *self.x_shape)]
        if self.y_shape is not None:
            y = read_at(handle, y_at, rows * self.y_bytes)
            if y is None:
                raise OSError(f"the copy of shard {index} ends before label {start + rows}")
            parts.append(y.view(self.y_dtype).reshape(rows, *self.y_shape))
        return tuple(parts)

    def _offsets(self, index: int, start: int) -> tuple[int, int]:
        """Where sample ``start`` of shard ``index`` lies: its input, its label."""
        first = self.firsts[index] + start
        return first * self.x_bytes, (self.firsts[-1] + self.counts[-1]) * self.x_bytes + first * self.y_bytes


def _sample_bytes(x_shape: tuple, y_shape: tuple | None, y_dtype: str) -> tuple[int, int]:
    """What a sample takes in the copy: its input (float32), its label (none without labels)."""
    return 4 * math.prod(x_shape), 0 if y_shape is None else np.dtype(y_dtype).itemsize * math.prod(y_shape)


@dataclass
class CopySlot:
    """Where a stream keeps its parsed copy: made the first time it is asked for (None when there is no room)."""

    copy: ParsedCopy | None = None
    tried: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, make: Callable[[], ParsedCopy | None]) -> ParsedCopy | None:
        with self.lock:
            if not self.tried:
                self.tried = True
                self.copy = make()
            return self.copy
