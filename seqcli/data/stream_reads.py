"""A streamed source as a native tf.data pipeline: TensorFlow reads, shuffles, batches and decodes the records in
its own threads, so that training is not held back by Python (see :mod:`seqcli.data.streams` for the promises).

Records are kept as they are stored (a sample's raw bytes in an uncompressed ``.npz`` or ``.npy``, a serialized
``tf.train.Example``) until they are batched, then decoded a batch at a time. Shards that cannot be read as
fixed-length records (CSV, compressed ``.npz``, Fortran-ordered arrays) are read by Python a chunk at a time
through the same order, shuffle and batching. For training, what TFRecord and those shards parse into is kept
by the first epoch in a parsed copy (:mod:`seqcli.data.parsed`) that the later ones read, in the same blocks.

The order of an epoch is a pure function of ``(seed, epoch)``, computed with stateless random ops (the global
seed plays no part): the shards in a permuted order, raw shards of up to
:data:`~seqcli.data.streams.WHOLE_FILE_BYTES` one after the other, others
:data:`~seqcli.data.streams.SHARDS_OPEN` at once, a block from each in turn, and the samples in windows of half
the shuffle buffer, each window permuted. How a shard is read (whole, or a chunk at a time when the memory
budget is short, parsed or from its parsed copy) never changes the order. Every file an epoch reads passes the
read door just before the epoch opens it (:meth:`~seqcli.data.streams.Stream.checked_path`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqcli.budget import max_memory
from seqcli.data.arrays import as_written
from seqcli.data.stream_readers import reader
from seqcli.data.streams import Stream, note_reading
from seqcli.keras_env import import_tensorflow

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251


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

    source = reader(stream)
    if order is None and quota is None:
        first, skip = _first_shard(stream, skip)
        blocks = source.samples(tf.data.Dataset.range(first, len(stream.shards)), interleaved=False)
    else:
        count = len(stream.shards)
        files = tf.data.Dataset.range(count) if order is None else _permuted(count, _key(*order))
        blocks = source.samples(files, interleaved=order is not None)
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

    return blocks.rebatch(window).enumerate().map(as_written(permute))
