"""A source's batches for one epoch: all of it (or the indices asked for) in an order that is a pure function of
``(seed, epoch)``, or one worker's share of it under a multi-worker strategy (by file: its own shards or image
folders)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from seqcli.data.arrays import as_written, eager_constants
from seqcli.data.images import DecodedOnFirstUse, Images
from seqcli.data.stream_reads import stream_batches
from seqcli.data.streams import Stream
from seqcli.keras_env import import_tensorflow

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251

    from seqcli.data.sources import Source


def source_batches(
    source: Source | DecodedOnFirstUse,
    indices: np.ndarray,
    batch_size: int,
    *,
    labels: bool,
    order_seed: tuple[int, Any] | None = None,
    skip: int = 0,
    buffer: int | None = None,
    per_step: int | None = None,
    quota: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``source[indices]``, permuted by ``order_seed = (seed, epoch)`` when given,
    without their first ``skip`` steps of ``per_step`` samples (default: one batch; skipped before anything is
    read). A streamed source is shuffled through a buffer of ``buffer`` samples instead
    (:mod:`seqcli.data.streams`). With ``quota``, exactly that many samples: the indices again, in the same
    order, when they end sooner (as :func:`~seqcli.data.stream_reads.stream_batches` does)."""
    tf = import_tensorflow()

    if isinstance(source, Stream):
        return _stream_batches(source, len(indices), batch_size, labels, order_seed, skip, buffer)
    count = len(indices)
    total = count if quota is None else quota
    positions = tf.data.Dataset.range(min(skip * (per_step or batch_size), total), total)
    (index_table,) = eager_constants(None if _is_identity(indices, source.count) else indices)

    def order(position):
        if quota is not None:
            position = position % count
        if order_seed is not None:
            seed, epoch = order_seed
            key = tf.stack([tf.constant(unsigned_seed(seed) % 2**63, tf.int64), tf.cast(epoch, tf.int64)])
            position = tf.random.experimental.index_shuffle(position, key, tf.constant(count - 1, tf.int64))
        return position if index_table is None else tf.gather(index_table, position)

    return source.pipeline(positions, order, batch_size, labels)


def _stream_batches(source: Stream, count: int, batch_size: int, labels: bool, order_seed, skip: int, buffer):
    """A streamed source's batches: all of it (a fraction is never split off one: load_datasets), or its first
    ``count`` samples in stored order (a capped sample to adapt layers on)."""
    tf = import_tensorflow()

    quota = count if count < source.count and order_seed is None else None
    dataset = stream_batches(source, batch_size, order=order_seed, buffer=buffer or 1, skip=skip, quota=quota)
    if source.with_labels and not labels:
        dataset = dataset.map(as_written(lambda x, y: x), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset


def prefetched(dataset: tf.data.Dataset) -> tf.data.Dataset:
    tf = import_tensorflow()

    return dataset.prefetch(tf.data.AUTOTUNE)


def _is_identity(indices: np.ndarray, count: int) -> bool:
    return len(indices) == count and bool(np.all(indices == np.arange(count)))


def unsigned_seed(seed: int) -> int:
    return int(seed) % 2**64


def file_sharded(train, workers: tuple[int, int], batch_size: int, seed: int, shuffle: bool, buffer):
    """``(epoch builder, steps per epoch, description)`` when the workers share a streamed source by file: each
    reads every ``count``-th shard and takes ``batch_size / count`` samples a step, an epoch being as many steps
    as the worker with the most samples needs (one with fewer starts its shards again). None when the source is
    not streamed, has fewer files than workers, leaves a worker only empty files, or the batch does not divide
    among them."""
    count, index = workers
    if not isinstance(train, Stream) or len(train.shards) < count or batch_size % count:
        return None
    per_step = batch_size // count
    counts = [sum(shard.count for shard in train.shards[worker::count]) for worker in range(count)]
    if min(counts) == 0:  # a worker whose shards are all empty would have nothing to start again: share by sample
        return None
    steps = math.ceil(max(counts) / per_step)
    mine = train.part(count, index)

    def epoch_builder(epoch, skip: int) -> tf.data.Dataset:
        order = (seed, epoch) if shuffle else None
        dataset = stream_batches(
            mine, batch_size, order=order, buffer=buffer or 1, skip=skip, per_step=per_step, quota=steps * per_step
        )
        return _not_auto_sharded(dataset)

    files = len(mine.shards)
    return epoch_builder, steps, f"by file ({files} of {len(train.shards)} files on worker {index} of {count})"


def part_sharded(train, workers: tuple[int, int], batch_size: int, seed: int, shuffle: bool, decode: bool):
    """As :func:`file_sharded`, for image shards: ``(epoch builder, steps per epoch, description)`` when the
    workers share them by folder, each decoding and reading the images of every ``count``-th folder alone. None
    when the source is not image shards, has fewer folders than workers, or the batch does not divide."""
    count, index = workers
    if not isinstance(train, Images) or train.part_count < count or batch_size % count:
        return None
    per_step = batch_size // count
    folders = train.part_count
    counts = [train.of_parts(range(worker, folders, count)).count for worker in range(count)]
    if min(counts) == 0:
        return None
    most = max(counts)
    steps = math.ceil(most / per_step)
    mine = train.of_parts(range(index, folders, count))
    source = DecodedOnFirstUse(mine, "data.train") if decode else mine
    indices = np.arange(mine.count, dtype=np.int64)

    def epoch_builder(epoch, skip: int) -> tf.data.Dataset:
        order_seed = (seed, epoch) if shuffle else None
        dataset = source_batches(
            source,
            indices,
            batch_size,
            labels=True,
            order_seed=order_seed,
            skip=skip,
            per_step=per_step,
            quota=steps * per_step,
        )
        return _not_auto_sharded(dataset)

    mine_count = len(range(index, folders, count))
    return epoch_builder, steps, f"by file ({mine_count} of {folders} image folders on worker {index} of {count})"


def _not_auto_sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """A worker's own share, which tf.distribute must not shard again."""
    tf = import_tensorflow()

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)
