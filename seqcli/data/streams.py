"""Streamed sources: shards (a glob or a list of .npz, .npy, .csv or TFRecord files) and TFRecord files, read a
chunk at a time, never whole.

Memory is bounded by the batch, the shuffle buffer and the shards open at once (:data:`SHARDS_OPEN` while
shuffling, one otherwise), priced against the memory budget before anything is read (:meth:`Stream.check_memory`).

The order of an epoch is a pure function of ``(seed, epoch)``: the shards in an order permuted by it, read
:data:`SHARDS_OPEN` at a time, one sample from each in turn (a shard that ends gives its place to the next one),
through a shuffle buffer of ``data.shuffle_buffer`` samples drawn from a generator seeded by it. Without
shuffling, the shards are read one after the other in their sorted order: the same samples in the same order as
the shards' arrays concatenated. Skipping the first batches of an epoch (exact resume) replays the same stream.

Each shard's header is checked when the source opens (sample shape and dtypes equal to the first shard's); a
TFRecord file's records are counted then (its length fields checked), and each record's data is checked when it
is read. A problem found while a pipeline runs stops it with a :class:`~seqcli.data.arrays.DataError` that
:func:`take_failure` hands to whoever runs the pipeline.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli.budget import human_size, max_memory, over_budget_hint
from seqcli.data import tfrecord
from seqcli.data.arrays import DataError, as_arrays
from seqcli.errors import SeqError
from seqcli.inputs import check_input
from seqcli.keras_env import import_tensorflow
from seqcli.specfile.sections import SourceSection

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251

SHARDS_OPEN = 4  # shards read at once, in turn, while shuffling
CHUNK_ROWS = 1024  # rows read from a shard at a time
RECORD_CHUNK = 256  # TFRecord records parsed at a time
DEFAULT_SHUFFLE_BUFFER = 10_000  # samples, when data.shuffle_buffer is not given (fewer if memory is short)
BUFFER_SHARE = 0.25  # of the memory budget a default shuffle buffer may take
PREFETCHED_BATCHES = 4  # batches a pipeline may hold ahead of training, priced with the rest


_failure_lock = threading.Lock()
_failure: list[SeqError] = []


def take_failure() -> SeqError | None:
    """The data error that stopped a streamed pipeline since the last call (None when none did); a pipeline
    stops with a TensorFlow error whose text is not seq's, so whoever runs it raises this one instead."""
    with _failure_lock:
        return _failure.pop() if _failure else None


def _record_failure(error: SeqError) -> None:
    with _failure_lock:
        _failure[:] = [error]


# ----------------------------------------------------------------------------- shards


@dataclass
class Shard:
    """One file of a streamed source: what its header says, and how to read its rows in chunks."""

    path: Path
    fmt: str
    count: int
    sample_shape: tuple
    x_dtype: str
    y_dtype: str | None
    y_shape: tuple = ()
    open_bytes: int = 0  # memory the shard holds while it is read

    def chunks(self, source: Stream, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Rows ``start ..`` of the shard as ``(x float32, y or None)`` chunks, checked as in-memory data is."""
        for x, y in _READERS[self.fmt](self, source, start):
            arrays = as_arrays(x, y if source.with_labels else None, None, self.path, source.where)
            yield _as_float(arrays.x, source.section.scale), _labels_as(arrays.y, source, self.path)


def _labels_as(y: np.ndarray | None, source: Stream, path: Path) -> np.ndarray | None:
    """A chunk's labels in the dtype of every batch's (class indices stay whole numbers)."""
    if y is None or y.dtype == source.y_dtype:
        return y
    if source.y_dtype == "int64":
        raise DataError(
            f"{source.where}: shard {path} holds labels that are not whole numbers, but the first shard's are "
            "class indices",
            hint="every shard of a source must hold labels of one kind",
        )
    return y.astype(np.float32)


def _as_float(x: np.ndarray, scale) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x * np.float32(scale) if scale is not None else x


def _npz_chunks(shard: Shard, source: Stream, start: int):
    x, y = source.readers.read_npz(
        shard.path, source.section, source.where, labels=source.with_labels, want_labels=source.with_labels
    )
    for offset in range(start, shard.count, CHUNK_ROWS):
        yield x[offset : offset + CHUNK_ROWS], None if y is None else y[offset : offset + CHUNK_ROWS]


def _npy_chunks(shard: Shard, source: Stream, start: int):
    check_input(shard.path, source.where, limit=None)  # the door; numpy maps the file itself
    x = np.load(shard.path, mmap_mode="r", allow_pickle=False)
    for offset in range(start, shard.count, CHUNK_ROWS):
        yield np.array(x[offset : offset + CHUNK_ROWS]), None


def _csv_chunks(shard: Shard, source: Stream, start: int):
    x, y = source.readers.read_csv(shard.path, source.section, source.where, want_labels=source.with_labels)
    for offset in range(start, shard.count, CHUNK_ROWS):
        yield x[offset : offset + CHUNK_ROWS], None if y is None else y[offset : offset + CHUNK_ROWS]


def _tfrecord_chunks(shard: Shard, source: Stream, start: int):
    records = tfrecord.records(shard.path, source, start)
    number = start
    while True:
        batch = [record for _, record in zip(range(RECORD_CHUNK), records)]
        if not batch:
            return
        yield tfrecord.parse_records(batch, number, shard.path, source)
        number += len(batch)


_READERS = {"npz": _npz_chunks, "npy": _npy_chunks, "csv": _csv_chunks, "tfrecord": _tfrecord_chunks}


# ----------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class FileReaders:
    """The readers of whole files (seqcli.data.sources) that shards of those formats use."""

    read_npz: Callable
    npz_header: Callable
    read_csv: Callable
    csv_columns: Callable


@dataclass
class Stream:
    """A streamed source: its shards (checked alike), read a chunk at a time."""

    shards: list[Shard]
    section: SourceSection
    where: str
    with_labels: bool
    readers: FileReaders
    compression: str | None = None
    y_dtype: str | None = None  # of every batch's labels: int64 or float32
    class_names: list[str] | None = None
    _features: dict | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return sum(shard.count for shard in self.shards)

    @property
    def sample_shape(self) -> tuple:
        return self.shards[0].sample_shape

    def batch_bytes(self, count: int) -> int:
        return count * math.prod(self.sample_shape) * 4

    def parse_features(self) -> dict:
        """The TFRecord description as ``tf.io.FixedLenFeature`` s, for x (and y)."""
        tf = import_tensorflow()

        if self._features is None:
            described = self.section.features
            names = [self.section.x] + ([self.section.y] if self.with_labels else [])
            self._features = {
                name: tf.io.FixedLenFeature(described[name].shape, getattr(tf, described[name].dtype)) for name in names
            }
        return self._features

    def shuffle_buffer(self, asked: int | None) -> int:
        """The shuffle buffer in samples: ``asked``, else the default cut to what :data:`BUFFER_SHARE` of the
        memory budget holds."""
        if asked is not None:
            return asked
        fits = int(max_memory() * BUFFER_SHARE) // max(self.batch_bytes(1), 1)
        return max(1, min(DEFAULT_SHUFFLE_BUFFER, self.count, fits))

    def check_memory(self, batch_size: int, buffer: int, shuffle: bool) -> None:
        """DataError when the batches, the shuffle buffer and the shards open at once would pass the budget."""
        opened = sorted((shard.open_bytes for shard in self.shards), reverse=True)[: SHARDS_OPEN if shuffle else 1]
        batches = self.batch_bytes(batch_size) * PREFETCHED_BATCHES
        buffered = self.batch_bytes(buffer) if shuffle else 0
        total = batches + buffered + sum(opened)
        if total <= max_memory():
            return
        raise DataError(
            f"{self.where}: streaming needs about {human_size(total)} (batches "
            f"{human_size(batches)}, shuffle buffer of {buffer:,} samples {human_size(buffered)}, "
            f"{len(opened)} shard(s) open {human_size(sum(opened))}), over the memory limit",
            hint="lower data.shuffle_buffer or data.batch_size, split the data into smaller shards, or "
            + over_budget_hint(),
        )

    def part(self, workers: int, index: int) -> Stream:
        """The shards worker ``index`` of ``workers`` reads when files are sharded: every ``workers``-th one."""
        return Stream(
            self.shards[index::workers],
            self.section,
            self.where,
            self.with_labels,
            self.readers,
            self.compression,
            self.y_dtype,
            self.class_names,
        )

    def dataset(
        self,
        batch_size: int,
        *,
        order: tuple[int, int] | None = None,
        buffer: int = 1,
        skip: int = 0,
        per_step: int | None = None,
        quota: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of the stream: in stored order, or in the order of ``order = (seed, epoch)`` (the epoch may
        be a tensor: inside ``flat_map``); without their
        first ``skip`` steps of ``per_step`` samples (default: one batch). With ``quota``, an epoch holds exactly
        that many samples, the stream started again from its first sample when it ends sooner (a worker
        whose files hold fewer samples than another's)."""
        tf = import_tensorflow()

        seed, epoch = order if order is not None else (0, -1)

        def generate(epoch):
            epoch_order = None if epoch < 0 else (seed, int(epoch))
            try:
                yield from self.batches(
                    batch_size, order=epoch_order, buffer=buffer, skip=skip * (per_step or batch_size), quota=quota
                )
            except SeqError as error:
                _record_failure(error)
                raise

        x_spec = tf.TensorSpec((None, None, *self.sample_shape), tf.float32)
        if not self.with_labels:
            return tf.data.Dataset.from_generator(generate, output_signature=x_spec, args=(epoch,)).unbatch()
        y_dtype = tf.int64 if self.y_dtype == "int64" else tf.float32
        y_spec = tf.TensorSpec((None, None, *self.shards[0].y_shape), y_dtype)
        blocks = tf.data.Dataset.from_generator(generate, output_signature=(x_spec, y_spec), args=(epoch,))
        return blocks.unbatch()

    def batches(
        self, batch_size: int, *, order: tuple[int, int] | None, buffer: int, skip: int, quota: int | None = None
    ) -> Iterator:
        """Blocks of batches as numpy arrays (:func:`_batched`), the first ``skip`` samples left out (see
        :meth:`dataset`)."""
        if quota is not None:
            passes = (self._samples(order, buffer, 0) for _ in itertools.count())
            samples = _limited(itertools.chain.from_iterable(passes), quota)
        else:
            samples = self._samples(order, buffer, skip)
            skip = 0 if order is None else skip
        yield from _batched(samples, batch_size, skip, self.with_labels)

    def _samples(self, order: tuple[int, int] | None, buffer: int, skip: int) -> Iterator:
        """One pass in stored order from sample ``skip``, or shuffled by ``order = (seed, epoch)`` (whole)."""
        if order is None:
            return self._sequential(skip)
        seed, epoch = order
        rng = np.random.default_rng([int(seed) % 2**64, int(epoch), 0x5EED])
        shard_order = np.argsort(rng.random(len(self.shards)), kind="stable")
        return _shuffled(_interleaved(self, shard_order), buffer, rng)

    def _sequential(self, skip: int) -> Iterator:
        """Every shard in its sorted order, from sample ``skip`` on (earlier shards are not opened)."""
        for shard in self.shards:
            if skip >= shard.count:
                skip -= shard.count
                continue
            yield from shard.chunks(self, skip)
            skip = 0


def _limited(samples: Iterator, count: int) -> Iterator:
    """The first ``count`` samples of chunks."""
    for x, y in samples:
        if count <= 0:
            return
        yield x[:count], None if y is None else y[:count]
        count -= len(x)


def _interleaved(stream: Stream, shard_order: np.ndarray) -> Iterator:
    """One sample from each of :data:`SHARDS_OPEN` open shards in turn; a shard that ends gives its place to
    the next in ``shard_order``."""
    pending = [stream.shards[index] for index in shard_order]
    slots: list[list] = []  # [chunk iterator, x, y, offset]
    while pending or slots:
        while pending and len(slots) < SHARDS_OPEN:
            slots.append([pending.pop(0).chunks(stream), None, None, 0])
        slots = [slot for slot in slots if _refill(slot)]
        while len(slots) < SHARDS_OPEN and pending:  # a shard that ended leaves room for the next
            slot = [pending.pop(0).chunks(stream), None, None, 0]
            if _refill(slot):
                slots.append(slot)
        if not slots:
            return
        rows = min(len(slot[1]) - slot[3] for slot in slots)
        xs = [slot[1][slot[3] : slot[3] + rows] for slot in slots]
        ys = [None if slot[2] is None else slot[2][slot[3] : slot[3] + rows] for slot in slots]
        for slot in slots:
            slot[3] += rows
        x = np.stack(xs, axis=1).reshape(rows * len(slots), *xs[0].shape[1:])
        y = None if ys[0] is None else np.stack(ys, axis=1).reshape(rows * len(slots), *ys[0].shape[1:])
        yield x, y


def _refill(slot: list) -> bool:
    """Whether the slot has rows left, reading its shard's next chunk when the current one is used up."""
    while slot[1] is None or slot[3] >= len(slot[1]):
        chunk = next(slot[0], None)
        if chunk is None:
            return False
        slot[1], slot[2], slot[3] = chunk[0], chunk[1], 0
    return True


def _shuffled(samples: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """The samples through a shuffle buffer of ``size``, as tf.data's ``shuffle`` does it: once full, each new
    sample takes the place of one drawn at random, which goes out; the rest go out in random order at the end.
    The draws use one number each, so the order does not depend on how the samples are chunked."""
    buffer_x, buffer_y, filled = None, None, 0
    for x, y in samples:
        if buffer_x is None:
            buffer_x = np.empty((size, *x.shape[1:]), x.dtype)
            buffer_y = None if y is None else np.empty((size, *y.shape[1:]), y.dtype)
        taken = min(size - filled, len(x))
        buffer_x[filled : filled + taken] = x[:taken]
        if y is not None:
            buffer_y[filled : filled + taken] = y[:taken]
        filled += taken
        if taken < len(x):
            yield _swap(buffer_x, buffer_y, x[taken:], None if y is None else y[taken:], rng)
    if filled:
        order = np.argsort(rng.random(filled), kind="stable")
        yield buffer_x[:filled][order], None if buffer_y is None else buffer_y[:filled][order]


def _swap(buffer_x, buffer_y, x, y, rng: np.random.Generator):
    """Out: for each incoming sample in turn, the buffer slot drawn for it; in: the sample, into that slot."""
    size, count = len(buffer_x), len(x)
    slots = np.minimum((rng.random(count) * size).astype(np.int64), size - 1)
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    same = np.concatenate([[False], sorted_slots[1:] == sorted_slots[:-1]])
    previous = np.concatenate([[0], order[:-1]])
    source = np.empty(count, np.int64)  # >= 0: a buffer slot; < 0: incoming sample -(source + 1)
    source[order] = np.where(same, -(previous + 1), sorted_slots)
    from_buffer = source >= 0
    out_x = np.empty_like(x)
    out_x[from_buffer] = buffer_x[source[from_buffer]]
    out_x[~from_buffer] = x[-source[~from_buffer] - 1]
    out_y = None
    if y is not None:
        out_y = np.empty_like(y)
        out_y[from_buffer] = buffer_y[source[from_buffer]]
        out_y[~from_buffer] = y[-source[~from_buffer] - 1]
    last = np.concatenate([sorted_slots[1:] != sorted_slots[:-1], [True]])
    buffer_x[sorted_slots[last]] = x[order[last]]
    if y is not None:
        buffer_y[sorted_slots[last]] = y[order[last]]
    return out_x, out_y


def _batched(samples: Iterator, batch_size: int, skip: int, labels: bool) -> Iterator:
    """Blocks of consecutive batches of ``batch_size``, shaped ``(batches, batch_size, ...)`` (views of the chunks
    read, so that one hand-over to TensorFlow carries many batches), the last batch alone and maybe smaller; the
    first ``skip`` samples dropped."""
    held_x, held_y, held = [], [], 0
    for x, y in samples:
        if skip:
            dropped = min(skip, len(x))
            x, y, skip = x[dropped:], None if y is None else y[dropped:], skip - dropped
            if not len(x):
                continue
        held_x.append(x)
        held_y.append(y)
        held += len(x)
        if held < batch_size:
            continue
        x_all = np.concatenate(held_x) if len(held_x) > 1 else held_x[0]
        y_all = (np.concatenate(held_y) if len(held_y) > 1 else held_y[0]) if labels else None
        whole = (held // batch_size) * batch_size
        yield _block(x_all[:whole], None if y_all is None else y_all[:whole], batch_size, labels)
        held_x, held_y, held = [x_all[whole:]], [None if y_all is None else y_all[whole:]], held - whole
    if held:
        x_all = np.concatenate(held_x)
        yield _block(x_all, np.concatenate(held_y) if labels else None, held, labels)


def _block(x: np.ndarray, y: np.ndarray | None, batch_size: int, labels: bool):
    x = x.reshape(-1, batch_size, *x.shape[1:])
    return (x, y.reshape(-1, batch_size, *y.shape[1:])) if labels else x
