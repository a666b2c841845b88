"""Opened sources -> tf.data pipelines: the training epochs in an order that is a pure function of
``(seed, epoch)``, the validation split, and single sources for evaluate, predict and extract."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqcli.data.arrays import DataError, as_written
from seqcli.data.batching import file_sharded, part_sharded, prefetched, source_batches, unsigned_seed
from seqcli.data.images import DecodedOnFirstUse, Images
from seqcli.data.sources import Source, as_section, open_source, validate_section
from seqcli.data.streams import Stream
from seqcli.data.text import Texts
from seqcli.files import resolve_path
from seqcli.keras_env import import_tensorflow
from seqcli.specfile.sections import DataSection, SourceSection, ValidationSplit
from seqcli.stages import stage

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251

Pipelined = Source | DecodedOnFirstUse  # what batches are built from: a source, or an image folder decoded once

# Validation batches (float32 inputs) are cached in memory up to this size; see load_datasets.
CACHE_LIMIT_BYTES = 1 << 30


@dataclass
class Datasets:
    """The training and validation pipelines of a spec's ``data:`` section.

    Pipelines are built on first use (after training's memory checks; training images are decoded then).
    ``train`` is epoch 0 (:meth:`train_for_epoch` with ``epoch=0``): iterating it again repeats
    that order, so a multi-epoch loop should call :meth:`train_for_epoch` (or
    :meth:`train_epochs`) instead. ``validation`` is in a fixed order. Both yield ``(x, y)``
    batches, x float32. ``seed`` is the seed actually used (a fresh random one when the caller
    passed None): save it with a checkpoint to reproduce the split and the epoch orders.
    """

    train_count: int | None = None
    validation_count: int | None = None
    steps_per_epoch: int | None = None
    input_shape: tuple | None = None
    input_dtype: str = "float32"  # "string" for text samples
    class_names: list[str] | None = None
    seed: int | None = None
    batch_size: int | None = None
    validation_steps: int | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # in-memory sources' labels, by spec path
    sharding: str | None = None  # under several workers: how they share the training data, in words
    train_labels: np.ndarray | None = None  # the training split's labels (class weights are counted on them)
    _adapt_builder: Callable[[int | None], tf.data.Dataset] | None = field(default=None, repr=False)
    _epoch_builder: Callable[[Any, int], tf.data.Dataset] | None = field(default=None, repr=False)
    _validation_builder: Callable[[], tf.data.Dataset] | None = field(default=None, repr=False)
    _built: dict[str, tf.data.Dataset] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, train: tf.data.Dataset | None, validation: tf.data.Dataset | None = None) -> Datasets:
        """Hand-built pipelines: every epoch of ``train`` is the same."""
        return cls(_built={"train": train, "validation": validation})

    @property
    def train(self) -> tf.data.Dataset | None:
        if "train" not in self._built:  # built on first use: image folders are decoded then
            self._built["train"] = None if self._epoch_builder is None else self.train_for_epoch(0)
        return self._built["train"]

    @property
    def validation(self) -> tf.data.Dataset | None:
        if "validation" not in self._built:
            self._built["validation"] = None if self._validation_builder is None else self._validation_builder()
        return self._built["validation"]

    @stage("pipeline: build an epoch")
    def train_for_epoch(self, epoch: int, skip: int = 0) -> tf.data.Dataset:
        """Epoch ``epoch`` of the training data (0-based): ``steps_per_epoch`` batches, less the
        first ``skip``, prefetched. The same ``(seed, epoch)`` always gives the same batches."""
        if epoch < 0 or skip < 0:
            raise ValueError(f"epoch and skip must be >= 0. Received: epoch={epoch}, skip={skip}")
        if self._epoch_builder is None:
            if self.train is None:
                raise DataError("there is no training data", hint="add `data: {train: ...}` to the spec")
            return self.train.skip(skip)
        tf = import_tensorflow()

        return self._epoch_builder(epoch, skip).prefetch(tf.data.AUTOTUNE)

    def adapt_inputs(self, samples: int | None = None) -> tf.data.Dataset:
        """The training split's inputs (no labels) in batches, for layers that adapt to the data: all of them
        in stored order, or at most ``samples`` of them, chosen by the seed (kept in stored order)."""
        if self._adapt_builder is None:
            raise DataError("there is no training data", hint="add `data: {train: ...}` to the spec")
        return self._adapt_builder(samples)

    @stage("pipeline: build the epochs")
    def train_epochs(self, start: int, stop: int, skip: int = 0) -> tf.data.Dataset:
        """Epochs ``start`` .. ``stop - 1`` back to back in one dataset, the first missing its
        first ``skip`` batches; each epoch's batches are those of :meth:`train_for_epoch`.
        For ``model.fit(..., steps_per_epoch=steps_per_epoch)``, which keeps one iterator."""
        tf = import_tensorflow()

        if self._epoch_builder is None or stop <= start:
            return self.train_for_epoch(start, skip)
        # The first epoch is built here, eagerly: a source decoded on first use (image folders) is decoded
        # now, and its errors are seq's, not autograph's staging errors from inside flat_map.
        first = self._epoch_builder(start, skip)
        rest = tf.data.Dataset.range(start + 1, stop).flat_map(as_written(lambda epoch: self._epoch_builder(epoch, 0)))
        return first.concatenate(rest).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- public API


def load_datasets(
    data: dict,
    base_dir: Path,
    *,
    seed: int | None,
    batch_size: int | None = None,
    input_shape: tuple | None = None,
    decode_once: bool = True,
    parse_once: bool = True,
    workers: tuple[int, int] = (1, 0),
) -> Datasets:
    """Training and validation pipelines for a spec's ``data:`` section (a plain dict).

    ``validation`` may be a fraction of the training data, split off by ``seed`` before any
    shuffling (no sample is in both), or a source of its own. With ``cache`` (the default) its
    batches are kept in memory after the first pass when they fit in :data:`CACHE_LIMIT_BYTES`.
    ``batch_size`` overrides the section's. ``input_shape``, the model's (None for any), is compared with each
    file's sample shape as soon as its header is read. With ``decode_once`` and ``cache``, training images are
    decoded once for every epoch, when a pipeline is first used (:func:`seqcli.data.images.decode_once`); pass
    False for one pass over the data. With ``decode_once``, ``parse_once`` and ``cache``, a streamed source's
    TFRecord, CSV or compressed .npz shards are parsed once: the first epoch keeps their samples in a parsed copy
    the later ones read (:mod:`seqcli.data.parsed`); pass ``parse_once=False`` for a single epoch.
    ``workers = (count, index)`` under a multi-worker strategy: a streamed source of at least ``count`` files is
    shared by file, image shards of at least ``count`` folders by folder when none is split off to validate
    (:mod:`seqcli.data.batching`), any other by sample (each worker reads everything and keeps its part of each
    global batch). Raises :class:`DataError` for anything wrong with the data.
    """
    section = validate_section(DataSection, data or {}, "data")
    batch_size = batch_size or section.batch_size
    seed = seed if seed is not None else secrets.randbelow(2**31)
    base_dir = Path(base_dir)
    if section.train is None:
        return _validation_only(section, base_dir, seed, batch_size, input_shape)

    opened = open_source(section.train, base_dir, "data.train", labels=True, input_shape=input_shape)
    train: Pipelined = opened
    if decode_once and section.cache and isinstance(train, Images):
        train = DecodedOnFirstUse(train, "data.train")
    train_indices = np.arange(train.count, dtype=np.int64)
    validation: Pipelined | None = None
    validation_indices: np.ndarray | None = None
    buffer = None
    if isinstance(train, Stream):
        train.parse_once = decode_once and parse_once and section.cache  # its parsed shards: once, for every epoch
        buffer = train.shuffle_buffer(section.shuffle_buffer)
        train.check_memory(batch_size, buffer, section.shuffle)
    if isinstance(section.validation, (float, ValidationSplit)) and isinstance(train, Stream):
        train, validation = _split_stream(train, section.validation, seed)
        validation.parse_once = False  # read once an epoch, as it is: no copy to make
        train_indices = np.arange(train.count, dtype=np.int64)
        validation_indices = np.arange(validation.count, dtype=np.int64)
        validation.check_memory(batch_size, 0, shuffle=False)
    elif isinstance(section.validation, (float, ValidationSplit)):
        train_indices, validation_indices = _split(train, section.validation, seed)
        validation = train
    elif section.validation is not None:
        validation = open_source(
            section.validation,
            base_dir,
            "data.validation",
            labels=True,
            input_shape=input_shape,
            class_names=train.class_names,
        )
        _check_compatible(train, validation)
        if isinstance(validation, Stream):
            validation.check_memory(batch_size, 0, shuffle=False)
        validation_indices = np.arange(validation.count, dtype=np.int64)

    def epoch_builder(epoch, skip: int) -> tf.data.Dataset:
        order_seed = (seed, epoch) if section.shuffle else None
        return source_batches(
            train, train_indices, batch_size, labels=True, order_seed=order_seed, skip=skip, buffer=buffer
        )

    steps_per_epoch, sharding = math.ceil(len(train_indices) / batch_size), None
    if workers[0] > 1:
        sharded = file_sharded(train, workers, batch_size, seed, section.shuffle, buffer)
        if sharded is None and len(train_indices) == opened.count:  # image shards, none split off to validate
            sharded = part_sharded(opened, workers, batch_size, seed, section.shuffle, decode_once and section.cache)
        if sharded is not None:
            epoch_builder, steps_per_epoch, sharding = sharded
        else:
            sharding = f"by sample (each of {workers[0]} workers reads all the data and keeps its part of each batch)"

    def validation_builder() -> tf.data.Dataset:
        assert validation is not None and validation_indices is not None, "only built with validation data"
        return _validation_batches(validation, validation_indices, batch_size, section.cache)

    def adapt_builder(samples: int | None) -> tf.data.Dataset:
        indices = adapt_indices(train_indices, samples, seed)
        return prefetched(source_batches(train, indices, batch_size, labels=False))

    train_labels = source_labels(train)
    return Datasets(
        _validation_builder=None if validation is None else validation_builder,
        train_count=len(train_indices),
        validation_count=None if validation_indices is None else len(validation_indices),
        steps_per_epoch=steps_per_epoch,
        sharding=sharding,
        validation_steps=None if validation_indices is None else math.ceil(len(validation_indices) / batch_size),
        input_shape=train.sample_shape,
        input_dtype=input_dtype(train),
        class_names=train.class_names,
        seed=seed,
        batch_size=batch_size,
        labels={
            where: y
            for where, source in (("data.train", train), ("data.validation", validation))
            if (y := getattr(source, "y", None)) is not None
        },
        train_labels=None if train_labels is None else train_labels[train_indices],
        _epoch_builder=epoch_builder,
        _adapt_builder=adapt_builder,
    )


def source_labels(source: Pipelined) -> np.ndarray | None:
    """A source's labels as held in memory (an image folder's class ids), or None when it has none."""
    labels = getattr(source, "y", None)
    return labels if labels is not None else getattr(source, "labels", None)


def adapt_indices(indices: np.ndarray, samples: int | None, seed: int) -> np.ndarray:
    """``indices``, or ``samples`` of them drawn by ``seed`` (a pure function of its arguments), in order."""
    if samples is None or samples >= len(indices):
        return indices
    chosen = np.random.default_rng([unsigned_seed(seed), 0xADA97]).choice(len(indices), samples, replace=False)
    return indices[np.sort(chosen)]


def _split_stream(train: Stream, validation: float | ValidationSplit, seed: int) -> tuple[Stream, Stream]:
    """A streamed source's (training, validation) parts: whole files drawn by ``seed``
    (:meth:`~seqcli.data.streams.Stream.split_files`); its samples are never all in memory to draw from."""
    if isinstance(validation, ValidationSplit) and validation.stratify:
        raise DataError(
            "data.validation.stratify: a streamed source is split by file, so each class's share cannot be kept",
            hint="set stratify: false, or give validation data of its own, e.g. `validation: data/valid-*.npz`",
        )
    return train.split_files(validation if isinstance(validation, float) else validation.fraction, seed)


def _split(train: Pipelined, validation: float | ValidationSplit, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(validation, float):
        return split_indices(train.count, validation, seed)
    if not validation.stratify:
        return split_indices(train.count, validation.fraction, seed)
    labels = source_labels(train)
    if labels is None or not (np.issubdtype(labels.dtype, np.integer) or labels.ndim == 2):
        raise DataError(
            "data.validation.stratify: the labels of data.train are not class ids",
            hint="stratify keeps each class's share; for regression targets set stratify: false",
        )
    return stratified_indices(labels, validation.fraction, seed)


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (train, validation) sample indices holding about ``fraction`` of each class in
    validation (``round(class count * fraction)``), a pure function of its arguments. One-hot labels count
    by their largest entry."""
    classes = labels.argmax(axis=-1) if labels.ndim == 2 else labels
    rng = np.random.default_rng([unsigned_seed(seed), 0x57A7])
    held = [
        members[: round(len(members) * fraction)]
        for members in (rng.permutation(np.flatnonzero(classes == value)) for value in np.unique(classes))
    ]
    validation = np.sort(np.concatenate(held)).astype(np.int64)
    if not 0 < len(validation) < len(classes):
        raise DataError(
            f"data.validation: a stratified fraction of {fraction} of {len(classes)} training samples leaves "
            f"{len(validation)} for validation and {len(classes) - len(validation)} for training",
            hint="both need at least one sample: use more data or a different fraction",
        )
    return np.setdiff1d(np.arange(len(classes), dtype=np.int64), validation), validation


def load_source(
    source: str | dict | SourceSection,
    base_dir: Path,
    *,
    batch_size: int,
    labels: bool = True,
    where: str = "data source",
    input_shape: tuple | None = None,
    class_names: list[str] | None = None,
) -> tuple[tf.data.Dataset, int | None]:
    """One source as ``(dataset, sample count)``: batched, in its stored order, prefetched.

    Batches are ``(x, y)``, or ``x`` alone with ``labels=False``. For evaluate, predict, extract.
    ``where`` names the source in error messages (e.g. ``"data.test"``); ``input_shape``, the model's, is
    compared with the samples' as soon as the file's header is read; ``class_names``, the model's, map a
    label column of class names to the model's class indices.
    """
    opened = open_source(source, Path(base_dir), where, labels=labels, input_shape=input_shape, class_names=class_names)
    dataset = source_batches(opened, np.arange(opened.count, dtype=np.int64), batch_size, labels=labels)
    return prefetched(dataset), opened.count


def load_arrays(source: str | dict | SourceSection, base_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A small in-memory source as numpy arrays: x float32 (``scale`` applied), y or None.

    Image directories are streamed, never loaded whole: they raise :class:`DataError`.
    """
    opened = open_source(source, Path(base_dir), "data source", labels=False, keep_labels=True)
    if isinstance(opened, Stream):
        raise DataError(
            "the data source is streamed (shards or TFRecord), not loaded into memory as arrays",
            hint="use a single .npz, .npy or .csv source here",
        )
    if isinstance(opened, Images):
        (name,) = as_section(source, "data source").path_names  # an image folder is opened from one name
        path = resolve_path(name, base_dir)
        raise DataError(
            f"{path} is an image directory; it is streamed from disk, not loaded into memory as arrays",
            hint="use an .npz, .npy or .csv source here",
        )
    return opened.float_x(), opened.y


def input_dtype(source: Pipelined) -> str:
    """The dtype a source's batches hold: ``string`` for text, else ``float32``."""
    return "string" if isinstance(source, Texts) else "float32"


def split_indices(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (train, validation) sample indices; validation holds ``round(count * fraction)``.

    A pure function of its arguments."""
    validation_count = round(count * fraction)
    if not 0 < validation_count < count:
        raise DataError(
            f"data.validation: a fraction of {fraction} of {count} training samples leaves "
            f"{validation_count} for validation and {count - validation_count} for training",
            hint="both need at least one sample: use more data or a different fraction",
        )
    permutation = np.random.default_rng([unsigned_seed(seed), 0x5B117]).permutation(count)
    return np.sort(permutation[validation_count:]), np.sort(permutation[:validation_count])


# ----------------------------------------------------------------------------- pipelines


def _validation_batches(source: Pipelined, indices: np.ndarray, batch_size: int, cache: bool) -> tf.data.Dataset:
    """Validation batches in a fixed order; with ``cache``, kept in memory after the first pass when they
    fit in :data:`CACHE_LIMIT_BYTES` (re-gathering them costs about 10% of a small model's epoch)."""
    dataset = source_batches(source, indices, batch_size, labels=True)
    if cache and source.batch_bytes(len(indices)) <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    return prefetched(dataset)


def _validation_only(
    section: DataSection, base_dir: Path, seed: int, batch_size: int, input_shape: tuple | None
) -> Datasets:
    if isinstance(section.validation, (float, ValidationSplit)):
        raise DataError("data.validation is a fraction of data.train, but there is no data.train")
    if section.validation is None:
        return Datasets(seed=seed, batch_size=batch_size)
    validation = open_source(section.validation, base_dir, "data.validation", labels=True, input_shape=input_shape)
    return Datasets(
        _validation_builder=lambda: _validation_batches(
            validation, np.arange(validation.count, dtype=np.int64), batch_size, section.cache
        ),
        validation_count=validation.count,
        validation_steps=math.ceil(validation.count / batch_size),
        input_shape=validation.sample_shape,
        input_dtype=input_dtype(validation),
        class_names=validation.class_names,
        seed=seed,
        batch_size=batch_size,
    )


def _check_compatible(train: Pipelined, validation: Source):
    if input_dtype(train) != input_dtype(validation):
        raise DataError(
            f"data.validation: samples are {input_dtype(validation)}, but data.train's are {input_dtype(train)}",
            hint="validation data must look like the training data",
        )
    if train.sample_shape != validation.sample_shape:
        raise DataError(
            f"data.validation: samples have shape {validation.sample_shape}, "
            f"but data.train's have shape {train.sample_shape}",
            hint="validation data must look like the training data",
        )
    if train.class_names and validation.class_names and train.class_names != validation.class_names:
        raise DataError(
            f"data.validation: class folders {validation.class_names} differ from data.train's {train.class_names}",
            hint="use the same class subfolder names in both directories",
        )
