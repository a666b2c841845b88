"""How a streamed source's shards become blocks of samples, for the epochs of :mod:`seqcli.data.stream_reads`:
raw shards read as bytes and decoded a block at once (:class:`_FixedReader`), TFRecord files read by tf.data and
parsed a block at once (:class:`_RecordReader`), other shards read by Python a chunk at a time
(:class:`_ChunkReader`), and for training the parsed copy of the last two (:class:`_CopyingReader`,
:mod:`seqcli.data.parsed`). Every reader gives each shard's samples in the same blocks however it reads them, so
the order of an epoch does not depend on which one reads it; every file it opens passes the read door as the epoch
opens it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from seqcli.data import streams
from seqcli.data.arrays import DataError, as_written
from seqcli.data.parsed import ParsedCopy
from seqcli.data.streams import (
    CHUNK_BYTES,
    NONFINITE,
    READ_BUFFER,
    RECORD_BLOCK,
    SHARDS_OPEN,
    RawArray,
    Shard,
    Stream,
    raw_rows,
    record_failure,
)
from seqcli.keras_env import import_tensorflow

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251


# numpy dtype kind+size -> the TensorFlow dtype tf.io.decode_raw gives for it
DECODABLE = {
    "f2": "float16",
    "f4": "float32",
    "f8": "float64",
    "i1": "int8",
    "i2": "int16",
    "i4": "int32",
    "i8": "int64",
    "u1": "uint8",
    "u2": "uint16",
    "b1": "bool",
}


class _Reader:
    """How a stream's files become blocks of records (:meth:`blocks`, one dataset a file) and a block becomes
    ``(x, y)`` (:meth:`decode`)."""

    def __init__(self, stream: Stream):
        tf = import_tensorflow()

        self.stream = stream
        self.y_dtype = tf.int64 if stream.y_dtype == "int64" else tf.float32
        self.scale = stream.section.scale

    def path(self, index: tf.Tensor) -> tf.Tensor:
        """The file of shard ``index``, once it passes the read door (checked as the epoch opens it)."""
        tf = import_tensorflow()

        return tf.numpy_function(self.stream.checked_path, [index], tf.string, stateful=True, name="seq_read_door")

    def samples(self, files: tf.data.Dataset, *, interleaved: bool) -> tf.data.Dataset:
        """The samples of the shards ``files`` numbers, in blocks: the shards one after the other, or
        :data:`SHARDS_OPEN` of them read at once, a block from each in turn (``interleaved``)."""
        tf = import_tensorflow()

        blocks = self.read(files, self.blocks, interleaved=interleaved)
        return blocks.map(as_written(self.decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def read(self, files: tf.data.Dataset, blocks: Callable, *, interleaved: bool) -> tf.data.Dataset:
        """The blocks ``blocks(index)`` gives of each shard ``files`` numbers: the shards one after the other, or
        :data:`SHARDS_OPEN` of them at once, a block from each in turn (``interleaved``)."""
        tf = import_tensorflow()

        blocks = as_written(blocks)
        if not interleaved:
            return files.flat_map(blocks)
        return files.interleave(
            blocks,
            cycle_length=min(SHARDS_OPEN, len(self.stream.shards)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def blocks(self, index: tf.Tensor) -> tf.data.Dataset:
        """Shard ``index`` as blocks of records, for :meth:`decode`."""
        raise NotImplementedError

    def decode(self, *blocks: tf.Tensor):
        """Blocks as read, as ``(x, y)`` (or x alone) samples."""
        raise NotImplementedError

    def inputs(self, x: tf.Tensor) -> tf.Tensor:
        """A batch of inputs as float32, scaled, and checked to be finite."""
        tf = import_tensorflow()

        finite = x.dtype.is_floating
        x = tf.cast(x, tf.float32)
        if self.scale is not None:
            x = x * tf.constant(self.scale, tf.float32)
        return _finite(x) if finite else x

    def labels(self, y: tf.Tensor) -> tf.Tensor:
        tf = import_tensorflow()

        finite = y.dtype.is_floating
        y = tf.cast(y, self.y_dtype)
        return _finite(y) if finite else y

    def pair(self, x: tf.Tensor, y: tf.Tensor | None):
        return self.inputs(x) if y is None else (self.inputs(x), self.labels(y))


def _finite(values: tf.Tensor) -> tf.Tensor:
    """``values``, once checked to hold no NaN or infinity. Their sum is finite only when they all are (a NaN or
    an infinity makes it one), and summing costs a fraction of checking each value: each value is checked only
    when the sum is not finite, to tell an overflowing sum from a bad value."""
    tf = import_tensorflow()

    return tf.cond(
        tf.math.is_finite(tf.reduce_sum(values)),
        lambda: values,
        lambda: tf.debugging.check_numerics(values, NONFINITE),
    )


class _FixedReader(_Reader):
    """Shards whose samples lie one after another as raw bytes (uncompressed ``.npz`` members, ``.npy``): small
    ones read whole, one read each (:meth:`Stream.reads_whole`), others :data:`CHUNK_BYTES` at a time, each
    chunk read at its place in the file (:func:`~seqcli.data.streams.raw_rows`); a block is decoded at once."""

    def __init__(self, stream: Stream):
        super().__init__(stream)
        tf = import_tensorflow()

        self.arrays = [[_raw(shard, part) for shard in stream.shards] for part in range(2 if stream.with_labels else 1)]
        self.counts = tf.constant([shard.count for shard in stream.shards], tf.int64)
        self.offsets = [tf.constant([array.offset for array in arrays], tf.int64) for arrays in self.arrays]
        self.chunk = max(1, CHUNK_BYTES // sum(arrays[0].record for arrays in self.arrays))
        self.whole = stream.reads_whole()

    def samples(self, files: tf.data.Dataset, *, interleaved: bool) -> tf.data.Dataset:
        """Small shards (:meth:`~seqcli.data.streams.Stream.small_shards`) are read one after the other: whole,
        one read each, read and decoded :data:`SHARDS_OPEN` at once, or a chunk at a time when the memory budget
        is short, the same samples in the same order. Large shards are read a chunk at a time, :data:`SHARDS_OPEN`
        at once when ``interleaved``."""
        if self.whole:
            return files.map(
                as_written(lambda index: self.decode(*self._whole(index))),
                num_parallel_calls=SHARDS_OPEN,
                deterministic=True,
            )
        return super().samples(files, interleaved=interleaved and not self.stream.small_shards())

    def blocks(self, index: tf.Tensor) -> tf.data.Dataset:
        """Shard ``index`` as blocks of ``chunk`` samples (the last maybe fewer), each array's bytes read at its
        place in the file (TensorFlow's fixed-length reader would read through every byte before a region to
        reach it: a large shard's labels after its inputs, a chunk after those before it)."""
        tf = import_tensorflow()

        with tf.control_dependencies([self.path(index)]):  # the read door, as the epoch opens the shard
            count = tf.identity(tf.gather(self.counts, index))
        parts = [tf.uint8] * len(self.arrays)

        def read(start):
            rows = tf.minimum(tf.cast(self.chunk, tf.int64), count - start)
            return tuple(
                tf.ensure_shape(block, [None])
                for block in tf.numpy_function(self._raw_rows, [index, start, rows], parts, name="seq_read_rows")
            )

        return tf.data.Dataset.range(0, count, self.chunk).map(as_written(read))

    def _raw_rows(self, index, start, rows) -> tuple[np.ndarray, ...]:
        return raw_rows(self.stream, index, start, rows)

    def _whole(self, index: tf.Tensor) -> tuple:
        """Each array of shard ``index`` as one string of bytes, the file read in one read (a file cut since the
        door checked it fails ``seq_read_whole``: :func:`~seqcli.data.streams.take_failure` then names it)."""
        tf = import_tensorflow()

        contents, count = tf.io.read_file(self.path(index)), tf.gather(self.counts, index)
        return tuple(
            tf.strings.substr(contents, tf.gather(offsets, index), count * arrays[0].record, name="seq_read_whole")
            for arrays, offsets in zip(self.arrays, self.offsets)
        )

    def decode(self, *blocks: tf.Tensor):
        """Blocks as read (a string of bytes, or a vector of bytes, for each array) as samples."""
        stream = self.stream
        shapes = [stream.sample_shape, stream.shards[0].y_shape]
        values = [_values(block, arrays[0].dtype, shape) for block, arrays, shape in zip(blocks, self.arrays, shapes)]
        return self.pair(values[0], values[1] if len(values) > 1 else None)


def _values(block: tf.Tensor, dtype: str, shape: tuple) -> tf.Tensor:
    """A block of bytes (a string, or a vector of bytes) as the samples of ``dtype`` (numpy's, byte order
    included) and ``shape`` it holds."""
    tf = import_tensorflow()

    numpy_dtype = np.dtype(dtype)
    kind = getattr(tf, DECODABLE[f"{numpy_dtype.kind}{numpy_dtype.itemsize}"])
    little = numpy_dtype.byteorder != ">"
    if block.dtype == tf.string:
        block = tf.io.decode_raw(block, tf.uint8 if kind == tf.bool else kind, little_endian=little)
    elif kind not in (tf.uint8, tf.bool):
        grouped = tf.reshape(block, [-1, numpy_dtype.itemsize])
        block = tf.bitcast(grouped if little else tf.reverse(grouped, [-1]), kind)  # bitcast reads little-endian
    values = tf.not_equal(block, 0) if kind == tf.bool else block
    return tf.reshape(values, [-1, *shape])


class _ParsingReader(_Reader):
    """Shards whose samples are parsed, not just read, in blocks of :attr:`block` samples."""

    @property
    def block(self) -> int:
        raise NotImplementedError


class _RecordReader(_ParsingReader):
    """TFRecord files: ``tf.data.TFRecordDataset`` reads them in blocks of :data:`RECORD_BLOCK` records,
    ``tf.io.parse_example`` parses a batch of records at once."""

    @property
    def block(self) -> int:
        return RECORD_BLOCK

    def blocks(self, index: tf.Tensor) -> tf.data.Dataset:
        tf = import_tensorflow()

        from seqcli.data.tfrecord import COMPRESSIONS

        compression = COMPRESSIONS[self.stream.compression]
        records = tf.data.TFRecordDataset(self.path(index), compression_type=compression, buffer_size=READ_BUFFER)
        return records.batch(RECORD_BLOCK)

    def decode(self, records: tf.Tensor):
        tf = import_tensorflow()

        section = self.stream.section
        parsed = tf.io.parse_example(records, self.stream.parse_features())
        return self.pair(parsed[section.x], parsed[section.y] if self.stream.with_labels else None)


class _ChunkReader(_ParsingReader):
    """Shards Python reads a chunk at a time (:meth:`~seqcli.data.streams.Shard.chunks`): samples arrive
    decoded and checked."""

    @property
    def block(self) -> int:
        return streams.CHUNK_ROWS  # the rows Shard.chunks reads at a time, read where it reads them

    def blocks(self, index: tf.Tensor) -> tf.data.Dataset:
        tf = import_tensorflow()

        stream = self.stream
        x_spec = tf.TensorSpec((None, *stream.sample_shape), tf.float32)
        spec = x_spec
        if stream.with_labels:
            spec = (x_spec, tf.TensorSpec((None, *stream.shards[0].y_shape), self.y_dtype))
        return tf.data.Dataset.from_generator(stream.shard_chunks, output_signature=spec, args=(index,))

    def decode(self, x: tf.Tensor, y: tf.Tensor | None = None):
        return x if y is None else (x, y)


class _CopyingReader(_Reader):
    """A parsed stream with its parsed copy (:mod:`seqcli.data.parsed`): an epoch that starts when the copy
    holds every shard reads them from there, each in one read when the budget allows
    (:meth:`~seqcli.data.streams.Stream.reads_whole`) else a block at a time; any other epoch parses them with
    ``parser`` and writes each block it parses into the copy on its way. The blocks are the parser's either way,
    so an epoch's order does not depend on what the copy holds."""

    def __init__(self, stream: Stream, parser: _ParsingReader, copy: ParsedCopy):
        super().__init__(stream)
        tf = import_tensorflow()

        self.parser, self.copy = parser, copy
        self.counts = tf.constant(copy.counts, tf.int64)
        self.parts = [(tf.float32, stream.sample_shape)]
        if copy.y_shape is not None:
            self.parts.append((self.y_dtype, copy.y_shape))
        self.whole = stream.reads_whole()

    def samples(self, files: tf.data.Dataset, *, interleaved: bool) -> tf.data.Dataset:
        """As the parser's: from the copy when it holds every shard as the epoch starts to be read (asked then,
        once, not when the epoch is built: an epoch built ahead of time still reads the copy), else parsed and
        kept.

        Inside a function (the epochs of ``train_epochs``, whose function runs as each epoch starts) the question
        is asked inline; elsewhere in a ``flat_map`` over one element. Either way the side not taken is ``take(0)``
        of a dataset that is never read, not a nested function: each level of dataset-making functions costs
        about 10 ms as every epoch starts, and the levels this replaced cost a copy epoch half its reading time."""
        tf = import_tensorflow()

        def epoch(_=None):
            whole = tf.ensure_shape(tf.numpy_function(self.copy.complete, [], tf.bool, name="seq_copy_complete"), [])
            copied = self._read_copy(files, interleaved).take(_all_if(whole))
            parsed = self.read(files, self._numbered, interleaved=interleaved).map(
                as_written(self._kept), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
            return copied.concatenate(parsed.take(_all_if(tf.logical_not(whole))))

        if tf.inside_function():
            return epoch()
        return tf.data.Dataset.range(1).flat_map(as_written(epoch))

    def _read_copy(self, files: tf.data.Dataset, interleaved: bool) -> tf.data.Dataset:
        """The shards from the copy, the blocks in the parser's order. One shard is opened at a time, in turn (no
        parallel opening ahead: the memory priced is what is held), then its blocks prefetched."""
        copied = as_written(self._copied)
        if not interleaved:
            blocks = files.flat_map(copied)
        else:
            blocks = files.interleave(copied, cycle_length=min(SHARDS_OPEN, len(self.stream.shards)))
        return blocks.prefetch(SHARDS_OPEN)

    def _numbered(self, index: tf.Tensor) -> tf.data.Dataset:
        """The parser's blocks of shard ``index`` as ``(index, number, block)`` (no function: making a dataset
        that runs one costs milliseconds a shard)."""
        tf = import_tensorflow()

        shard = tf.data.Dataset.from_tensors(index).repeat()
        return tf.data.Dataset.zip((shard, tf.data.Dataset.counter(), self.parser.blocks(index)))

    def _copied(self, index: tf.Tensor) -> tf.data.Dataset:
        """Shard ``index``'s blocks from the copy."""
        tf = import_tensorflow()

        count, block = tf.gather(self.counts, index), self.copy.block
        if self.whole:  # one read, cut into blocks natively (an empty shard: no block, as parsing gives none)
            return tf.data.Dataset.from_tensors(self._read(index, 0, count)).rebatch(block)
        return tf.data.Dataset.range(0, count, block).map(
            as_written(lambda start: self._read(index, start, tf.minimum(tf.cast(block, tf.int64), count - start)))
        )

    def _read(self, index: tf.Tensor, start: tf.Tensor, rows: tf.Tensor):
        """Samples ``start .. start + rows`` of shard ``index`` from the copy, as ``(x, y)`` or x."""
        tf = import_tensorflow()

        dtypes = [dtype for dtype, _ in self.parts]
        read = tf.numpy_function(self._rows, [index, start, rows], dtypes, name="seq_copy_read")
        parts = tuple(tf.ensure_shape(part, [None, *shape]) for part, (_, shape) in zip(read, self.parts))
        return parts if len(parts) > 1 else parts[0]

    def _rows(self, index, start, rows) -> tuple[np.ndarray, ...]:
        try:
            return self.copy.rows(index, start, rows)
        except OSError as error:
            record_failure(
                DataError(f"{self.stream.where}: cannot read the parsed copy of the data: {error.strerror or error}")
            )
            raise

    def _kept(self, index: tf.Tensor, number: tf.Tensor, block):
        """Block ``number`` of shard ``index`` parsed, once it is written into the copy (or is there)."""
        tf = import_tensorflow()

        samples = self.parser.decode(*(block if isinstance(block, tuple) else (block,)))
        parts = [index, number, *tf.nest.flatten(samples)]
        kept = tf.numpy_function(self.copy.keep, parts, tf.bool, name="seq_copy_keep")
        with tf.control_dependencies([kept]):
            return tf.nest.map_structure(tf.identity, samples)

    def decode(self, x: tf.Tensor, y: tf.Tensor | None = None):
        return x if y is None else (x, y)


def _all_if(condition: tf.Tensor) -> tf.Tensor:
    """For ``Dataset.take``: every element when ``condition`` holds, else none."""
    tf = import_tensorflow()

    return tf.where(condition, tf.constant(-1, tf.int64), tf.constant(0, tf.int64))


def _raw(shard: Shard, part: int) -> RawArray:
    """Where x (``part`` 0) or y (1) lies in a shard read as fixed-length records (:func:`_reader` checked it)."""
    raw = shard.raw[part] if shard.raw is not None else None
    assert raw is not None, "_reader reads fixed-length records only from shards that hold them"
    return raw


def reader(stream: Stream) -> _Reader:
    """How ``stream`` is read: raw shards as bytes; others (TFRecord, CSV, compressed .npz) parsed, and for
    training (``stream.parse_once``) through its parsed copy (:mod:`seqcli.data.parsed`) when the temporary
    folder has room for one."""
    if stream.fixed():
        return _FixedReader(stream)
    parser: _ParsingReader = _RecordReader(stream) if stream.shards[0].fmt == "tfrecord" else _ChunkReader(stream)
    copy = _parsed_copy(stream, parser)
    return parser if copy is None else _CopyingReader(stream, parser, copy)


def _parsed_copy(stream: Stream, parser: _ParsingReader) -> ParsedCopy | None:
    """The stream's parsed copy, made empty the first time it is asked for: ``parser``'s blocks and labels."""
    if not stream.parse_once:
        return None
    labels = stream.shards[0].y_shape if stream.with_labels else None
    counts = [shard.count for shard in stream.shards]
    shape, block, y_dtype = stream.sample_shape, parser.block, parser.y_dtype.name
    return stream.parsed.get(lambda: ParsedCopy.create(counts, block, shape, labels, y_dtype))
