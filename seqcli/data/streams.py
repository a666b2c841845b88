"""Streamed sources: shards (a glob or a list of .npz, .npy, .csv or TFRecord files) and TFRecord files, read a
block at a time, never whole, by a native tf.data pipeline (:func:`seqcli.data.stream_reads.stream_batches`).

Memory is bounded by the batches, the shuffle buffer and the shards open at once (:meth:`Stream.shards_open`),
priced against the memory budget before anything is read (:meth:`Stream.check_memory`).

The order of an epoch is a pure function of ``(seed, epoch)``: the shards in an order permuted by it, read
:data:`SHARDS_OPEN` at a time, one block of samples from each in turn (a shard that ends gives its place to the
next one; raw shards of up to :data:`WHOLE_FILE_BYTES` are read one after the other, as if each were one block,
whether the budget lets them be read whole or not), the samples then permuted in windows of half ``data.shuffle_buffer``
(two are held at once). Without shuffling, the shards are read one after the other in their order: the same
samples in the same order as the shards' arrays concatenated. Skipping the first batches of an epoch (exact
resume) replays the same stream.

Each shard's header is checked when the source opens (sample shape and dtypes equal to the first shard's); a
TFRecord file's records are counted then (its length fields checked) and its first record parsed. Every file
passes the read door again just before an epoch reads it, and must be the file it was then
(:meth:`Stream.checked_path`); an epoch that reads the parsed copy reads no file. For training (``parse_once``),
shards that are parsed rather than read as bytes (TFRecord, CSV, compressed .npz) are parsed once: the first
epoch keeps what it parses in a parsed copy that the later epochs read instead (:mod:`seqcli.data.parsed`).
A problem found while a pipeline runs stops it with a TensorFlow error; :func:`take_failure` hands whoever runs the
pipeline seq's :class:`~seqcli.data.arrays.DataError` instead, reading the shards again the slow way to name the
file and record when TensorFlow's error does not.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np

from seqcli.budget import LimitError, human_size, max_memory, over_budget_hint
from seqcli.data import tfrecord
from seqcli.data.arrays import DataError, as_arrays
from seqcli.data.parsed import CopySlot
from seqcli.data.scratch import read_at
from seqcli.errors import SeqError
from seqcli.inputs import check_input, open_input
from seqcli.keras_env import import_tensorflow
from seqcli.specfile.sections import SourceSection

SHARDS_OPEN = 4  # shards read at once, in turn, while shuffling
CHUNK_ROWS = 1024  # rows read from a shard at a time
RECORD_CHUNK = 256  # TFRecord records parsed at a time
DEFAULT_SHUFFLE_BUFFER = 10_000  # samples, when data.shuffle_buffer is not given ...
DEFAULT_BUFFER_BYTES = 64 << 20  # ... or as many as this holds, if fewer (the data decides, never the budget)
PREFETCHED_BATCHES = 4  # batches a pipeline may hold ahead of training, priced with the rest
NONFINITE = "seq: a streamed sample holds NaN or infinity"  # the finite check's mark in TensorFlow's error
READ_BUFFER = 1 << 18  # bytes TensorFlow buffers for each TFRecord file it reads
CHUNK_BYTES = 1 << 20  # bytes of fixed-length samples read as one block from a large shard
RECORD_BLOCK = 256  # TFRecord records read as one block
WHOLE_FILE_BYTES = 32 << 20  # shards up to this size may be read whole, in one read (fewer, cheaper steps)
WHOLE_SHARE = 0.5  # of the memory budget the shards read whole at once may take


_failure_lock = threading.Lock()
_failure: list[SeqError] = []
_reading: list[weakref.ref] = []  # the streams whose pipelines were built last, to name a native read's failure
READING_KEPT = 4


def take_failure(error: BaseException | None = None) -> SeqError | None:
    """The data error that stopped a streamed pipeline since the last call (None when none did); a pipeline
    stops with a TensorFlow error whose text is not seq's, so whoever runs it raises this one instead. When
    ``error``, TensorFlow's, came from reading a stream natively (a damaged record, a record that does not match
    its description, a value that is not finite), the streams read last are read again the slow way to find the
    file and record to name."""
    with _failure_lock:
        recorded = _failure.pop() if _failure else None
    if recorded is not None or error is None or not _from_reading(error):
        return recorded
    streams = [stream for stream in (ref() for ref in _reading) if stream is not None]
    for stream in reversed(streams):
        found = stream.diagnose()
        if found is not None:
            return found
    return None


def _from_reading(error: BaseException) -> bool:
    """Whether TensorFlow's ``error`` is one a stream's native reading raises."""
    if not _reading:
        return False
    tf = import_tensorflow()

    if not isinstance(error, tf.errors.OpError):
        return False
    text = str(error)
    return isinstance(error, tf.errors.DataLossError) or any(
        mark in text for mark in (NONFINITE, "ParseExample", "seq_read_whole", "TFRecord", "corrupted record")
    )


def record_failure(error: SeqError) -> None:
    with _failure_lock:
        _failure[:] = [error]


def note_reading(stream: Stream) -> None:
    """Remember ``stream`` as one whose pipeline may fail (:func:`take_failure` reads it again to say why)."""
    with _failure_lock:
        _reading[:] = [ref for ref in _reading if ref() is not None and ref() is not stream][-(READING_KEPT - 1) :]
        _reading.append(weakref.ref(stream))


# ----------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class RawArray:
    """Where an array's samples lie in a shard's file, one fixed-length record each."""

    offset: int  # bytes before the first sample
    record: int  # bytes a sample
    dtype: str  # numpy's, byte order included: '<f4'


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
    open_bytes: int = 0  # memory the shard holds while Python reads it
    raw: tuple[RawArray, RawArray | None] | None = None  # where x (and y) lie as fixed-length records, if they do
    identity: tuple = ()  # the file as it was opened: (real path, size, modification time)

    def remember(self) -> None:
        """Note the file as it is now (:meth:`Stream.checked_path` requires it to stay so)."""
        status = os.stat(self.path)
        self.identity = (self.path.resolve(), status.st_size, status.st_mtime_ns)

    def chunks(self, source: Stream, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Rows ``start ..`` of the shard as ``(x float32, y or None)`` chunks, checked as in-memory data is (a
        bad value named by its sample's number in the shard)."""
        first = start
        for x, y in _READERS[self.fmt](self, source, start):
            arrays = as_arrays(x, y if source.with_labels else None, None, self.path, source.where, first=first)
            first += len(x)
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


def _cannot_read(where: str, shard: Shard, error: OSError) -> None:
    """Record why the pipeline reading ``shard`` stops: the file cannot be opened or read."""
    record_failure(DataError(f"{where}: cannot read shard {shard.path}: {error.strerror or error}"))


def _changed(where: str, shard: Shard) -> NoReturn:
    """Stop the pipeline reading ``shard``, which is no longer the file the source opened."""
    record_failure(
        DataError(
            f"{where}: shard {shard.path} changed while it was being trained on",
            hint="leave the data alone during a run; start the run again to read it as it is now",
        )
    )
    raise RuntimeError("a shard changed")


def raw_rows(stream: Stream, index, start, rows) -> tuple[np.ndarray, ...]:
    """Samples ``start .. start + rows`` of ``stream``'s shard ``index`` (read as fixed-length records) as the
    bytes of x (and y), each read at its place in the file: opened through the read door (a regular file,
    never blocking), and the file the source opened, checked by its size and modification time before and
    after the reads."""
    shard, start, rows = stream.shards[int(index)], int(start), int(rows)
    assert shard.raw is not None, "only shards of fixed-length records are read by position"
    try:
        with open_input(shard.identity[0], stream.where, limit=None) as file:
            handle = file.fileno()
            _check_same(stream.where, shard, os.fstat(handle))
            arrays = [array for array in shard.raw if array is not None][: 2 if stream.with_labels else 1]
            rows_read = tuple(
                read_at(handle, array.offset + start * array.record, rows * array.record) for array in arrays
            )
            _check_same(stream.where, shard, os.fstat(handle))
    except LimitError:  # a regular file when the epoch opened it: something else has taken its place
        _changed(stream.where, shard)
    except OSError as error:
        _cannot_read(stream.where, shard, error)
        raise
    if any(part is None for part in rows_read):
        _changed(stream.where, shard)
    return rows_read  # type: ignore[return-value]


def _check_same(where: str, shard: Shard, status: os.stat_result) -> None:
    """Stop the pipeline when an open shard is not the file the source opened, as it was then."""
    if (status.st_size, status.st_mtime_ns) != shard.identity[1:]:
        _changed(where, shard)


def _stored_bytes(shard: Shard) -> int:
    """Bytes a sample of a raw shard takes in its file (x and y together); 0 for a shard that is not raw."""
    return sum(array.record for array in shard.raw if array is not None) if shard.raw else 0


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
    parse_once: bool = False  # training's (data.cache): shards that are parsed, not just read, are parsed once
    parsed: CopySlot = field(default_factory=CopySlot, repr=False)  # ... into this copy, for the later epochs
    priced_whole: bool | None = field(default=None, repr=False)  # whether reads_whole() was True when priced

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
            described, y = self.section.features, self.section.y
            assert isinstance(described, dict), "open_stream refuses a TFRecord source without its features"
            names = [self.section.x] + ([y] if self.with_labels and y is not None else [])
            self._features = {
                name: tf.io.FixedLenFeature(described[name].shape, getattr(tf, described[name].dtype)) for name in names
            }
        return self._features

    def small_shards(self) -> bool:
        """Whether the shards are small (none over :data:`WHOLE_FILE_BYTES`): then an epoch reads them one after
        the other, else :data:`SHARDS_OPEN` at once, a block from each in turn. The data alone decides, so the
        order of an epoch never depends on the memory budget."""
        return max(shard.identity[1] for shard in self.shards) <= WHOLE_FILE_BYTES

    def fixed(self) -> bool:
        """Whether the shards are read as fixed-length records, as bytes (else they are parsed: TFRecord, CSV,
        compressed .npz)."""
        return self.shards[0].fmt != "tfrecord" and all(shard.raw is not None for shard in self.shards)

    def reads_whole(self) -> bool:
        """Whether shards are read whole, one read each, when :data:`SHARDS_OPEN` of them, as held while they are
        read, fit in :data:`WHOLE_SHARE` of the budget: small shards of fixed-length records (the file held while
        it is cut into float32 samples), or a shard of the parsed copy (``parse_once``: the samples as read, then
        as a tensor). Else a chunk of each array, or a block of the copy, at a time (in the same order)."""
        largest = max(self.open_bytes(shard, whole=True) for shard in self.shards)
        fits = SHARDS_OPEN * largest <= max_memory() * WHOLE_SHARE
        whole = fits and (self.small_shards() if self.fixed() else self.parse_once)
        if self.priced_whole is None:  # asked first by check_memory: what the source is priced for
            self.priced_whole = whole
        return whole and self.priced_whole  # a part (split off, a worker's) never reads more than was priced

    def decoded_bytes(self) -> int:
        """Memory a sample takes once decoded: its float32 inputs and its labels (at most 8 bytes a value)."""
        return self.batch_bytes(1) + 8 * math.prod(self.shards[0].y_shape)

    def open_bytes(self, shard: Shard, whole: bool) -> int:
        """Memory ``shard`` holds while it is read: a raw shard's bytes as read (the whole file when ``whole``,
        :meth:`reads_whole`, else a chunk) and the samples they become; a parsed shard's as it is parsed, or as
        its parsed copy is read whole."""
        if not self.fixed():
            return max(shard.open_bytes, 2 * shard.count * self.decoded_bytes() if whole else 0)
        stored = _stored_bytes(shard)
        if whole:
            return shard.identity[1] + shard.count * self.decoded_bytes()
        return max(1, CHUNK_BYTES // stored) * (stored + self.decoded_bytes())

    def buffered_bytes(self, buffer: int) -> int:
        """Memory a shuffle buffer of ``buffer`` samples takes: two windows of half of them (one being gathered
        while the other goes out), each sample at least as large as the float32 sample it becomes."""
        return buffer * max(_stored_bytes(self.shards[0]), self.batch_bytes(1))

    def shuffle_buffer(self, asked: int | None) -> int:
        """The shuffle buffer in samples: ``asked``, else :data:`DEFAULT_SHUFFLE_BUFFER` or as many as
        :data:`DEFAULT_BUFFER_BYTES` hold, whichever is fewer. The data alone decides the default, never the
        memory budget: the buffer shapes the order of every epoch, which must be the same when a run resumes
        and on every worker."""
        if asked is not None:
            return asked
        fits = DEFAULT_BUFFER_BYTES // max(self.buffered_bytes(1), 1)
        return max(1, min(DEFAULT_SHUFFLE_BUFFER, self.count, fits))

    def check_memory(self, batch_size: int, buffer: int, shuffle: bool) -> None:
        """DataError when the batches, the shuffle buffer and the shards open at once would pass the budget."""
        whole = self.reads_whole()  # once: it looks at every shard
        held = (self.open_bytes(shard, whole) for shard in self.shards)
        opened = sorted(held, reverse=True)[: self.shards_open(shuffle, whole)]
        batches = self.batch_bytes(batch_size) * PREFETCHED_BATCHES
        buffered = self.buffered_bytes(buffer) if shuffle else 0
        total = batches + buffered + sum(opened)
        if total <= max_memory():
            return
        fits = (max_memory() - batches - sum(opened)) // max(self.buffered_bytes(1), 1)
        if shuffle and fits >= 4:  # a window of two samples or more still shuffles
            lower = f"set data.shuffle_buffer: {fits} (the most that fits), lower data.batch_size"
        else:
            lower = "lower data.batch_size" + (" and data.shuffle_buffer" if shuffle else "")
        raise DataError(
            f"{self.where}: streaming needs about {human_size(total)} (batches "
            f"{human_size(batches)}, shuffle buffer of {buffer:,} samples {human_size(buffered)}, "
            f"{len(opened)} shard(s) open {human_size(sum(opened))}), over the memory limit",
            hint=f"{lower}, split the data into smaller shards, or {over_budget_hint()}",
        )

    def shards_open(self, shuffle: bool, whole: bool) -> int:
        """How many shards an epoch reads at once: :data:`SHARDS_OPEN` while shuffling shards that are parsed or
        large or reading them whole (``whole``, :meth:`reads_whole`: ahead of training), else one."""
        return SHARDS_OPEN if (shuffle and not (self.fixed() and self.small_shards())) or whole else 1

    def split_files(self, fraction: float, seed: int) -> tuple[Stream, Stream]:
        """``(training, validation)``: the files drawn in an order of ``seed`` go to validation until they hold
        ``round(count * fraction)`` samples or more, the rest to training; each part keeps the files' order. A
        pure function of its arguments; DataError when either part would be empty."""
        target = round(self.count * fraction)
        order = np.random.default_rng([int(seed) % 2**64, 0xF11E5]).permutation(len(self.shards))
        held, chosen = 0, set()
        for index in order:
            if held >= target:
                break
            chosen.add(int(index))
            held += self.shards[index].count
        if not 0 < held < self.count:  # samples, not files: a part of empty files is empty too
            raise DataError(
                f"data.validation: a fraction of {fraction} of a streamed source is split off by file, and its "
                f"{len(self.shards)} file(s) leave no samples for {'validation' if not held else 'training'}",
                hint="split the data into more files, or give validation data of its own, "
                "e.g. `validation: data/valid-*.npz`",
            )
        training = [shard for index, shard in enumerate(self.shards) if index not in chosen]
        return self.with_shards(training), self.with_shards([self.shards[index] for index in sorted(chosen)])

    def part(self, workers: int, index: int) -> Stream:
        """The shards worker ``index`` of ``workers`` reads when files are sharded: every ``workers``-th one."""
        return self.with_shards(self.shards[index::workers])

    def with_shards(self, shards: list[Shard]) -> Stream:
        """This source with ``shards`` for its files."""
        return Stream(
            shards,
            self.section,
            self.where,
            self.with_labels,
            self.readers,
            self.compression,
            self.y_dtype,
            self.class_names,
            self._features,
            parse_once=self.parse_once,
            priced_whole=self.priced_whole,
        )

    def checked_path(self, index) -> bytes:
        """The file of shard ``index`` for TensorFlow to open, once it passes the read door and is still the file
        the source opened (the same real path, size and modification time)."""
        shard = self.shards[int(index)]
        try:
            check_input(shard.path, self.where, limit=None)
            status = os.stat(shard.path)
            now = (shard.path.resolve(), status.st_size, status.st_mtime_ns)
        except LimitError as error:
            record_failure(DataError(error.message, error.hint))
            raise
        except OSError as error:
            _cannot_read(self.where, shard, error)
            raise
        if now != shard.identity:
            _changed(self.where, shard)
        return os.fsencode(now[0])

    def shard_chunks(self, index) -> Iterator:
        """Shard ``index`` a chunk at a time, read by Python (:meth:`Shard.chunks`), its path checked first."""
        self.checked_path(index)
        try:
            yield from self.shards[int(index)].chunks(self)
        except SeqError as error:
            record_failure(error)
            raise

    def diagnose(self) -> SeqError | None:
        """The first problem reading every shard the slow way finds (None when none does)."""
        try:
            for shard in self.shards:
                for _ in shard.chunks(self):
                    pass
        except SeqError as error:
            return error
        return None
