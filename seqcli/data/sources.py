"""Opening a source: the string and mapping forms, files (.npz, .npy, .csv) read with their size and
shape checked from the header before the bulk (seqcli.inputs, seqcli.archives), and the dispatch to image folders and
Keras datasets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from seqcli import archives
from seqcli.budget import LimitError
from seqcli.data.arrays import Arrays, DataError, as_arrays
from seqcli.data.bundled_datasets import BUNDLED_DATASETS, open_bundled_dataset
from seqcli.data.images import IMAGE_EXTENSIONS, Images, open_images
from seqcli.data.keras_datasets import open_keras_dataset
from seqcli.data.shards import is_streamed, open_stream
from seqcli.data.streams import FileReaders, Stream
from seqcli.data.tables import csv_shard_columns, read_csv
from seqcli.data.text import TEXT_EXTENSIONS, Texts, read_lines, read_text_folder
from seqcli.data.tfrecord import TFRECORD_SUFFIXES
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import is_pattern, matching_files, resolve_path
from seqcli.inputs import UNREADABLE_HINT, allowed_roots, check_data_file, extra_roots, open_input
from seqcli.shapes import check_sample_shape
from seqcli.specfile.sections import DATASET_NAMES, SourceSection

Source = Arrays | Images | Stream
FORMATS = ("npz", "npy", "csv", "images", "text", "tfrecord")


def validate_section(model: type[pydantic.BaseModel], value: Any, where: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise DataError(f"invalid data settings: {problems}") from None


def as_section(source: str | list | dict | SourceSection, where: str) -> SourceSection:
    if isinstance(source, SourceSection):
        return source
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return validate_section(SourceSection, _flow_mapping(source, where), where)
    if isinstance(source, str):
        name, _, split = source.partition(":")
        if name in DATASET_NAMES and split in ("", "train", "test"):
            return SourceSection(dataset=name, split=split or "train")
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
        ) from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: a source mapping must be a mapping", hint="e.g. {path: r.csv, text: review}")
    return value


def source_path(source: str | dict | SourceSection, where: str = "--data") -> Path | None:
    """The file or folder a source reads (None for a Keras dataset)."""
    section = as_section(source, where)
    return None if section.path is None else Path(section.path)


def open_source(
    source: str | dict | SourceSection,
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
        raise DataError(error.message, error.hint) from None
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
    if section.dataset in BUNDLED_DATASETS:
        opened = open_bundled_dataset(section, where, want_labels)
    elif section.dataset is not None:
        opened = open_keras_dataset(section, where, want_labels)
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
    if is_streamed(section, section.format, base_dir) or _names_tfrecord(section.path):
        files = _shard_files(section, base_dir, where)
        readers = FileReaders(
            read_npz=read_npz, npz_header=npz_header, read_csv=_read_csv_shard, csv_columns=csv_shard_columns
        )
        return open_stream(section, files, where, labels=want_labels, input_shape=input_shape, readers=readers)
    path = resolve_path(section.path, base_dir)
    _require_exists(path, section.path, base_dir, where)
    check_data_file(path, where)
    fmt = section.format or _infer_format(path, where)
    if section.weights is not None and fmt not in ("npz", "csv"):
        raise DataError(f"{where}.weights: sample weights come from an .npz array or a CSV column, not a {fmt} source")
    if fmt == "images":
        if not path.is_dir():
            raise DataError(f"{where}: {path} is a file, but format 'images' needs a directory")
        return open_images(path, section, where, roots=member_roots(base_dir, where))
    if fmt == "text":
        if path.is_dir():
            return read_text_folder(path, member_roots(base_dir, where), where, input_shape)
        return read_lines(path, where, input_shape)
    if path.is_dir():
        raise DataError(f"{where}: {path} is a directory, but format {fmt!r} needs a file")
    weights = None
    if fmt == "npz":
        x, y = read_npz(path, section, where, labels=labels, want_labels=want_labels, input_shape=input_shape)
        weights = _npz_weights(path, section, where) if want_labels else None
    elif fmt == "npy":
        x = _read_npy(path, where, input_shape=input_shape)
        y = None
        if want_labels and _names_npy(section.y):
            y_path = resolve_path(section.y, base_dir)
            _require_exists(y_path, section.y, base_dir, f"{where}.y")
            y = _read_npy(y_path, where)
    else:
        x, y, names, weights = read_csv(
            path, section, where, want_labels=want_labels, input_shape=input_shape, class_names=class_names
        )
        if isinstance(x, Texts):
            return x
        arrays = as_arrays(x, y, section.scale, path, where, weights)
        arrays.class_names = names
        return arrays
    return as_arrays(x, y, section.scale, path, where, weights)


def _npz_weights(path: Path, section: SourceSection, where: str) -> np.ndarray | None:
    """The .npz array ``section.weights`` names (its header checked first), or None when none is named."""
    if section.weights is None:
        return None
    with archives.open_archive(path, where) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        npz_header(archive, section.weights, members, path, f"{where}.weights", "weights")
        return _npz_array(archive, members[section.weights], path, where)


def _read_csv_shard(path: Path, section: SourceSection, where: str, *, want_labels: bool):
    """A CSV shard's features and labels (class names refused: each shard would number them on its own)."""
    x, y, names, _ = read_csv(path, section, where, want_labels=want_labels)
    if names is not None:
        raise DataError(
            f"{where}: shard {path} holds class names as labels; CSV shards need class indices (0, 1, ...)",
            hint="number the classes in the files, or give one CSV file",
        )
    return x, y


def _names_tfrecord(path: str) -> bool:
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    return any(suffix in TFRECORD_SUFFIXES for suffix in suffixes[-2:])


def _shard_files(section: SourceSection, base_dir: Path, where: str) -> list[Path]:
    """The files of a streamed source, in order: a list's (each one may be a glob), or a glob's sorted matches."""
    names = section.path if isinstance(section.path, list) else [section.path]
    files = []
    for name in names:
        if not is_pattern(name, base_dir):
            path = resolve_path(name, base_dir)
            _require_exists(path, name, base_dir, where)
            files.append(path)
            continue
        try:
            matched = matching_files(name, base_dir)
        except ValueError as error:
            raise DataError(f"{where}: {name!r} {error}", hint="name fewer, larger shards") from None
        if not matched:
            raise DataError(
                f"{where}: {name!r} matches no file (relative to {base_dir})",
                hint="check the pattern; * does not match a leading dot",
            )
        files += matched
    return files


def member_roots(base_dir: Path, where: str) -> list[Path]:
    """Besides the folder source itself, where the files inside it may resolve to: the spec's folder and
    the allowed ones for a spec's source, the allowed ones for a folder named on the command line. (The
    source's own path is confined where the spec's file values are, :func:`seqcli.specfile.paths.path_problems`,
    which leaves values set with ``--set`` to the user.)"""
    return extra_roots() if _from_command_line(where) else allowed_roots(base_dir)


def _names_npy(name: str | None) -> bool:
    return name is not None and name.lower().endswith(".npy")


def _require_exists(path: Path, given: str, base_dir: Path, where: str):
    if path.exists():
        return
    relative = not Path(os.path.expanduser(given)).is_absolute()
    folder = "the current folder" if _from_command_line(where) else "the spec file's folder"
    note = f" ({given!r} is relative to {folder}, {base_dir})" if relative else ""
    hint = did_you_mean(given, DATASET_NAMES) or "check the path"
    raise DataError(f"{where}: no such file or directory: {path}{note}", hint=hint)


def _from_command_line(where: str) -> bool:
    """Whether a source was named by a command-line option (``--data``), not by a spec."""
    return where.startswith("--")


def _infer_format(path: Path, where: str) -> str:
    if path.is_dir():
        return _folder_format(path)
    if path.suffix.lower() in TEXT_EXTENSIONS:
        return "text"
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise DataError(
            f"{where}: cannot tell the format of {path} from its extension {path.suffix!r}",
            hint="use a .npz, .npy, .csv or .txt file, or an image or text directory, or set `format:` "
            f"({', '.join(FORMATS)})",
        )
    return fmt


def _folder_format(path: Path) -> str:
    """``text`` for a folder whose class subfolders hold more ``.txt`` files than images (among the first
    :data:`FORMAT_SAMPLE_FILES` files with either extension), else ``images``."""
    counts = {"text": 0, "images": 0}
    with contextlib.suppress(OSError):
        for class_dir in sorted(entry for entry in path.iterdir() if entry.is_dir()):
            for name in sorted(os.listdir(class_dir)):
                lower = name.lower()
                kind = (
                    "text"
                    if lower.endswith(TEXT_EXTENSIONS)
                    else "images"
                    if lower.endswith(IMAGE_EXTENSIONS)
                    else None
                )
                if kind is not None:
                    counts[kind] += 1
                if sum(counts.values()) >= FORMAT_SAMPLE_FILES:
                    break
    return "text" if counts["text"] > counts["images"] else "images"


FORMAT_SAMPLE_FILES = 64


def read_npz(
    path: Path,
    section: SourceSection,
    where: str,
    *,
    labels: bool,
    want_labels: bool,
    input_shape: tuple | None = None,
):
    """x and y of an .npz, each array's header checked (size, and x's sample shape) before it is read."""
    with archives.open_archive(path, where) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        names = list(members)
        x_shape, _ = npz_header(archive, section.x, members, path, where, "x")
        if len(x_shape) > 0:
            check_sample_shape(x_shape[1:], input_shape, path, where)
        y = None
        if want_labels and section.y is not None:
            if section.y in names:
                npz_header(archive, section.y, members, path, where, "y")
                y = _npz_array(archive, members[section.y], path, where)
            elif labels:
                _missing_array(section.y, path, names, where, "y", taken=(section.x,))
        x = _npz_array(archive, members[section.x], path, where)
    return x, y


def npz_header(archive, name: str, members: dict[str, str], path: Path, where: str, role: str) -> tuple:
    """The shape and dtype (text) an array of an open .npz declares, checked against the file and the budget."""
    if name not in members:
        _missing_array(name, path, list(members), where, role)
    member = members[name]
    with archives.open_member(archive, member, path, where) as handle:
        shape, dtype = archives.check_npy_header(
            handle, archive.getinfo(member).file_size, where, f"array {name!r} in {path}"
        )
    return tuple(shape), dtype


def _npz_array(archive, member: str, path: Path, where: str) -> np.ndarray:
    try:
        with archives.open_member(archive, member, path, where) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # a damaged member is open_member's LimitError
        name = member.removesuffix(".npy")
        raise DataError(f"{where}: cannot read array {name!r} in {path}: {error}") from None


def _missing_array(name: str, path: Path, names: list[str], where: str, role: str, taken: tuple = ()):
    listed = ", ".join(repr(n) for n in names) or "none"
    hint = did_you_mean(name, names)
    others = [n for n in names if n not in taken]
    if hint is None and others:
        hint = f"name the array with `{role}:` in a mapping source, e.g. `{role}: {others[0]}`"
    raise DataError(f"{where}: {path} has no array {name!r} (its arrays: {listed})", hint=hint)


def _read_npy(path: Path, where: str, *, input_shape: tuple | None = None, roots=None) -> np.ndarray:
    """An .npy array read through the door, its header checked (size against the file and the budget, dtype,
    sample shape) first."""
    try:
        with open_input(path, where, roots=roots, limit=None) as handle:
            size = os.fstat(handle.fileno()).st_size
            shape, _ = archives.check_npy_header(handle, size, where, str(path))
            if len(shape) > 0:
                check_sample_shape(tuple(shape[1:]), input_shape, path, where)
            handle.seek(0)
            return archives.read_npy(handle, size, where, str(path))
    except (SeqError, DataError):
        raise
    except OSError as error:  # its text names the path again: "[Errno 13] Permission denied: '...'"
        raise DataError(f"{where}: cannot read {path}: {error.strerror or error}", hint=UNREADABLE_HINT) from None
    except Exception as error:  # numpy's text may quote the file's bytes: only its kind is named
        raise DataError(f"{where}: cannot read {path} as an .npy array ({type(error).__name__})") from None
