"""What every data source shares: its errors, the in-memory source (:class:`Arrays`), the shape check
against a model's input, and eager tensors that tf.data functions capture by reference."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli import datacheck
from seqcli.errors import SeqError
from seqcli.inputs import check_input
from seqcli.keras_env import import_tensorflow

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251


class DataError(SeqError):
    """A data source that cannot be read: missing file, wrong arrays, bad cells, no images..."""


@dataclass
class Arrays:
    """An in-memory source: x in its stored dtype, y (or None), the scale to apply to x."""

    x: np.ndarray
    y: np.ndarray | None
    scale: float | None = None
    class_names: list[str] | None = None
    _tensors: tuple | None = field(default=None, repr=False)
    weights: np.ndarray | None = None  # a weight per sample (float32), passed to Keras with the labels

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
            self._tensors = eager_constants(self.x, self.y, self.weights)
        return self._tensors

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        """Batches of the samples at ``order(positions)``: ``(x, y)``, ``(x, y, weights)`` for a source with
        sample weights, or ``x`` alone without ``labels``."""
        tf = import_tensorflow()

        x, y, weights = self.tensors()
        scale = self.scale

        def gather(batch_positions):
            indices = order(batch_positions)
            xb = tf.cast(tf.gather(x, indices), tf.float32)
            if scale is not None:
                xb = xb * tf.constant(scale, tf.float32)
            if not labels:
                return xb
            if weights is None:
                return xb, tf.gather(y, indices)
            return xb, tf.gather(y, indices), tf.gather(weights, indices)

        return positions.batch(batch_size).map(as_written(gather), num_parallel_calls=tf.data.AUTOTUNE)


def as_written(function):
    """``function`` for tf.data to trace as written, without autograph's rewriting: seq's pipeline functions
    branch on Python values only (a scale, whether labels are wanted), never on a tensor, and rewriting them
    costs about a second of every run's start."""
    tf = import_tensorflow()

    return tf.autograph.experimental.do_not_convert(function)


def eager_constants(*arrays: np.ndarray | None) -> tuple:
    """Eager tensors even when called while tracing a tf.data function, so big arrays are captured
    by reference instead of copied into the graph as constants."""
    tf = import_tensorflow()

    with tf.init_scope():
        return tuple(None if a is None else tf.constant(a) for a in arrays)


def as_arrays(
    x: np.ndarray,
    y: np.ndarray | None,
    scale,
    path: Path | str,
    where: str,
    weights: np.ndarray | None = None,
    first: int = 0,
) -> Arrays:
    """``x`` and ``y`` checked as training data (numbers, finite, one label a sample) and ready to batch;
    problems name the file's samples from ``first`` (the number of ``x[0]``, for a chunk of a file)."""
    if x.ndim == 0:
        raise DataError(f"{where}: x in {path} is a single value, not an array of samples")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{where}: x in {path} holds {x.dtype} values; inputs must be numbers")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{where}: x in {path} holds complex numbers; inputs must be real")
    if x.dtype in (np.float64, np.bool_):
        x = x.astype(np.float32)
    datacheck.check_finite(x, "x", path, where, first)
    if y is not None:
        if len(y) != len(x):
            raise DataError(
                f"{where}: x and y in {path} have different lengths: x has {len(x)} samples, y has {len(y)}",
                hint="each sample needs exactly one label",
            )
        y = _as_labels(y, path, where)
        datacheck.check_finite(y, "y", path, where, first)
    return Arrays(x, y, None if scale is None else float(scale), weights=_as_weights(weights, len(x), path, where))


def _as_weights(weights: np.ndarray | None, count: int, path, where: str) -> np.ndarray | None:
    """Sample weights: one finite number >= 0 per sample, as float32 (what Keras multiplies the loss by)."""
    if weights is None:
        return None
    if not (np.issubdtype(weights.dtype, np.number) or weights.dtype == np.bool_) or weights.shape != (count,):
        raise DataError(
            f"{where}.weights: sample weights in {path} must be one number per sample: "
            f"{count} samples, weights of shape {weights.shape} and type {weights.dtype}",
            hint="give a 1-D array (or CSV column) of non-negative numbers, one per sample",
        )
    weights = weights.astype(np.float32)
    datacheck.check_finite(weights, "weights", path, where)
    if weights.size and float(weights.min()) < 0:
        raise DataError(
            f"{where}.weights: sample weights in {path} include a negative value",
            hint="sample weights scale each sample's loss: use numbers >= 0",
        )
    return weights


def _as_labels(y: np.ndarray, path, where: str) -> np.ndarray:
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64, copy=False)
    if np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_:
        return y.astype(np.float32, copy=False)
    raise DataError(f"{where}: labels in {path} hold {y.dtype} values; labels must be numbers")


def class_folders(directory: Path, kind: str, where: str, roots: list[Path], *, example: str) -> list[Path]:
    """The class subfolders of a ``kind`` (image, text) folder source in sorted order (hidden ones left out),
    each confined to ``roots`` by the read door: a link that leads elsewhere is refused, naming it."""
    try:
        class_dirs = sorted(entry for entry in directory.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    except OSError as error:
        raise DataError(
            f"{where}: cannot list {kind} directory {directory}: {error.strerror or error}",
            hint="check the directory's permissions",
        ) from error
    if not class_dirs:
        raise DataError(
            f"{where}: {kind} directory {directory} has no class subfolders",
            hint=f"put the {kind}s in one subfolder per class, e.g. {example}",
        )
    for class_dir in class_dirs:
        check_input(class_dir, where, roots=roots, directory_ok=True, origin=f"the {kind} folder")
    return class_dirs


def files_under(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    """Files ending in ``extensions`` under ``folder`` in sorted order (subfolders that are links are not
    walked, as Keras does not follow them; linked files are, and the door judges where they lead)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, name) for name in sorted(files) if name.lower().endswith(extensions)]
    return found


def require_exists(path: Path, given: str, base_dir: Path, where: str, *, hint: str = "check the path") -> None:
    """``path`` (``given`` resolved against ``base_dir``) exists; else the error says what it was relative to."""
    if path.exists():
        return
    relative = not Path(os.path.expanduser(given)).is_absolute()
    folder = "the current folder" if from_command_line(where) else "the spec file's folder"
    note = f" ({given!r} is relative to {folder}, {base_dir})" if relative else ""
    raise DataError(f"{where}: no such file or directory: {path}{note}", hint=hint)


def from_command_line(where: str) -> bool:
    """Whether a source was named by a command-line option (``--data``), not by a spec."""
    return where.startswith("--")
