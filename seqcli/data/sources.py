"""Opening a source: the string and mapping forms, the checks every file or folder source passes (it exists, it
is a data file, it is what its format reads), and the dispatch to its format's or dataset's reader
(:mod:`seqcli.data.formats`) or to the streamed sources (:mod:`seqcli.data.shards`)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pydantic

from seqcli.budget import LimitError
from seqcli.data.arrays import Arrays, DataError, from_command_line, require_exists
from seqcli.data.formats import (
    DATA_FORMATS,
    DATASET_NAMES,
    DATASET_SPLITS,
    DATASETS,
    FORMAT_NAMES,
    DataFormat,
    Opening,
    file_suffixes,
    folder_shard_formats,
    format_of_path,
    is_dataset_name,
)
from seqcli.data.images import Images
from seqcli.data.numpy_files import npz_header, read_npz
from seqcli.data.shards import is_streamed, open_stream
from seqcli.data.streams import FileReaders, Stream
from seqcli.data.tables import csv_shard_columns, read_csv
from seqcli.data.text import Texts
from seqcli.errors import did_you_mean
from seqcli.files import is_pattern, matching_sources, resolve_path
from seqcli.inputs import allowed_roots, check_data_file, extra_roots
from seqcli.shapes import check_sample_shape
from seqcli.specfile.sections import SourceSection

Source = Arrays | Images | Stream


def validate_section(model: type[pydantic.BaseModel], value: Any, where: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise DataError(f"invalid data settings: {problems}") from error


def as_section(source: str | list | dict | SourceSection, where: str) -> SourceSection:
    if isinstance(source, SourceSection):
        return source
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return validate_section(SourceSection, _flow_mapping(source, where), where)
    if isinstance(source, str):
        if is_dataset_name(source):
            name, _, split = source.partition(":")
            return SourceSection(dataset=name, split=split or DATASET_SPLITS[0])
        return SourceSection(path=source)
    if isinstance(source, list):
        return validate_section(SourceSection, {"path": source}, where)
    return validate_section(SourceSection, source, where)


def _flow_mapping(text: str, where: str) -> dict:
    """A source given on the command line in the spec's mapping form: ``{path: r.csv, text: review}``."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at column {mark.column + 1}" if mark is not None else ""
        raise DataError(
            f"{where}: cannot read the source mapping{at}",
            hint="write it as in a spec, e.g. {path: r.csv, text: review}",
        ) from error
    if not isinstance(value, dict):
        raise DataError(f"{where}: a source mapping must be a mapping", hint="e.g. {path: r.csv, text: review}")
    return value


def source_paths(source: str | list | dict | SourceSection, where: str = "--data") -> list[Path]:
    """The files, folders or globs a source names (none for a Keras dataset)."""
    return [Path(name) for name in as_section(source, where).path_names]


def open_source(
    source: str | list | dict | SourceSection,
    base_dir: Path,
    where: str,
    *,
    labels: bool,
    keep_labels: bool = False,
    input_shape: tuple | None = None,
    class_names: list[str] | None = None,
) -> Source:
    """Open a source. ``labels``: labels are required; ``keep_labels``: read them when present;
    ``input_shape``: the model's, checked against the samples' before the bulk of a file is read;
    ``class_names``: the model's classes (the training data's), which a source's class names must match."""
    try:
        opened = _open_checked(
            source,
            base_dir,
            where,
            labels=labels,
            keep_labels=keep_labels,
            input_shape=input_shape,
            class_names=class_names,
        )
    except LimitError as error:
        raise DataError(error.message, error.hint) from error
    check_class_names(opened.class_names, class_names, where)
    return opened


def check_class_names(found: list[str] | None, expected: list[str] | None, where: str) -> None:
    """A source's class names (its folders', its label column's) are the model's, in the same order."""
    if found is None or expected is None or list(found) == list(expected):
        return
    missing = sorted(set(found) - set(expected))
    detail = f"{len(missing)} of them unknown to the model" if missing else "in another order or a subset"
    raise DataError(
        f"{where}: the data's {len(found)} classes differ from the {len(expected)} the model was trained on ({detail})",
        hint="use the class names of the training data (its subfolders, its label column)",
    )


def _open_checked(
    source,
    base_dir: Path,
    where: str,
    *,
    labels: bool,
    keep_labels: bool,
    input_shape: tuple | None,
    class_names: list[str] | None = None,
) -> Source:
    section = as_section(source, where)
    want_labels = labels or keep_labels
    if section.dataset is not None and section.path is not None:
        raise DataError(
            f"{where}: give either `path` or `dataset`, not both. "
            f"Received: path={section.path!r}, dataset={section.dataset!r}"
        )
    if section.dataset is not None:
        opened = DATASETS[section.dataset].reader(section, where, want_labels)
    elif section.path is None:
        raise DataError(f"{where}: no `path` or `dataset` given", hint="e.g. `train: data/digits.npz`")
    else:
        opened = _open_path(
            section,
            base_dir,
            where,
            labels=labels,
            want_labels=want_labels,
            input_shape=input_shape,
            class_names=class_names,
        )
    check_sample_shape(opened.sample_shape, input_shape, section.path or section.dataset, where)
    if labels and isinstance(opened, Texts) and opened.y is None:
        raise DataError(
            f"{where}: {section.path} holds text samples only (one a line), but labels are needed here",
            hint="use a folder of .txt files with one subfolder per class, or a CSV with `text:` and `label:` columns",
        )
    if labels and isinstance(opened, Arrays) and opened.y is None:
        raise DataError(
            f"{where}: {section.path} holds inputs only, but labels are needed here",
            hint="use an .npz with arrays x and y, or give `y: labels.npy` next to a .npy `path`",
        )
    if opened.count == 0:
        raise DataError(f"{where}: {section.path or section.dataset} holds no samples")
    return opened


def _open_path(
    section: SourceSection,
    base_dir: Path,
    where: str,
    *,
    labels: bool,
    want_labels: bool,
    input_shape: tuple | None = None,
    class_names: list[str] | None = None,
):
    """A source read from a file or folder: streamed (shards, or a format only ever streamed), else by the
    reader of its format (:data:`~seqcli.data.formats.DATA_FORMATS`), given or told by its name; folders named
    by a glob or a list (image shards) are read by their format's reader as one source."""
    named = format_of_path(section.path) if isinstance(section.path, str) else None
    if is_streamed(section, section.format, base_dir) or (section.format is None and _streamed_only(named)):
        paths = _shard_files(section, base_dir, where)
        if not any(path.is_dir() for path in paths):
            readers = FileReaders(
                read_npz=read_npz, npz_header=npz_header, read_csv=_read_csv_shard, csv_columns=csv_shard_columns
            )
            return open_stream(section, paths, where, labels=want_labels, input_shape=input_shape, readers=readers)
        fmt = _folder_shard_format(paths, section, where)
    else:
        assert isinstance(section.path, str), (
            "a list is sharded; open_source opens a section without a path as a dataset"
        )
        paths = [resolve_path(section.path, base_dir)]
        require_source(paths[0], section.path, base_dir, where)
        check_data_file(paths[0], where)
        fmt = DATA_FORMATS[section.format] if section.format else _infer_format(paths[0], where)
        _check_kind(paths[0], fmt, where)
    if section.weights is not None and not fmt.weights:
        takers = " or ".join(row.name for row in DATA_FORMATS.values() if row.weights)
        raise DataError(f"{where}.weights: sample weights come from a {takers} source, not a {fmt.name} source")
    opening = Opening(
        path=paths[0],
        section=section,
        where=where,
        fmt=fmt,
        base_dir=base_dir,
        roots=member_roots(base_dir, where),
        labels=labels,
        want_labels=want_labels,
        input_shape=input_shape,
        class_names=class_names,
        parts=tuple(paths) if len(paths) > 1 else (),
    )
    return fmt.read(opening)


def _folder_shard_format(paths: list[Path], section: SourceSection, where: str) -> DataFormat:
    """The folder format of the folders a glob or a list names (every one a folder through the door), when
    that format reads several folders as one source."""
    for path in paths:
        check_data_file(path, where)
        if not path.is_dir():
            raise DataError(
                f"{where}: {path} is a file, but other parts of this source are folders",
                hint="give either shard files or image folders, not both",
            )
    fmt = DATA_FORMATS[section.format] if section.format else _folder_format(paths[0])
    if fmt.name not in folder_shard_formats():
        raise DataError(
            f"{where}: {fmt.name} folders cannot be read as shards",
            hint=f"a glob or a list of folders names {' or '.join(folder_shard_formats())} folders; "
            "give one folder, or shard files",
        )
    return fmt


def _streamed_only(fmt: DataFormat | None) -> bool:
    return fmt is not None and fmt.reader is None


def _check_kind(path: Path, fmt: DataFormat, where: str) -> None:
    """The path is what the format reads: a file, a folder, or either."""
    if path.is_dir() and not fmt.folders:
        raise DataError(f"{where}: {path} is a directory, but format {fmt.name!r} needs a file")
    if not path.is_dir() and not fmt.files:
        raise DataError(f"{where}: {path} is a file, but format {fmt.name!r} needs a directory")


def _read_csv_shard(path: Path, section: SourceSection, where: str, *, want_labels: bool):
    """A CSV shard's features and labels (class names refused: each shard would number them on its own)."""
    x, y, names, _ = read_csv(path, section, where, want_labels=want_labels)
    if names is not None:
        raise DataError(
            f"{where}: shard {path} holds class names as labels; CSV shards need class indices (0, 1, ...)",
            hint="number the classes in the files, or give one CSV file",
        )
    return x, y


def _shard_files(section: SourceSection, base_dir: Path, where: str) -> list[Path]:
    """The files of a sharded source, in order: a list's (each one may be a glob), or a glob's sorted matches
    (its folders when it matches no file: image shards)."""
    files = []
    for name in section.path_names:
        if not is_pattern(name, base_dir):
            path = resolve_path(name, base_dir)
            require_source(path, name, base_dir, where)
            files.append(path)
            continue
        try:
            matched = matching_sources(name, base_dir)
        except ValueError as error:
            raise DataError(f"{where}: {name!r} {error}", hint="name fewer, larger shards") from error
        if not matched:
            raise DataError(
                f"{where}: {name!r} matches no file or folder (relative to {base_dir})",
                hint="check the pattern; * does not match a leading dot",
            )
        files += matched
    return files


def member_roots(base_dir: Path, where: str) -> list[Path]:
    """Besides the folder source itself, where the files inside it may resolve to: the spec's folder and
    the allowed ones for a spec's source, the allowed ones for a folder named on the command line. (The
    source's own path is confined where the spec's file values are, :func:`seqcli.specfile.paths.path_problems`,
    which leaves values set with ``--set`` to the user.)"""
    return extra_roots() if from_command_line(where) else allowed_roots(base_dir)


def require_source(path: Path, given: str, base_dir: Path, where: str) -> None:
    """The source's file or folder exists (else the error says what its name was relative to)."""
    require_exists(path, given, base_dir, where, hint=did_you_mean(given, DATASET_NAMES) or "check the path")


def _infer_format(path: Path, where: str) -> DataFormat:
    if path.is_dir():
        return _folder_format(path)
    fmt = format_of_path(path)
    if fmt is None or fmt.reader is None:
        raise DataError(
            f"{where}: cannot tell the format of {path} from its extension {path.suffix!r}",
            hint=f"use a {file_suffixes()} file or a folder ({_folder_formats()}), or set `format:` "
            f"({', '.join(FORMAT_NAMES)})",
        )
    return fmt


def _folder_formats() -> str:
    return ", ".join(row.name for row in DATA_FORMATS.values() if row.folders)


def _folder_format(path: Path) -> DataFormat:
    """The folder format whose files its class subfolders hold most of (among the first
    :data:`FORMAT_SAMPLE_FILES` files any folder format reads); the first folder format of the table on a tie."""
    folder_formats = [row for row in DATA_FORMATS.values() if row.folders]
    counts = dict.fromkeys((row.name for row in folder_formats), 0)
    with contextlib.suppress(OSError):
        for class_dir in sorted(entry for entry in path.iterdir() if entry.is_dir()):
            for name in sorted(os.listdir(class_dir)):
                lower = name.lower()
                kind = next((row.name for row in folder_formats if lower.endswith(row.member_suffixes)), None)
                if kind is not None:
                    counts[kind] += 1
                if sum(counts.values()) >= FORMAT_SAMPLE_FILES:
                    break
    return DATA_FORMATS[max(counts, key=lambda name: counts[name])]


FORMAT_SAMPLE_FILES = 64
