"""Image folders: one subfolder per class (class names are the sorted subfolder names), files decoded
and resized by TensorFlow."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli.data.arrays import DataError, eager_constants
from seqcli.keras_env import import_tensorflow
from seqcli.spec.sections import SourceSection

if TYPE_CHECKING:  # annotations only: at run time TensorFlow comes from seqcli.keras_env
    import tensorflow as tf  # noqa: TID251

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
DEFAULT_IMAGE_SIZE = (256, 256)
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


@dataclass
class Images:
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

        return positions.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)


def open_images(directory: Path, section: SourceSection, where: str) -> Images:
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
    return Images(
        paths=np.array(paths),
        labels=np.array(labels, dtype=np.int64),
        class_names=[d.name for d in class_dirs],
        image_size=tuple(section.image_size or DEFAULT_IMAGE_SIZE),
        channels=CHANNELS[section.color_mode],
        scale=None if section.scale is None else float(section.scale),
    )


