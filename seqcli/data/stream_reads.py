"""A streamed source as a native tf.data pipeline: TensorFlow reads, shuffles, batches and decodes the records in
its own threads, so that training is not held back by Python (see :mod:`seqcli.data.streams` for the promises).

Records are kept as they are stored (a sample's raw bytes in an uncompressed ``.npz`` or ``.npy``, a serialized
``tf.train.Example``) until they are batched, then decoded a batch at a time. Shards that cannot be read as
fixed-length records (CSV, compressed ``.npz``, Fortran-ordered arrays) are read by Python a chunk at a time
through the same order, shuffle and batching.

The order of an epoch is a pure function of ``(seed, epoch)``, computed with stateless random ops (the global
seed plays no part): the shards in a permuted order, raw shards of up to
:data:`~seqcli.data.streams.WHOLE_FILE_BYTES` one after the other, others
:data:`~seqcli.data.streams.SHARDS_OPEN` at once, a block from each in turn, and the samples in windows of half
the shuffle buffer, each window permuted. How a shard is read (whole, or a chunk at a time when the memory
budget is short) never changes the order. Every
file passes the read door just before the epoch opens it (:meth:`~seqcli.data.streams.Stream.checked_path`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seqcli.budget import max_memory
from seqcli.data.streams import (
    CHUNK_BYTES,
    NONFINITE,
    READ_BUFFER,
    RECORD_BLOCK,
    SHARDS_OPEN,
    RawArray,
    Shard,
    Stream,
    note_reading,
    raw_rows,
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


def stream_batches(
    stream: Stream,
    batch_size: int,
    *,
    order: tuple | None = None,
    buffer: int = 1,
    skip: int = 0,
    per_step: int | None = None,
    quota: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``stream``: in stored order, or in the order of ``order = (seed, epoch)`` (the epoch may be a
    tensor: inside ``flat_map``), shuffled through ``buffer`` samples; without their first ``skip`` steps of
    ``per_step`` samples (default: one batch). With ``quota``, an epoch holds exactly that many samples, the
    stream started again from its first sample when it ends sooner (a worker whose files hold fewer samples
    than another's)."""
    tf = import_tensorflow()

    note_reading(stream)
    skipped = skip * (per_step or batch_size)
    batches = _batches(stream, batch_size, order=order, buffer=buffer, skip=skipped, quota=quota)
    options = tf.data.Options()
    options.autotune.ram_budget = max_memory()  # what tf.data's tuning may hold in its buffers
    return batches.with_options(options)


def _batches(
    stream: Stream, batch_size: int, *, order: tuple | None, buffer: int, skip: int, quota: int | None
) -> tf.data.Dataset:
    """Batches ``(x float32, y)`` (or x alone) of ``stream``: in stored order (``order`` None) or in the order of
    ``order = (seed, epoch)`` (the epoch may be a tensor), the first ``skip`` samples left out; with ``quota``,
    exactly that many samples, the stream started again from its first when it ends sooner."""
    tf = import_tensorflow()

    reader = _reader(stream)
    if order is None and quota is None:
        first, skip = _first_shard(stream, skip)
        blocks = reader.samples(tf.data.Dataset.range(first, len(stream.shards)), interleaved=False)
    else:
        count = len(stream.shards)
        files = tf.data.Dataset.range(count) if order is None else _permuted(count, _key(*order))
        blocks = reader.samples(files, interleaved=order is not None)
    if order is not None:
        blocks = _window_shuffled(blocks, buffer // 2, _key(*order))
    return _batched(blocks, batch_size, skip, quota)


def _batched(blocks: tf.data.Dataset, batch_size: int, skip: int, quota: int | None) -> tf.data.Dataset:
    """Blocks of samples as batches of ``batch_size`` (the last maybe smaller), the first ``skip`` samples left
    out; with ``quota``, of exactly that many samples, the blocks read again from the start when they end."""
    if quota is not None:
        return blocks.unbatch().repeat().take(quota).skip(skip).batch(batch_size)
    if skip % batch_size:
        return blocks.unbatch().skip(skip).batch(batch_size)
    return blocks.rebatch(batch_size).skip(skip // batch_size)


def _first_shard(stream: Stream, skip: int) -> tuple[int, int]:
    """The first shard a stored-order pass from sample ``skip`` reads, and the samples to skip in it."""
    for index, shard in enumerate(stream.shards):
        if skip < shard.count:
            return index, skip
        skip -= shard.count
    return len(stream.shards), 0


def _key(seed, epoch) -> tf.Tensor:
    """The stateless random key of ``(seed, epoch)``: two int64s."""
    tf = import_tensorflow()

    seed = int(seed) % 2**64
    base = tf.constant([seed % 2**32, seed >> 32], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def _permuted(count: int, key: tf.Tensor) -> tf.data.Dataset:
    """The numbers ``0 .. count - 1`` in the order the key draws."""
    tf = import_tensorflow()

    order = tf.argsort(tf.random.stateless_uniform([count], seed=key), stable=True)
    return tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64))


def _window_shuffled(blocks: tf.data.Dataset, window: int, key: tf.Tensor) -> tf.data.Dataset:
    """The samples of ``blocks`` in consecutive windows of ``window``, each window permuted by the key and its
    number. One window is gathered while the one before it goes out: a shuffle buffer holds two (so a buffer of
    N samples is windows of N / 2)."""
    tf = import_tensorflow()

    if window <= 1:
        return blocks

    def permute(number, block):
        first = tf.nest.flatten(block)[0]
        window_key = tf.random.experimental.stateless_fold_in(key, number)
        order = tf.argsort(tf.random.stateless_uniform(tf.shape(first)[:1], seed=window_key), stable=True)
        return tf.nest.map_structure(lambda part: tf.gather(part, order), block)

    return blocks.rebatch(window).enumerate().map(permute)


# ----------------------------------------------------------------------------- readers


class _Reader:
    """How a stream's files become records (:meth:`records`, one dataset a file) and a batch of records becomes
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

        if interleaved:
            blocks = files.interleave(
                self.blocks,
                cycle_length=min(SHARDS_OPEN, len(self.stream.shards)),
                block_length=1,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        else:
            blocks = files.flat_map(self.blocks)
        return blocks.map(self.decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

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
                lambda index: self.decode(*self._whole(index)), num_parallel_calls=SHARDS_OPEN, deterministic=True
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

        return tf.data.Dataset.range(0, count, self.chunk).map(read)

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


class _RecordReader(_Reader):
    """TFRecord files: ``tf.data.TFRecordDataset`` reads them in blocks of :data:`RECORD_BLOCK` records,
    ``tf.io.parse_example`` parses a batch of records at once."""

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


class _ChunkReader(_Reader):
    """Shards Python reads a chunk at a time (:meth:`~seqcli.data.streams.Shard.chunks`): samples arrive
    decoded and checked."""

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


def _raw(shard: Shard, part: int) -> RawArray:
    """Where x (``part`` 0) or y (1) lies in a shard read as fixed-length records (:func:`_reader` checked it)."""
    raw = shard.raw[part] if shard.raw is not None else None
    assert raw is not None, "_reader reads fixed-length records only from shards that hold them"
    return raw


def _reader(stream: Stream) -> _Reader:
    if stream.shards[0].fmt == "tfrecord":
        return _RecordReader(stream)
    if all(shard.raw is not None for shard in stream.shards):
        return _FixedReader(stream)
    return _ChunkReader(stream)
