"""Opening a source: the string and mapping forms, files (.npz, .npy, .csv) read with their size and
shape checked from the header before the bulk (seqcli.limits), and the dispatch to image folders and
Keras datasets."""

from __future__ import annotations

import contextlib
import csv
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic

from seqcli import archives, datacheck, limits
from seqcli.data.arrays import Arrays, DataError, as_arrays, check_sample_shape
from seqcli.data.bundled_datasets import BUNDLED_DATASETS, open_bundled_dataset
from seqcli.data.images import Images, open_images
from seqcli.data.keras_datasets import open_keras_dataset
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import resolve_path
from seqcli.spec.sections import DATASET_NAMES, SourceSection

Source = Arrays | Images
FORMATS = ("npz", "npy", "csv", "images")


def validate_section(model: type[pydantic.BaseModel], value: Any, where: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join([where, *map(str, e['loc'])])}: {e['msg']}" for e in error.errors(include_url=False)
        )
        raise DataError(f"invalid data settings: {problems}") from None


def as_section(source: str | dict | SourceSection, where: str) -> SourceSection:
    if isinstance(source, SourceSection):
        return source
    if isinstance(source, str):
        name, _, split = source.partition(":")
        if name in DATASET_NAMES and split in ("", "train", "test"):
            return SourceSection(dataset=name, split=split or "train")
        return SourceSection(path=source)
    return validate_section(SourceSection, source, where)


def open_source(
    source: str | dict | SourceSection,
    base_dir: Path,
    where: str,
    *,
    labels: bool,
    keep_labels: bool = False,
    input_shape: tuple | None = None,
) -> Source:
    """Open a source. ``labels``: labels are required; ``keep_labels``: read them when present;
    ``input_shape``: the model's, checked against the samples' before the bulk of a file is read."""
    try:
        return _open_checked(source, base_dir, where, labels=labels, keep_labels=keep_labels, input_shape=input_shape)
    except limits.LimitError as error:
        raise DataError(error.message, error.hint) from None


def _open_checked(
    source, base_dir: Path, where: str, *, labels: bool, keep_labels: bool, input_shape: tuple | None
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
        opened = _open_path(section, base_dir, where, labels=labels, want_labels=want_labels, input_shape=input_shape)
    check_sample_shape(opened.sample_shape, input_shape, section.path or section.dataset, where)
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
):
    path = resolve_path(section.path, base_dir)
    _require_exists(path, section.path, base_dir, where)
    limits.check_data_file(path, where)
    fmt = section.format or _infer_format(path, where)
    if fmt == "images":
        if not path.is_dir():
            raise DataError(f"{where}: {path} is a file, but format 'images' needs a directory")
        return open_images(path, section, where, roots=member_roots(base_dir, where))
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
            y = _read_npy(y_path, where)
    else:
        x, y = _read_csv(path, section, where, want_labels=want_labels, input_shape=input_shape)
    return as_arrays(x, y, section.scale, path, where)


def member_roots(base_dir: Path, where: str) -> list[Path]:
    """Besides the folder source itself, where the files inside it may resolve to: the spec's folder and
    the allowed ones for a spec's source, the allowed ones for a folder named on the command line. (The
    source's own path is confined where the spec's file values are, :func:`seqcli.spec.paths.path_problems`,
    which leaves values set with ``--set`` to the user.)"""
    return limits.extra_roots() if _from_command_line(where) else limits.allowed_roots(base_dir)


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
        return "images"
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise DataError(
            f"{where}: cannot tell the format of {path} from its extension {path.suffix!r}",
            hint=f"use a .npz, .npy or .csv file or an image directory, or set `format:` ({', '.join(FORMATS)})",
        )
    return fmt


def _read_npz(
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
    with archives.open_member(archive, member, path, where) as handle:
        shape, _ = archives.check_npy_header(
            handle, archive.getinfo(member).file_size, where, f"array {name!r} in {path}"
        )
    return tuple(shape)


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
        with limits.open_input(path, where, roots=roots, limit=None) as handle:
            size = os.fstat(handle.fileno()).st_size
            shape, _ = archives.check_npy_header(handle, size, where, str(path))
            if len(shape) > 0:
                check_sample_shape(tuple(shape[1:]), input_shape, path, where)
            handle.seek(0)
            return archives.read_npy(handle, size, where, str(path))
    except (SeqError, DataError):
        raise
    except OSError as error:  # its text names the path again: "[Errno 13] Permission denied: '...'"
        raise DataError(
            f"{where}: cannot read {path}: {error.strerror or error}", hint=limits.UNREADABLE_HINT
        ) from None
    except Exception as error:  # numpy's text may quote the file's bytes: only its kind is named
        raise DataError(f"{where}: cannot read {path} as an .npy array ({type(error).__name__})") from None


CSV_CHUNK_ROWS = 4096  # rows converted to numbers at a time while a CSV streams in (fewer when rows are wide)
CELL_BYTES = 64  # a cell held as text before it is converted: a short str object and its list slot


def _read_csv(
    path: Path, section: SourceSection, where: str, *, want_labels: bool, input_shape: tuple | None = None, roots=None
):
    """A CSV streamed row by row into float64 chunks: the header (and the model's input shape, when given)
    is checked before the body is read, and the numbers read so far never exceed the memory budget."""
    with _csv_reader(path, where, roots) as rows:
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
        values, lines = _csv_numbers(rows, header, path, where)
    with np.errstate(over="ignore", invalid="ignore"):  # a number float32 cannot hold becomes inf: named below
        x = values[:, [header.index(name) for name in features]].astype(np.float32)
        _check_csv_finite(x, features, lines, "x", path, where)
        y = None
        if want_labels and label in header:
            y = values[:, header.index(label)]
            whole = np.all(np.mod(y, 1) == 0) and np.all(np.abs(y) <= 2**53)  # class indices, exactly
            y = y.astype(np.int64) if whole else y.astype(np.float32)
            _check_csv_finite(y, [label], lines, "y", path, where)
    return x, y


def _check_csv_finite(values: np.ndarray, columns: list[str], lines: np.ndarray, role: str, path: Path, where: str):
    """A NaN or infinite cell (``nan``, ``inf``, or a number float32 cannot hold) named by its line and column."""
    found = datacheck.first_non_finite(values)
    if found is None:
        return
    index, value, count = found
    column = columns[int(np.flatnonzero(~np.isfinite(values[index].reshape(-1)))[0])]
    more = f" (and {count - 1} more rows)" if count > 1 else ""
    raise datacheck.DataValueError(
        f"{where}: {role} in {path} holds a non-finite value ({value}) at line {lines[index]}, column {column!r}{more}",
        hint=datacheck.NON_FINITE_HINT,
    )


def csv_line_limit() -> int:
    """The longest CSV line seq reads: a line becomes about 30 times its size in cells before its row is
    counted, so a line may take at most a 64th of the memory budget (and never more than 64 MiB)."""
    return max(min(limits.max_memory() // 64, 64 << 20), 4096)


@contextlib.contextmanager
def _csv_reader(path: Path, where: str, roots=None):
    """A csv.reader over the non-empty rows of a UTF-8 file read through the door (a leading byte-order mark
    dropped), line by line, each line at most :func:`csv_line_limit` long; a line that is not UTF-8 or too
    long is a DataError naming its line (and column), never its text."""
    try:
        handle = limits.open_input(path, where, roots=roots, limit=None)
    except OSError as error:
        raise DataError(
            f"{where}: cannot read {path}: {error.strerror or error}", hint="check the file's permissions"
        ) from None
    reader = csv.reader(_csv_lines(handle, path, where))

    def rows():
        try:
            for row in reader:
                if row:
                    yield row
        except csv.Error as error:
            raise DataError(f"{where}: {path}:{reader.line_num}: cannot read as CSV: {_csv_problem(error)}") from None

    with handle:
        yield _Rows(rows(), reader)


def _csv_lines(handle, path: Path, where: str):
    """The file's lines as text, each read with a bound so a line of millions of cells is refused unread."""
    limit = csv_line_limit()
    number = 0
    while data := handle.readline(limit + 1):
        number += 1
        if len(data) > limit and not data.endswith(b"\n"):
            raise DataError(
                f"{where}: {path}:{number}: line is longer than {limits.human_size(limit)}",
                hint=f"a CSV row holds one sample; {limits.over_budget_hint()}",
            )
        if number == 1:
            data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{where}: {path}:{number}: not UTF-8 text: byte 0x{data[error.start]:02x} at column {error.start + 1}",
                hint="save the CSV as UTF-8 (a spreadsheet's 'CSV UTF-8'), or convert it, "
                "e.g. iconv -f latin1 -t utf-8",
            ) from None


def _csv_problem(error: csv.Error) -> str:
    """The csv module's complaint, in words that quote nothing from the file."""
    text = str(error)
    return text if "field larger than field limit" in text or "NUL" in text else "malformed quoting or delimiters"


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
    """Each of ``names`` (typed in the spec) is a column of ``header``. The header's cells are read from the
    file, so they are never shown: the hint counts them and points at a close one by its position."""
    for name in names:
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
            near = f"; column {header.index(close[0]) + 1} has a name close to {name!r}" if close else ""
            raise DataError(
                f"{where}.{key}: {path} has no column {name!r}",
                hint=f"its header row (line 1) names {len(header)} columns{near}",
            )


def _csv_numbers(rows: _Rows, header: list[str], path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The body's cells as float64, converted a chunk of rows at a time, within the memory budget, and the
    file's line number of each row."""
    budget = limits.max_memory()
    width = len(header)
    chunk_rows = max(1, min(CSV_CHUNK_ROWS, budget // (CELL_BYTES * 4 * width)))  # text cells: a quarter
    chunks, chunk, lines, total = [], [], [], 0
    numbers: list[np.ndarray] = []
    for row in rows:
        if len(row) != width:
            raise DataError(f"{where}: {path}:{rows.line}: row has {len(row)} cells, the header has {width}")
        chunk.append(row)
        lines.append(rows.line)
        if len(chunk) == chunk_rows:
            chunks.append(_csv_chunk(chunk, lines, header, path, where))
            numbers.append(np.array(lines, dtype=np.int64))
            total += chunks[-1].nbytes + numbers[-1].nbytes
            chunk, lines = [], []
            if total > budget:
                raise DataError(
                    f"{where}: {path} holds more than {limits.human_size(budget)} of numbers "
                    f"(stopped reading at line {rows.line}), over the memory limit",
                    hint=limits.over_budget_hint(),
                )
    if chunk:
        chunks.append(_csv_chunk(chunk, lines, header, path, where))
        numbers.append(np.array(lines, dtype=np.int64))
    if not chunks:
        return np.zeros((0, width)), np.zeros(0, np.int64)
    return np.concatenate(chunks), np.concatenate(numbers)


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
                    f"{where}: {path}:{number}: column {column + 1} is not a number",
                    hint="every cell after the header row must be a number",
                ) from None
    raise DataError(f"{where}: cannot read {path} as numbers")  # pragma: no cover
