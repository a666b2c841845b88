"""Data sources -> tf.data pipelines.

A source is what the spec's ``data.train`` / ``data.validation`` / ``data.test`` name. A string is
shorthand, read by its form:

- ``digits.npz``: arrays ``x`` and ``y``; ``inputs.npy``: inputs only; ``table.csv``: a header row,
  then numbers, the last column being the label;
- a directory: images, one subfolder per class (class names are the sorted subfolder names);
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``: a Keras dataset, its train split
  (``mnist:test`` for the test split).

The mapping form is :class:`~seqcli.spec.sections.SourceSection`. Relative paths resolve against
the folder the caller gives: the spec file's for a spec's ``data:``, the current one for ``--data``.

Order is reproducible: the batches of training epoch ``k`` are a pure function of ``(seed, k)``
(a stateless permutation, ``tf.random.experimental.index_shuffle``), independent of TensorFlow's
global seed, of how many epochs ran before, and of the process. :meth:`Datasets.train_for_epoch`
rebuilds any epoch and can skip its first batches, which is what exact mid-epoch resume needs.

In-memory sources (npz, npy, csv, Keras datasets) are held once as tensors, in their stored dtype,
and each batch is gathered and cast to float32 (``scale`` applied) on the fly. Image directories
are streamed from disk: the file list is shuffled, files are decoded in parallel, never all loaded.
Validation batches, which are the same every epoch, are cached in memory after the first pass
(``data.cache``, up to :data:`CACHE_LIMIT_BYTES`), whatever the source.

TensorFlow is imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from seqcli import datacheck, limits
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import resolve_path
from seqcli.keras_env import import_keras, import_tensorflow, keras_home
from seqcli.shapes import shape_text
from seqcli.spec.sections import DataSection, SourceSection

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251

_FASHION_FILES = ", ".join(
    f"fashion-mnist/{name}-ubyte.gz"
    for name in ("train-labels-idx1", "train-images-idx3", "t10k-labels-idx1", "t10k-images-idx3")
)
_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# Keras dataset name -> (what keras.datasets.<name>.load_data() keeps under <keras home>/datasets/, origin)
KERAS_DATASETS: dict[str, tuple[str, str]] = {
    "mnist": ("mnist.npz", _KERAS_URL + "mnist.npz"),
    "fashion_mnist": (_FASHION_FILES, _KERAS_URL),
    "cifar10": (
        "cifar-10-batches-py-target_archive (and its extracted folder)",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "cifar-100-python-target_archive (and its extracted folder)",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}
GRAYSCALE_DATASETS = {"mnist", "fashion_mnist"}

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
DEFAULT_IMAGE_SIZE = (256, 256)
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
# Validation batches (float32 inputs) are cached in memory up to this size; see load_datasets.
CACHE_LIMIT_BYTES = 1 << 30
FORMATS = ("npz", "npy", "csv", "images")


class DataError(SeqError):
    """A data source that cannot be read: missing file, wrong arrays, bad cells, no images..."""


class ShapeMismatchError(DataError):
    """Samples whose shape cannot feed the model's input, found from a file's header before its bulk is read."""

    def __init__(self, message: str, hint: str | None, *, shape: tuple, input_shape: tuple):
        super().__init__(message, hint)
        self.shape, self.input_shape = shape, input_shape


@dataclass
class Datasets:
    """The training and validation pipelines of a spec's ``data:`` section.

    ``train`` is epoch 0 (:meth:`train_for_epoch` with ``epoch=0``): iterating it again repeats
    that order, so a multi-epoch loop should call :meth:`train_for_epoch` (or
    :meth:`train_epochs`) instead. ``validation`` is in a fixed order. Both yield ``(x, y)``
    batches, x float32. ``seed`` is the seed actually used (a fresh random one when the caller
    passed None): save it with a checkpoint to reproduce the split and the epoch orders.
    """

    train: tf.data.Dataset | None = None
    validation: tf.data.Dataset | None = None
    train_count: int | None = None
    validation_count: int | None = None
    steps_per_epoch: int | None = None
    input_shape: tuple | None = None
    class_names: list[str] | None = None
    seed: int | None = None
    batch_size: int | None = None
    validation_steps: int | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # in-memory sources' labels, by spec path
    _epoch_builder: Callable[[Any, int], tf.data.Dataset] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.train is None and self._epoch_builder is not None:
            self.train = self.train_for_epoch(0)

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

    def train_epochs(self, start: int, stop: int, skip: int = 0) -> tf.data.Dataset:
        """Epochs ``start`` .. ``stop - 1`` back to back in one dataset, the first missing its
        first ``skip`` batches; each epoch's batches are those of :meth:`train_for_epoch`.
        For ``model.fit(..., steps_per_epoch=steps_per_epoch)``, which keeps one iterator."""
        tf = import_tensorflow()

        if self._epoch_builder is None or stop <= start:
            return self.train_for_epoch(start, skip)
        epochs = tf.data.Dataset.range(start, stop).flat_map(lambda epoch: self._epoch_builder(epoch, 0))
        return epochs.skip(skip).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- sources in memory


@dataclass
class _Arrays:
    """An in-memory source: x in its stored dtype, y (or None), the scale to apply to x."""

    x: np.ndarray
    y: np.ndarray | None
    scale: float | None = None
    class_names: list[str] | None = None
    _tensors: tuple | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple:
        return tuple(int(d) for d in self.x.shape[1:])

    def batch_bytes(self, count: int) -> int:
        """Bytes of ``count`` samples' inputs as batches hold them (float32)."""
        return count * math.prod(self.sample_shape) * 4

    def float_x(self) -> np.ndarray:
        x = self.x.astype(np.float32, copy=False)
        return x * np.float32(self.scale) if self.scale is not None else x

    def tensors(self) -> tuple:
        """x and y as eager tensors, made once and shared by every epoch's pipeline."""
        if self._tensors is None:
            self._tensors = _eager_constants(self.x, self.y)
        return self._tensors

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        """Batches of the samples at ``order(positions)``."""
        tf = import_tensorflow()

        x, y = self.tensors()
        scale = self.scale

        def gather(batch_positions):
            indices = order(batch_positions)
            xb = tf.cast(tf.gather(x, indices), tf.float32)
            if scale is not None:
                xb = xb * tf.constant(scale, tf.float32)
            return (xb, tf.gather(y, indices)) if labels else xb

        return positions.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)


@dataclass
class _Images:
    """An image directory: file paths, integer labels, and how to decode them."""

    paths: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    scale: float | None = None

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def sample_shape(self) -> tuple:
        return (*self.image_size, self.channels)

    def batch_bytes(self, count: int) -> int:
        """Bytes of ``count`` decoded images as batches hold them (float32)."""
        return count * math.prod(self.sample_shape) * 4

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        """Batches of the images at ``order(positions)``, read and decoded in parallel."""
        tf = import_tensorflow()

        paths, label_values = _eager_constants(self.paths, self.labels)
        height, width = self.image_size
        channels, scale = self.channels, self.scale

        def load(position):
            index = order(position)
            data = tf.io.read_file(tf.gather(paths, index))
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            image = tf.image.resize(image, (height, width))
            image.set_shape((height, width, channels))
            if scale is not None:
                image = image * tf.constant(scale, tf.float32)
            return (image, tf.gather(label_values, index)) if labels else image

        return positions.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)


_Source = _Arrays | _Images


def _eager_constants(*arrays: np.ndarray | None) -> tuple:
    """Eager tensors even when called while tracing a tf.data function, so big arrays are captured
    by reference instead of copied into the graph as constants."""
    tf = import_tensorflow()

    with tf.init_scope():
        return tuple(None if a is None else tf.constant(a) for a in arrays)


# ----------------------------------------------------------------------------- public API


def load_datasets(data: dict, base_dir: Path, *, seed: int | None, batch_size: int | None = None,
                  input_shape: tuple | None = None) -> Datasets:
    """Training and validation pipelines for a spec's ``data:`` section (a plain dict).

    ``validation`` may be a fraction of the training data, split off by ``seed`` before any
    shuffling (no sample is in both), or a source of its own. With ``cache`` (the default) its
    batches are kept in memory after the first pass when they fit in :data:`CACHE_LIMIT_BYTES`.
    ``batch_size`` overrides the section's. ``input_shape``, the model's (None for any), is compared with each
    file's sample shape as soon as its header is read. Raises :class:`DataError` for anything wrong with the data.
    """
    section = _validate(DataSection, data or {}, "data")
    batch_size = batch_size or section.batch_size
    seed = seed if seed is not None else secrets.randbelow(2**31)
    base_dir = Path(base_dir)
    if section.train is None:
        if isinstance(section.validation, float):
            raise DataError("data.validation is a fraction of data.train, but there is no data.train")
        return _validation_only(section, base_dir, seed, batch_size, input_shape)

    train = _open(section.train, base_dir, "data.train", labels=True, input_shape=input_shape)
    train_indices = np.arange(train.count, dtype=np.int64)
    validation, validation_indices = None, None
    if isinstance(section.validation, float):
        train_indices, validation_indices = split_indices(train.count, section.validation, seed)
        validation = train
    elif section.validation is not None:
        validation = _open(section.validation, base_dir, "data.validation", labels=True, input_shape=input_shape)
        _check_compatible(train, validation)
        validation_indices = np.arange(validation.count, dtype=np.int64)

    def epoch_builder(epoch, skip: int) -> tf.data.Dataset:
        order_seed = (seed, epoch) if section.shuffle else None
        return _batches(train, train_indices, batch_size, labels=True, order_seed=order_seed, skip=skip)

    return Datasets(
        validation=None
        if validation is None
        else _validation_batches(validation, validation_indices, batch_size, section.cache),
        train_count=len(train_indices),
        validation_count=None if validation is None else len(validation_indices),
        steps_per_epoch=math.ceil(len(train_indices) / batch_size),
        validation_steps=None if validation is None else math.ceil(len(validation_indices) / batch_size),
        input_shape=train.sample_shape,
        class_names=train.class_names,
        seed=seed,
        batch_size=batch_size,
        labels={where: source.y for where, source in (("data.train", train), ("data.validation", validation))
                if getattr(source, "y", None) is not None},
        _epoch_builder=epoch_builder,
    )


def load_source(
    source: str | dict | SourceSection,
    base_dir: Path,
    *,
    batch_size: int,
    labels: bool = True,
    where: str = "data source",
    input_shape: tuple | None = None,
) -> tuple[tf.data.Dataset, int | None]:
    """One source as ``(dataset, sample count)``: batched, in its stored order, prefetched.

    Batches are ``(x, y)``, or ``x`` alone with ``labels=False``. For evaluate, predict, extract.
    ``where`` names the source in error messages (e.g. ``"data.test"``); ``input_shape``, the model's, is
    compared with the samples' as soon as the file's header is read.
    """
    opened = _open(source, Path(base_dir), where, labels=labels, input_shape=input_shape)
    dataset = _batches(opened, np.arange(opened.count, dtype=np.int64), batch_size, labels=labels)
    return _prefetch(dataset), opened.count


def load_arrays(source: str | dict | SourceSection, base_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A small in-memory source as numpy arrays: x float32 (``scale`` applied), y or None.

    Image directories are streamed, never loaded whole: they raise :class:`DataError`.
    """
    opened = _open(source, Path(base_dir), "data source", labels=False, keep_labels=True)
    if isinstance(opened, _Images):
        path = resolve_path(_as_section(source, "data source").path, base_dir)
        raise DataError(
            f"{path} is an image directory; it is streamed from disk, not loaded into memory as arrays",
            hint="use an .npz, .npy or .csv source here",
        )
    return opened.float_x(), opened.y


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
    permutation = np.random.default_rng([_unsigned(seed), 0x5B117]).permutation(count)
    return np.sort(permutation[validation_count:]), np.sort(permutation[:validation_count])


# ----------------------------------------------------------------------------- pipelines


def _batches(
    source: _Source,
    indices: np.ndarray,
    batch_size: int,
    *,
    labels: bool,
    order_seed: tuple[int, Any] | None = None,
    skip: int = 0,
) -> tf.data.Dataset:
    """Batches of ``source[indices]``, permuted by ``order_seed = (seed, epoch)`` when given,
    without their first ``skip`` batches (skipped before anything is read)."""
    tf = import_tensorflow()

    count = len(indices)
    positions = tf.data.Dataset.range(min(skip * batch_size, count), count)
    (index_table,) = _eager_constants(None if _is_identity(indices, source.count) else indices)

    def order(position):
        if order_seed is not None:
            seed, epoch = order_seed
            key = tf.stack([tf.constant(_unsigned(seed) % 2**63, tf.int64), tf.cast(epoch, tf.int64)])
            position = tf.random.experimental.index_shuffle(position, key, tf.constant(count - 1, tf.int64))
        return position if index_table is None else tf.gather(index_table, position)

    return source.pipeline(positions, order, batch_size, labels)


def _prefetch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    tf = import_tensorflow()

    return dataset.prefetch(tf.data.AUTOTUNE)


def _is_identity(indices: np.ndarray, count: int) -> bool:
    return len(indices) == count and bool(np.all(indices == np.arange(count)))


def _unsigned(seed: int) -> int:
    return int(seed) % 2**64


def _validation_batches(source: _Source, indices: np.ndarray, batch_size: int, cache: bool) -> tf.data.Dataset:
    """Validation batches in a fixed order; with ``cache``, kept in memory after the first pass when they
    fit in :data:`CACHE_LIMIT_BYTES` (re-gathering them costs about 10% of a small model's epoch)."""
    dataset = _batches(source, indices, batch_size, labels=True)
    if cache and source.batch_bytes(len(indices)) <= CACHE_LIMIT_BYTES:
        dataset = dataset.cache()
    return _prefetch(dataset)


def _validation_only(section: DataSection, base_dir: Path, seed: int, batch_size: int,
                     input_shape: tuple | None) -> Datasets:
    if section.validation is None:
        return Datasets(seed=seed, batch_size=batch_size)
    validation = _open(section.validation, base_dir, "data.validation", labels=True, input_shape=input_shape)
    return Datasets(
        validation=_validation_batches(
            validation, np.arange(validation.count, dtype=np.int64), batch_size, section.cache
        ),
        validation_count=validation.count,
        validation_steps=math.ceil(validation.count / batch_size),
        input_shape=validation.sample_shape,
        class_names=validation.class_names,
        seed=seed,
        batch_size=batch_size,
    )


def _check_compatible(train: _Source, validation: _Source):
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


# ----------------------------------------------------------------------------- opening sources


def _validate(model: type[pydantic.BaseModel], value: Any, where: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise DataError(f"invalid data settings: {problems}") from None


def _as_section(source: str | dict | SourceSection, where: str) -> SourceSection:
    if isinstance(source, SourceSection):
        return source
    if isinstance(source, str):
        name, _, split = source.partition(":")
        if name in KERAS_DATASETS and split in ("", "train", "test"):
            return SourceSection(dataset=name, split=split or "train")
        return SourceSection(path=source)
    return _validate(SourceSection, source, where)


def _open(
    source: str | dict | SourceSection,
    base_dir: Path,
    where: str,
    *,
    labels: bool,
    keep_labels: bool = False,
    input_shape: tuple | None = None,
) -> _Source:
    """Open a source. ``labels``: labels are required; ``keep_labels``: read them when present;
    ``input_shape``: the model's, checked against the samples' before the bulk of a file is read."""
    try:
        return _open_checked(source, base_dir, where, labels=labels, keep_labels=keep_labels,
                             input_shape=input_shape)
    except limits.LimitError as error:
        raise DataError(error.message, error.hint) from None


def _open_checked(source, base_dir: Path, where: str, *, labels: bool, keep_labels: bool,
                  input_shape: tuple | None) -> _Source:
    section = _as_section(source, where)
    want_labels = labels or keep_labels
    if section.dataset is not None and section.path is not None:
        raise DataError(
            f"{where}: give either `path` or `dataset`, not both. "
            f"Received: path={section.path!r}, dataset={section.dataset!r}"
        )
    if section.dataset is not None:
        opened = _open_keras_dataset(section, where, want_labels)
    elif section.path is None:
        raise DataError(f"{where}: no `path` or `dataset` given", hint="e.g. `train: data/digits.npz`")
    else:
        opened = _open_path(section, base_dir, where, labels=labels, want_labels=want_labels,
                            input_shape=input_shape)
    check_sample_shape(opened.sample_shape, input_shape, section.path or section.dataset, where)
    if labels and isinstance(opened, _Arrays) and opened.y is None:
        raise DataError(
            f"{where}: {section.path} holds inputs only, but labels are needed here",
            hint="use an .npz with arrays x and y, or give `y: labels.npy` next to a .npy `path`",
        )
    if opened.count == 0:
        raise DataError(f"{where}: {section.path or section.dataset} holds no samples")
    return opened


def check_sample_shape(shape: tuple, input_shape: tuple | None, name, where: str) -> None:
    """DataError when samples of ``shape`` cannot feed a model taking ``input_shape`` (None: any)."""
    if input_shape is None:
        return
    shape, input_shape = tuple(shape), tuple(input_shape)
    if len(shape) == len(input_shape) and all(e is None or e == s for e, s in zip(input_shape, shape)):
        return
    raise ShapeMismatchError(f"{where}: samples in {name} have shape {shape_text(shape)}, but the model takes "
                             f"{shape_text(input_shape)}",
                             hint=f"give data shaped like the model's input, or a model for inputs of shape "
                                  f"{list(shape)}",
                             shape=shape, input_shape=input_shape)


def _open_path(section: SourceSection, base_dir: Path, where: str, *, labels: bool, want_labels: bool,
               input_shape: tuple | None = None):
    path = resolve_path(section.path, base_dir)
    _require_exists(path, section.path, base_dir, where)
    limits.check_data_file(path, where)
    fmt = section.format or _infer_format(path, where)
    if fmt == "images":
        if not path.is_dir():
            raise DataError(f"{where}: {path} is a file, but format 'images' needs a directory")
        return _open_images(path, section, where)
    if path.is_dir():
        raise DataError(f"{where}: {path} is a directory, but format {fmt!r} needs a file")
    if fmt == "npz":
        x, y = _read_npz(path, section, where, labels=labels, want_labels=want_labels, input_shape=input_shape)
    elif fmt == "npy":
        x = _read_npy(path, where, input_shape=input_shape)
        y = None
        if want_labels and _names_npy(section.y):
            y_path = resolve_path(section.y, base_dir)
            _require_exists(y_path, section.y, base_dir, f"{where}.y")
            limits.check_data_file(y_path, f"{where}.y")
            y = _read_npy(y_path, where)
    else:
        x, y = _read_csv(path, section, where, want_labels=want_labels, input_shape=input_shape)
    return _arrays(x, y, section.scale, path, where)


def _names_npy(name: str | None) -> bool:
    return name is not None and name.lower().endswith(".npy")


def _require_exists(path: Path, given: str, base_dir: Path, where: str):
    if path.exists():
        return
    relative = not Path(os.path.expanduser(given)).is_absolute()
    folder = "the current folder" if _from_command_line(where) else "the spec file's folder"
    note = f" ({given!r} is relative to {folder}, {base_dir})" if relative else ""
    hint = did_you_mean(given, KERAS_DATASETS) or "check the path"
    raise DataError(f"{where}: no such file or directory: {path}{note}", hint=hint)


def _from_command_line(where: str) -> bool:
    """Whether a source was named by a command-line option (``--data``), not by a spec."""
    return where.startswith("--")


def _infer_format(path: Path, where: str) -> str:
    if path.is_dir():
        return "images"
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise DataError(
            f"{where}: cannot tell the format of {path} from its extension {path.suffix!r}",
            hint=f"use a .npz, .npy or .csv file or an image directory, or set `format:` ({', '.join(FORMATS)})",
        )
    return fmt


def _arrays(x: np.ndarray, y: np.ndarray | None, scale, path: Path | str, where: str) -> _Arrays:
    if x.ndim == 0:
        raise DataError(f"{where}: x in {path} is a single value, not an array of samples")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{where}: x in {path} holds {x.dtype} values; inputs must be numbers")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: x in {path} holds complex numbers; inputs must be real")
    if x.dtype in (np.float64, np.bool_):
        x = x.astype(np.float32)
    datacheck.check_finite(x, "x", path, where)
    if y is not None:
        if len(y) != len(x):
            raise DataError(
                f"{where}: x and y in {path} have different lengths: x has {len(x)} samples, y has {len(y)}",
                hint="each sample needs exactly one label",
            )
        y = _as_labels(y, path, where)
        datacheck.check_finite(y, "y", path, where)
    return _Arrays(x, y, None if scale is None else float(scale))


def _as_labels(y: np.ndarray, path, where: str) -> np.ndarray:
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64, copy=False)
    if np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_:
        return y.astype(np.float32, copy=False)
    raise DataError(f"{where}: labels in {path} hold {y.dtype} values; labels must be numbers")


def _read_npz(path: Path, section: SourceSection, where: str, *, labels: bool, want_labels: bool,
              input_shape: tuple | None = None):
    """x and y of an .npz, each array's header checked (size, and x's sample shape) before it is read."""
    with limits.open_archive(path, where) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        names = list(members)
        x_shape = _npz_header(archive, section.x, members, path, where, "x")
        if len(x_shape) > 0:
            check_sample_shape(x_shape[1:], input_shape, path, where)
        y = None
        if want_labels and section.y is not None:
            if section.y in names:
                _npz_header(archive, section.y, members, path, where, "y")
                y = _npz_array(archive, members[section.y], path, where)
            elif labels:
                _missing_array(section.y, path, names, where, "y", taken=(section.x,))
        x = _npz_array(archive, members[section.x], path, where)
    return x, y


def _npz_header(archive, name: str, members: dict[str, str], path: Path, where: str, role: str) -> tuple:
    if name not in members:
        _missing_array(name, path, list(members), where, role)
    member = members[name]
    with archive.open(member) as handle:
        shape, _ = limits.check_npy_header(handle, archive.getinfo(member).file_size, where,
                                           f"array {name!r} in {path}")
    return tuple(shape)


def _npz_array(archive, member: str, path: Path, where: str) -> np.ndarray:
    try:
        with archive.open(member) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # BadZipFile: a bad CRC
        name = member.removesuffix(".npy")
        raise DataError(f"{where}: cannot read array {name!r} in {path}: {error}") from None


def _missing_array(name: str, path: Path, names: list[str], where: str, role: str, taken: tuple = ()):
    listed = ", ".join(repr(n) for n in names) or "none"
    hint = did_you_mean(name, names)
    others = [n for n in names if n not in taken]
    if hint is None and others:
        hint = f"name the array with `{role}:` in a mapping source, e.g. `{role}: {others[0]}`"
    raise DataError(f"{where}: {path} has no array {name!r} (its arrays: {listed})", hint=hint)


def _read_npy(path: Path, where: str, *, input_shape: tuple | None = None) -> np.ndarray:
    """An .npy array, its header checked (size against the file and the budget, sample shape) first."""
    try:
        with open(path, "rb") as handle:
            shape, _ = limits.check_npy_header(handle, os.fstat(handle.fileno()).st_size, where, str(path))
            if len(shape) > 0:
                check_sample_shape(tuple(shape[1:]), input_shape, path, where)
        return np.load(path, allow_pickle=False)
    except (SeqError, DataError):
        raise
    except Exception as error:
        raise DataError(f"{where}: cannot read {path} as an .npy array: {error}") from None


CSV_CHUNK_ROWS = 4096  # rows converted to numbers at a time while a CSV streams in


def _read_csv(path: Path, section: SourceSection, where: str, *, want_labels: bool, input_shape: tuple | None = None):
    """A CSV streamed row by row into float64 chunks: the header (and the model's input shape, when given)
    is checked before the body is read, and the numbers read so far never exceed the memory budget."""
    with _csv_reader(path, where) as rows:
        header = next(rows, None)
        if header is None:
            raise DataError(f"{where}: {path} is empty; a CSV source needs a header row, then one row per sample")
        header = [name.strip() for name in header]
        label = section.label or header[-1]
        if want_labels:
            _check_columns([label], header, path, where, "label")
        features = section.features or [name for name in header if name != label]
        _check_columns(features, header, path, where, "features")
        if section.label is None and section.features is None and len(header) < 2:
            raise DataError(f"{where}: {path} has one column; the last column is the label, so no features are left")
        check_sample_shape((len(features),), input_shape, path, where)
        values = _csv_numbers(rows, header, path, where)
    x = values[:, [header.index(name) for name in features]].astype(np.float32)
    y = None
    if want_labels and label in header:
        y = values[:, header.index(label)]
        y = y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y.astype(np.float32)
    return x, y


@contextlib.contextmanager
def _csv_reader(path: Path, where: str):
    """A csv.reader over the non-empty rows of a UTF-8 file (a leading byte-order mark dropped), read line
    by line; a line that is not UTF-8 is a DataError naming its line and column."""
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise DataError(
            f"{where}: cannot read {path}: {error.strerror or error}", hint="check the file's permissions"
        ) from None

    def lines():
        for number, data in enumerate(handle, start=1):
            if number == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{where}: {path}:{number}: not UTF-8 text: byte 0x{data[error.start]:02x} at column "
                    f"{error.start + 1}",
                    hint="save the CSV as UTF-8 (a spreadsheet's 'CSV UTF-8'), or convert it, "
                         "e.g. iconv -f latin1 -t utf-8",
                ) from None

    reader = csv.reader(lines())

    def rows():
        try:
            for row in reader:
                if row:
                    yield row
        except csv.Error as error:
            raise DataError(f"{where}: {path}:{reader.line_num}: cannot read as CSV: {error}") from None

    with handle:
        yield _Rows(rows(), reader)


@dataclass
class _Rows:
    """Rows of a CSV and the reader's line number (of the last line read)."""

    rows: Any
    reader: Any

    def __iter__(self):
        return self.rows

    def __next__(self):
        return next(self.rows)

    @property
    def line(self) -> int:
        return self.reader.line_num


def _check_columns(names: list[str], header: list[str], path: Path, where: str, key: str):
    for name in names:
        if name not in header:
            hint = did_you_mean(name, header) or f"its columns: {', '.join(header)}"
            raise DataError(f"{where}.{key}: {path} has no column {name!r}", hint=hint)


def _csv_numbers(rows: _Rows, header: list[str], path: Path, where: str) -> np.ndarray:
    """The body's cells as float64, converted a chunk of rows at a time, within the memory budget."""
    budget = limits.max_memory()
    width = len(header)
    chunks, chunk, lines, total = [], [], [], 0
    for row in rows:
        if len(row) != width:
            raise DataError(f"{where}: {path}:{rows.line}: row has {len(row)} cells, the header has {width}")
        chunk.append(row)
        lines.append(rows.line)
        if len(chunk) == CSV_CHUNK_ROWS:
            chunks.append(_csv_chunk(chunk, lines, header, path, where))
            total += chunks[-1].nbytes
            chunk, lines = [], []
            if total > budget:
                raise DataError(f"{where}: {path} holds more than {limits.human_size(budget)} of numbers "
                                f"(stopped reading at line {rows.line}), over the memory limit",
                                hint=limits.over_budget_hint())
    if chunk:
        chunks.append(_csv_chunk(chunk, lines, header, path, where))
    return np.concatenate(chunks) if chunks else np.zeros((0, width))


def _csv_chunk(chunk: list[list[str]], lines: list[int], header: list[str], path: Path, where: str) -> np.ndarray:
    try:
        return np.array(chunk, dtype=np.float64).reshape(len(chunk), len(header))
    except ValueError:
        pass
    for number, row in zip(lines, chunk):
        for column, cell in enumerate(row):
            try:
                float(cell)
            except ValueError:
                raise DataError(
                    f"{where}: {path}:{number}: column {column + 1} ({header[column]!r}) is not a number. "
                    f"Received: {cell!r}",
                    hint="every cell after the header row must be a number",
                ) from None
    raise DataError(f"{where}: cannot read {path} as numbers")  # pragma: no cover


def _open_images(directory: Path, section: SourceSection, where: str) -> _Images:
    try:
        class_dirs = sorted(entry for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    except OSError as error:
        raise DataError(
            f"{where}: cannot list image directory {directory}: {error.strerror or error}",
            hint="check the directory's permissions",
        ) from None
    if not class_dirs:
        raise DataError(
            f"{where}: image directory {directory} has no class subfolders",
            hint="put the images in one subfolder per class, e.g. cats/001.png, dogs/002.png",
        )
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for root, dirs, files in os.walk(class_dir):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, name))
                    labels.append(label)
    if not paths:
        raise DataError(
            f"{where}: image directory {directory} has no images in its subfolders "
            f"({', '.join(d.name for d in class_dirs)})",
            hint=f"images need one of the extensions {', '.join(IMAGE_EXTENSIONS)}",
        )
    return _Images(
        paths=np.array(paths),
        labels=np.array(labels, dtype=np.int64),
        class_names=[d.name for d in class_dirs],
        image_size=tuple(section.image_size or DEFAULT_IMAGE_SIZE),
        channels=CHANNELS[section.color_mode],
        scale=None if section.scale is None else float(section.scale),
    )


# ----------------------------------------------------------------------------- Keras datasets


def _open_keras_dataset(section: SourceSection, where: str, want_labels: bool) -> _Arrays:
    name = section.dataset
    (x_train, y_train), (x_test, y_test) = _keras_load_data(name, where)
    x, y = (x_train, y_train) if section.split == "train" else (x_test, y_test)
    if name in GRAYSCALE_DATASETS:
        x = x[..., np.newaxis]
    y = np.asarray(y).reshape(len(y)) if want_labels else None
    return _arrays(x, y, section.scale, f"Keras dataset {name!r}", where)


def _keras_load_data(name: str, where: str):
    keras = import_keras()

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as error:
        files, origin = KERAS_DATASETS[name]
        cache = keras_home() / "datasets"
        raise DataError(
            f"{where}: cannot load Keras dataset {name!r}: keras.datasets.{name}.load_data() looked for "
            f"{files} in {cache} and tried to download it from {origin}, which failed: {error}",
            hint=(
                f'on a machine with internet access run `python -c "import keras; '
                f'keras.datasets.{name}.load_data()"`, then copy its ~/.keras/datasets/ files into {cache} '
                "(or set KERAS_HOME to a folder whose datasets/ subfolder holds them)"
            ),
        ) from None
