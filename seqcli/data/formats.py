"""The data formats and datasets seq reads, one row each: the one table the spec's ``format:`` and ``dataset:``
choices, the JSON Schema, the "did you mean" hints, the format a file's suffix names and the command-line help are
derived from. Adding a format is a row here and its reader.

A reader takes an :class:`Opening` (the resolved path, the source's settings, what the caller needs) and returns
an in-memory or streamed source. Each row's reader is a small function that imports its module when a source of
that format is opened, so that reading this table (the spec does, ``seq --help`` does) loads neither NumPy nor
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the readers import the section model, never the reverse
    from seqcli.specfile.sections import SourceSection


@dataclass(frozen=True)
class Opening:
    """What a reader is asked for: the source at ``path`` (resolved, checked to exist), its settings, where the
    spec or the command line names it, and what the caller needs (``labels``: required; ``want_labels``: read
    when present; ``input_shape``: the model's, checked before the bulk is read; ``class_names``: the model's)."""

    path: Path
    section: SourceSection
    where: str
    fmt: DataFormat
    base_dir: Path  # where the source's other file names (an .npy's `y:`) start from
    roots: list[Path]  # where files inside a folder source may resolve to, besides the folder itself
    labels: bool
    want_labels: bool
    input_shape: tuple | None = None
    class_names: list[str] | None = None
    parts: tuple[Path, ...] = ()  # a folder source given as shards: every folder, ``path`` the first

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders a folder source reads as one: its parts, or its path alone."""
        return self.parts or (self.path,)


Reader = Callable[[Opening], Any]


@dataclass(frozen=True)
class DataFormat:
    """One data format: its name (``format:`` in a spec), what it holds in words, the file suffixes that name it,
    the files it reads inside a folder, and what it can do."""

    name: str
    summary: str
    reader: Reader | None  # None: only ever streamed (seqcli.data.shards and seqcli.data.streams read it)
    suffixes: tuple[str, ...] = ()  # a file ending in one of these is read in this format
    member_suffixes: tuple[str, ...] = ()  # a folder source: the files read in its class subfolders
    files: bool = True  # reads a file
    folders: bool = False  # reads a folder of class subfolders
    shards: bool = False  # may be one of many shards (a glob or a list): files streamed, folders read as one
    compressed: bool = False  # may be compressed: named by the suffix before .gz (`compression:`)
    weights: bool = False  # holds sample weights (`weights:`)

    def read(self, opening: Opening) -> Any:
        """The source its reader opens; a format without one is only ever streamed, and never comes here."""
        if self.reader is None:
            raise TypeError(f"format {self.name!r} is read as a stream (seqcli.data.shards), not by a reader")
        return self.reader(opening)


def _read_npz(opening: Opening):
    from seqcli.data.numpy_files import open_npz

    return open_npz(opening)


def _read_npy(opening: Opening):
    from seqcli.data.numpy_files import open_npy

    return open_npy(opening)


def _read_csv(opening: Opening):
    from seqcli.data.tables import open_csv

    return open_csv(opening)


def _read_images(opening: Opening):
    from seqcli.data.images import open_image_folder

    return open_image_folder(opening)


def _read_text(opening: Opening):
    from seqcli.data.text import open_text

    return open_text(opening)


_FORMATS = (
    DataFormat("npz", "arrays x and y in an .npz", _read_npz, (".npz",), shards=True, weights=True),
    DataFormat("npy", "an .npy array of inputs (labels from `y: labels.npy`)", _read_npy, (".npy",), shards=True),
    DataFormat("csv", "a CSV with a header row, the label last", _read_csv, (".csv",), shards=True, weights=True),
    DataFormat(
        "images",
        "a folder of images, one subfolder per class (or a glob or list of them, read as one)",
        _read_images,
        member_suffixes=(".bmp", ".gif", ".jpeg", ".jpg", ".png"),
        files=False,
        folders=True,
        shards=True,
    ),
    DataFormat(
        "text",
        "a .txt file of one sample a line, or a folder of .txt files, one subfolder per class",
        _read_text,
        (".txt",),
        member_suffixes=(".txt",),
        folders=True,
    ),
    DataFormat(
        "tfrecord",
        "TFRecord files of tf.train.Example records, described by `features:`",
        None,
        (".tfrecord", ".tfrec", ".tfrecords"),
        shards=True,
        compressed=True,
    ),
)
DATA_FORMATS: dict[str, DataFormat] = {row.name: row for row in _FORMATS}
FORMAT_NAMES: tuple[str, ...] = tuple(DATA_FORMATS)
COMPRESSED_SUFFIXES = (".gz",)  # a compressed file: its format is named by the suffix before


def format_of_path(path: str | Path) -> DataFormat | None:
    """The format a file name's suffix names (``a.tfrecord.gz`` is TFRecord), or None when none does."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    compressed = bool(suffixes) and suffixes[-1] in COMPRESSED_SUFFIXES
    suffix = (suffixes[-2] if len(suffixes) > 1 else "") if compressed else (suffixes[-1] if suffixes else "")
    return next((row for row in _FORMATS if suffix in row.suffixes and (row.compressed or not compressed)), None)


def shard_format_names() -> tuple[str, ...]:
    """The formats whose files may be streamed as shards."""
    return tuple(row.name for row in _FORMATS if row.shards and row.files)


def folder_shard_formats() -> tuple[str, ...]:
    """The folder formats whose folders a glob or a list may name, read as one source."""
    return tuple(row.name for row in _FORMATS if row.shards and row.folders)


def file_suffixes(rows: tuple[DataFormat, ...] = _FORMATS) -> str:
    """The suffixes of ``rows``' files in words: ``.npz, .npy, .csv``."""
    return ", ".join(row.suffixes[0] for row in rows if row.files and row.suffixes)


def formats_in_words() -> str:
    """Every format and what it holds, for the schema's description of ``format:``."""
    return "; ".join(f"{row.name}: {row.summary}" for row in _FORMATS)


# ----------------------------------------------------------------------------- datasets by name


@dataclass(frozen=True)
class Dataset:
    """A dataset read by name (``dataset: mnist``, or the string ``mnist:test``): where it comes from and its
    reader, which takes the source's settings, where it is named and whether labels are wanted."""

    name: str
    origin: str
    reader: Callable[[SourceSection, str, bool], Any]


def _read_keras_dataset(section: SourceSection, where: str, want_labels: bool):
    from seqcli.data.keras_datasets import open_keras_dataset

    return open_keras_dataset(section, where, want_labels)


def _read_bundled_dataset(section: SourceSection, where: str, want_labels: bool):
    from seqcli.data.bundled_datasets import open_bundled_dataset

    return open_bundled_dataset(section, where, want_labels)


_KERAS, _SKLEARN = "Keras, downloaded on first use", "inside scikit-learn's wheel"
_DATASETS = (
    *(Dataset(name, _KERAS, _read_keras_dataset) for name in ("mnist", "fashion_mnist", "cifar10", "cifar100")),
    *(
        Dataset(name, _SKLEARN, _read_bundled_dataset)
        for name in ("breast_cancer", "wine", "iris", "digits", "diabetes")
    ),
)
DATASETS: dict[str, Dataset] = {row.name: row for row in _DATASETS}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
DATASET_SPLITS = ("train", "test")


def is_dataset_name(source: str) -> bool:
    """``mnist``, ``cifar10:test``, ``breast_cancer:train``...: a named dataset (and its split), not a path."""
    name, _, split = source.partition(":")
    return name in DATASET_NAMES and split in ("", *DATASET_SPLITS)


def source_help(what: str) -> str:
    """Command-line help for an option that takes a source: ``what`` it holds, then every form it may take."""
    folders = " or ".join(row.name for row in _FORMATS if row.folders)
    return (
        f"{what}: a file ({file_suffixes()}), a glob or list of shards or image folders, a folder ({folders}), "
        f"or a dataset such as {DATASET_NAMES[0]}:test ({', '.join(DATASET_NAMES)})."
    )


def datasets_in_words() -> str:
    """Every dataset by where it comes from, for the schema's description of ``dataset:``."""
    origins = dict.fromkeys(row.origin for row in _DATASETS)
    return "; ".join(f"{', '.join(r.name for r in _DATASETS if r.origin == o)} ({o})" for o in origins)
