"""Keras's own datasets by name (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``), loaded with
``keras.datasets.<name>.load_data()`` into an in-memory source."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seqcli.data.arrays import Arrays, DataError, as_arrays
from seqcli.keras_env import import_keras, keras_home

if TYPE_CHECKING:  # annotations only: the section model's module reads the dataset table, which reads this
    from seqcli.specfile.sections import SourceSection

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


def open_keras_dataset(section: SourceSection, where: str, want_labels: bool) -> Arrays:
    name = section.dataset
    (x_train, y_train), (x_test, y_test) = _keras_load_data(name, where)
    x, y = (x_train, y_train) if section.split == "train" else (x_test, y_test)
    if name in GRAYSCALE_DATASETS:
        x = x[..., np.newaxis]
    y = np.asarray(y).reshape(len(y)) if want_labels else None
    return as_arrays(x, y, section.scale, f"Keras dataset {name!r}", where)


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
