"""Data sources -> tf.data pipelines.

A source is what the spec's ``data.train`` / ``data.validation`` / ``data.test`` name. A string is
shorthand, read by its form:

- ``digits.npz``: arrays ``x`` and ``y``; ``inputs.npy``: inputs only; ``table.csv``: a header row,
  then numbers, the last column being the label (or class names, which become sorted class indices);
- ``lines.txt``: text, one sample per line, no labels;
- a directory: images or ``.txt`` files, one subfolder per class (class names are the sorted subfolder names);
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``: a Keras dataset, its train split
  (``mnist:test`` for the test split).

The mapping form is :class:`~seqcli.specfile.sections.SourceSection`. Relative paths resolve against
the folder the caller gives: the spec file's for a spec's ``data:``, the current one for ``--data``.

Order is reproducible: the batches of training epoch ``k`` are a pure function of ``(seed, k)``
(a stateless permutation, ``tf.random.experimental.index_shuffle``), independent of TensorFlow's
global seed, of how many epochs ran before, and of the process. :meth:`Datasets.train_for_epoch`
rebuilds any epoch and can skip its first batches, which is what exact mid-epoch resume needs.

In-memory sources (npz, npy, csv, Keras datasets) are held once as tensors, in their stored dtype,
and each batch is gathered and cast to float32 (``scale`` applied) on the fly. Image directories
are decoded once for training, in parallel, into memory or a temporary file
(:func:`~seqcli.data.images.decode_once`); single passes (evaluate, predict, extract) and ``cache: false``
stream them from disk, decoding each file as its batch needs it.
Shards (a glob or a list of files) and TFRecord files are streamed, never loaded whole
(:mod:`~seqcli.data.streams`): their epochs are a pure function of ``(seed, epoch)`` too, through a shuffle
buffer of ``data.shuffle_buffer`` samples; training parses their TFRecord, CSV and compressed .npz shards once,
keeping the samples for later epochs in a parsed copy (:mod:`~seqcli.data.parsed`).
Validation batches, which are the same every epoch, are cached in memory after the first pass
(``data.cache``, up to :data:`CACHE_LIMIT_BYTES`), whatever the source.

The package: :mod:`~seqcli.data.arrays` (errors, in-memory sources, the shape check), :mod:`~seqcli.data.formats`
(the table of formats and datasets, each with its reader), :mod:`~seqcli.data.sources` (opening a source),
:mod:`~seqcli.data.numpy_files` (.npz and .npy), :mod:`~seqcli.data.tables` (CSV), :mod:`~seqcli.data.text` (text
folders and files, strings in memory, the one function that opens them), :mod:`~seqcli.data.images` (image folders,
one or several read as one), :mod:`~seqcli.data.streams` (streamed sources: order, shuffle buffer, batches),
:mod:`~seqcli.data.shards` (opening them, every shard's header checked), :mod:`~seqcli.data.tfrecord` (TFRecord
records), :mod:`~seqcli.data.keras_datasets` (``mnist`` and co.), :mod:`~seqcli.data.batching` (an epoch's batches
of a source, or of one worker's share) and :mod:`~seqcli.data.pipeline` (:class:`Datasets`, :func:`load_datasets`,
:func:`load_source`). TensorFlow is imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import importlib
from typing import Any

# Name -> the module that defines it. Imported when first used, so that importing a module of this package (the
# format table, which the spec's section model reads) loads neither the pipeline nor NumPy.
_EXPORTS = {
    "CACHE_LIMIT_BYTES": "seqcli.data.pipeline",
    "CHANNELS": "seqcli.data.images",
    "DATA_FORMATS": "seqcli.data.formats",
    "DATASETS": "seqcli.data.formats",
    "DEFAULT_IMAGE_SIZE": "seqcli.data.images",
    "FORMAT_NAMES": "seqcli.data.formats",
    "GRAYSCALE_DATASETS": "seqcli.data.keras_datasets",
    "KERAS_DATASETS": "seqcli.data.keras_datasets",
    "DataError": "seqcli.data.arrays",
    "Datasets": "seqcli.data.pipeline",
    "ShapeMismatchError": "seqcli.shapes",
    "check_sample_shape": "seqcli.shapes",
    "load_arrays": "seqcli.data.pipeline",
    "load_datasets": "seqcli.data.pipeline",
    "load_source": "seqcli.data.pipeline",
    "split_indices": "seqcli.data.pipeline",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
