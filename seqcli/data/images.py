"""Image folders: one subfolder per class (class names are the sorted subfolder names), files decoded
and resized by TensorFlow.

Training decodes each image once (:func:`decode_once`), not once an epoch: the decoded set is kept in
memory when it fits :data:`MEMORY_SHARE` of the memory budget, else in a file under the system's
temporary folder (a memory map whose file has no name: the system frees it when the source is dropped or
the process ends, however it ends), read by index with the
same per-(seed, epoch) order; only when neither fits are the files decoded again every epoch.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli.budget import human_size, max_memory, over_budget_hint
from seqcli.data.arrays import Arrays, DataError, as_written, class_folders, eager_constants, files_under
from seqcli.data.image_headers import HeaderError, image_dimensions
from seqcli.data.scratch import has_room
from seqcli.errors import clean_tensorflow_message
from seqcli.inputs import open_input
from seqcli.keras_env import import_tensorflow

if TYPE_CHECKING:  # annotations only: TensorFlow comes from seqcli.keras_env, the section model's module reads
    # the format table, which reads this
    import tensorflow as tf  # noqa: TID251

    from seqcli.data.formats import Opening
    from seqcli.specfile.sections import SourceSection

DEFAULT_IMAGE_SIZE = (256, 256)
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
MEMORY_SHARE = 0.5  # of the memory budget (seqcli.budget) that decoded images may take in memory
DECODE_BATCH = 64  # images decoded per step while decode_once fills its array
DECODE_SHARE = 0.5  # of the memory budget that images being decoded at once may take
DECODE_BYTES_PER_VALUE = 5  # a decoded pixel value: one byte, then four as float32 while it is resized
DECODE_HINT = "remove or replace the file; images must be BMP, GIF, JPEG or PNG"
UNREADABLE = "check the file's permissions"


@dataclass
class Images:
    """An image directory: file paths, integer labels, and how to decode them."""

    paths: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    scale: float | None = None
    parallel: int = 1  # images decoded at once (decode_parallelism)
    parts: np.ndarray | None = None  # image shards: the folder (its number, in order) each image comes from

    @property
    def count(self) -> int:
        return len(self.paths)

    @property
    def part_count(self) -> int:
        """How many folders the images come from (1 for one image folder)."""
        return 1 if self.parts is None else int(self.parts.max()) + 1

    def of_parts(self, chosen: range) -> Images:
        """The images of the folders numbered ``chosen`` alone (of image shards), in the same order, with the same
        classes."""
        assert self.parts is not None, "only image shards (folders numbered by part) are taken by folder"
        keep = np.isin(self.parts, list(chosen))
        return replace(self, paths=self.paths[keep], labels=self.labels[keep], parts=None)

    @property
    def sample_shape(self) -> tuple:
        return (*self.image_size, self.channels)

    def batch_bytes(self, count: int) -> int:
        """Bytes of ``count`` decoded images as batches hold them (float32)."""
        return count * math.prod(self.sample_shape) * 4

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        """Batches of the images at ``order(positions)``, read and decoded in parallel."""
        tf = import_tensorflow()

        paths, label_values = eager_constants(self.paths, self.labels)
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

        return positions.map(as_written(load), num_parallel_calls=self.parallel).batch(batch_size)

    def decoder(self) -> tf.data.Dataset:
        """Every image in file order, decoded and resized as :meth:`pipeline` does (scale not applied),
        in batches of :data:`DECODE_BATCH`."""
        tf = import_tensorflow()

        (paths,) = eager_constants(self.paths)
        height, width = self.image_size
        channels = self.channels

        def load(path):
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            image = tf.image.resize(image, (height, width))
            image.set_shape((height, width, channels))
            return image

        dataset = tf.data.Dataset.from_tensor_slices(paths).map(as_written(load), num_parallel_calls=self.parallel)
        return dataset.batch(DECODE_BATCH).prefetch(tf.data.AUTOTUNE)


class MappedArrays(Arrays):
    """Decoded images in a file on disk (an .npy memory map), gathered by index a batch at a time."""

    def tensors(self) -> tuple:
        (y,) = eager_constants(self.y)
        return None, y

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        tf = import_tensorflow()

        _, y = self.tensors()
        mapped, scale, shape = self.x, self.scale, self.sample_shape

        def rows(indices):
            return np.asarray(mapped[np.asarray(indices)], dtype=np.float32)

        def gather(batch_positions):
            indices = order(batch_positions)
            xb = tf.numpy_function(rows, [indices], tf.float32, stateful=False)
            xb.set_shape((None, *shape))
            if scale is not None:
                xb = xb * tf.constant(scale, tf.float32)
            return (xb, tf.gather(y, indices)) if labels else xb

        return positions.batch(batch_size).map(as_written(gather), num_parallel_calls=tf.data.AUTOTUNE)


class DecodedOnFirstUse:
    """An image folder whose images :func:`decode_once` decodes when its first pipeline is built, that is
    after the checks that need only its shape and count (training's memory estimate among them)."""

    def __init__(self, images: Images, where: str):
        self.images, self.where = images, where
        self.count, self.sample_shape, self.class_names = images.count, images.sample_shape, images.class_names
        self.batch_bytes = images.batch_bytes
        self._decoded: Arrays | Images | None = None
        self._lock = threading.Lock()

    def decoded(self) -> Arrays | Images:
        with self._lock:
            if self._decoded is None:
                self._decoded = decode_once(self.images, self.where)
            return self._decoded

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        return self.decoded().pipeline(positions, order, batch_size, labels)


def decode_once(images: Images, where: str, *, budget: int | None = None) -> Arrays | Images:
    """The images decoded once: in memory when they fit ``budget`` (default :data:`MEMORY_SHARE` of the
    memory budget), else in a temporary file when the disk has room, else ``images`` as they are
    (decoded every pass). Batches hold the same values either way."""
    size = images.batch_bytes(images.count)
    budget = int(max_memory() * MEMORY_SHARE) if budget is None else budget
    if size <= budget:
        target = np.empty((images.count, *images.sample_shape), np.float32)
        _fill(target, images, where)
        return Arrays(target, images.labels, images.scale, images.class_names)
    # The file loses its name as soon as it is mapped: the mapping keeps its blocks while it lives, and
    # nothing outlives the process (kill -9 included), so nothing needs cleaning.
    folder = tempfile.mkdtemp(prefix="seq-images-")
    try:
        if not has_room(folder, size):
            return images
        path = os.path.join(folder, "decoded.npy")
        target = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(images.count, *images.sample_shape)
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _fill(target, images, where)
    return MappedArrays(target, images.labels, images.scale, images.class_names)


def _fill(target: np.ndarray, images: Images, where: str) -> None:
    tf = import_tensorflow()

    offset = 0
    try:
        for batch in images.decoder():
            target[offset : offset + len(batch)] = batch.numpy()
            offset += len(batch)
    except tf.errors.OpError as error:
        first = offset + _first_undecodable(images.paths[offset : offset + DECODE_BATCH], images.channels)
        name = images.paths[min(first, images.count - 1)]
        raise DataError(
            f"{where}: cannot decode image {name}: {clean_tensorflow_message(error.message)}",
            hint=DECODE_HINT,
        ) from error


def _first_undecodable(paths: np.ndarray, channels: int) -> int:
    tf = import_tensorflow()

    for index, path in enumerate(paths):
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        except tf.errors.OpError:
            return index
    return 0


def open_image_folder(opening: Opening) -> Images:
    """An image folder source (or several, given as shards): its images are the files its format's suffixes
    name."""
    extensions = opening.fmt.member_suffixes
    return open_images(opening.folders, opening.section, opening.where, extensions, roots=opening.roots)


def open_images(
    directories: tuple[Path, ...] | list[Path],
    section: SourceSection,
    where: str,
    extensions: tuple[str, ...],
    *,
    roots=None,
) -> Images:
    """The image folders ``directories`` read as one source: its classes are the union of their class
    subfolders' names, sorted (a class may be missing from some folders), and its images come class by class,
    each class's folder by folder in the order given, each folder's in sorted order. Every class subfolder and
    every image passes the door (:func:`seqcli.inputs.open_input`), confined, after its links are followed, to
    the folders themselves and ``roots`` (the spec's folder and the allowed ones), and every image's size, read
    from its header, is priced against the memory budget before anything is decoded."""
    member_roots = [*(directory.resolve() for directory in directories), *(roots or [])]
    by_class: dict[str, list[tuple[int, Path]]] = {}
    for part, directory in enumerate(directories):
        for class_dir in class_folders(directory, "image", where, member_roots, example="cats/001.png, dogs/002.png"):
            by_class.setdefault(class_dir.name, []).append((part, class_dir))
    class_names = sorted(by_class)
    channels = CHANNELS[section.color_mode]
    paths, labels, parts, largest = [], [], [], 0
    for label, name in enumerate(class_names):
        for part, class_dir in by_class[name]:
            for path in files_under(class_dir, extensions):
                largest = max(largest, _decoded_bytes(path, where, member_roots, channels))
                paths.append(path)
                labels.append(label)
                parts.append(part)
    if not paths:
        named = f"directory {directories[0]} has" if len(directories) == 1 else f"directories {directories[0]}... have"
        raise DataError(
            f"{where}: image {named} no images in {'its' if len(directories) == 1 else 'their'} subfolders "
            f"({', '.join(class_names)})",
            hint=f"images need one of the extensions {', '.join(extensions)}",
        )
    height, width = section.image_size or DEFAULT_IMAGE_SIZE  # the spec's schema takes two sizes
    return Images(
        paths=np.array(paths),
        labels=np.array(labels, dtype=np.int64),
        class_names=class_names,
        image_size=(height, width),
        channels=channels,
        scale=None if section.scale is None else float(section.scale),
        parallel=decode_parallelism(largest),
        parts=np.array(parts, dtype=np.int64) if len(directories) > 1 else None,
    )


def _decoded_bytes(path: str, where: str, roots: list[Path], channels: int) -> int:
    """What decoding the image at ``path`` takes at its peak (its pixels as bytes, then as float32 for the
    resize), from its header read through the door; a DataError when that alone is over the share of the
    budget decoding may take, or when the file is not an image seq can price."""
    try:
        with open_input(path, where, roots=roots, origin="the image folder") as handle:
            found = image_dimensions(handle)
    except HeaderError as error:
        raise DataError(f"{where}: cannot decode image {path}: {error}", hint=DECODE_HINT) from error
    except OSError as error:
        raise DataError(f"{where}: cannot read image {path}: {error.strerror or error}", hint=UNREADABLE) from error
    if found is None:
        raise DataError(
            f"{where}: cannot decode image {path}: it is not a BMP, GIF, JPEG or PNG file", hint=DECODE_HINT
        )
    fmt, width, height = found
    cost = width * height * channels * DECODE_BYTES_PER_VALUE
    if cost > max_memory() * DECODE_SHARE:
        raise DataError(
            f"{where}: image {path} is {width}x{height} pixels: decoding it takes about {human_size(cost)}, "
            f"over the {DECODE_SHARE:.0%} of the memory limit that decoding may use",
            hint=f"shrink the image before training; {over_budget_hint()}",
        )
    return cost


def decode_parallelism(largest: int) -> int:
    """How many images may be decoded at once: as many as the cores, but no more than fit the share of the
    budget decoding may use when each is as large as the largest."""
    fit = int(max_memory() * DECODE_SHARE) // max(largest, 1)
    return max(1, min(os.cpu_count() or 1, fit))
