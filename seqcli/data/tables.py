"""CSV sources: a header row, then one row per sample, streamed row by row within the memory budget.

Numeric feature columns (``features:``, default every column but the label) are read as float32; a
``text:`` column is read as strings (:class:`~seqcli.data.text.Texts`). The label column (``label:``,
default the last) holds numbers, or class names when its first cell is not a number: names become class
indices in sorted order (the training data's order for validation and test data), at most
:data:`MAX_CLASSES` of them.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqcli import datacheck
from seqcli.budget import human_size, max_memory, over_budget_hint
from seqcli.data.arrays import Arrays, DataError, as_arrays
from seqcli.data.text import Texts, as_texts, open_data_file
from seqcli.shapes import check_sample_shape

if TYPE_CHECKING:  # annotations only: the section model's module reads the format table, which reads this
    from seqcli.data.formats import Opening
    from seqcli.specfile.sections import SourceSection

CSV_CHUNK_ROWS = 4096  # rows converted to numbers at a time while a CSV streams in
MAX_CLASSES = 10_000  # distinct names in a CSV's label column of class names
STRING_OVERHEAD = 64  # bytes a cell kept as text takes besides its characters
CELL_BYTES = 64  # a cell held as text before it is converted: a short str object and its list slot


@dataclass
class CsvColumns:
    """What a CSV source reads: numeric ``features`` or a ``text`` column, and the ``label`` (None: none)."""

    features: list[str]
    text: str | None
    label: str | None
    weights: str | None = None  # a column of sample weights, read with the features


def open_csv(opening: Opening) -> Arrays | Texts:
    """A CSV source: numeric features as an in-memory source (with class names, when its labels are names),
    or a ``text:`` column's strings."""
    section, path, where = opening.section, opening.path, opening.where
    x, y, names, weights = read_csv(
        path,
        section,
        where,
        want_labels=opening.want_labels,
        input_shape=opening.input_shape,
        class_names=opening.class_names,
    )
    if isinstance(x, Texts):
        return x
    arrays = as_arrays(x, y, section.scale, path, where, weights)
    arrays.class_names = names
    return arrays


def read_csv(
    path: Path,
    section: SourceSection,
    where: str,
    *,
    want_labels: bool,
    input_shape: tuple | None = None,
    class_names: list[str] | None = None,
    roots=None,
):
    """A CSV streamed row by row: numbers into float64 chunks, a ``text`` column and a label column of class
    names kept as text. The header (and the model's input shape, when given) is checked before the body is
    read, and what was read so far never exceeds the memory budget."""
    with _csv_reader(path, where, roots) as rows:
        header = next(rows, None)
        if header is None:
            raise DataError(f"{where}: {path} is empty; a CSV source needs a header row, then one row per sample")
        header = [name.strip() for name in header]
        columns = _csv_columns(header, section, path, where, want_labels, input_shape)
        # pandas' index column (to_csv's default) is named "" or "Unnamed: 0": its values decide, so the shape
        # check waits for them, lest it suggest widening the model's input by the row number.
        index_like = section.features is None and header[0] in INDEX_COLUMN_NAMES and header[0] in columns.features
        if columns.text is None and not index_like:
            check_sample_shape((len(columns.features),), input_shape, path, where)
        body = _csv_body(rows, header, columns, path, where)
    if index_like:
        _refuse_index_column(body["numbers"][:, 0], header[0], columns.features, path, where)
        check_sample_shape((len(columns.features),), input_shape, path, where)
    x = _csv_inputs(body, columns, input_shape, path, where)
    y, names = None, None
    if columns.label is not None:
        y, names = _csv_labels(body, columns.label, class_names, path, where)
    weights = _csv_weights(body, columns, path, where)
    if isinstance(x, Texts):
        x.y, x.class_names = y, names
        return x, None, None, None
    return x, y, names, weights


INDEX_COLUMN_NAMES = ("", "Unnamed: 0")


def _csv_columns(
    header: list[str], section: SourceSection, path: Path, where: str, want_labels: bool, input_shape: tuple | None
) -> CsvColumns:
    """The columns a CSV source reads. Without a label named or needed (predict), every column is a feature,
    unless the CSV has one column more than the model takes: then its last column is the label, as in training.
    A ``weights`` column is neither."""
    if isinstance(section.features, dict):
        raise DataError(
            f"{where}.features: a CSV's features are a list of column names",
            hint="a features description (name -> {dtype, shape}) is for TFRecord files",
        )
    weights = section.weights
    if weights is not None:
        _check_columns([weights], header, path, where, "weights")
    columns = [name for name in header if name != weights]
    label = section.label or (columns or header)[-1]
    if want_labels:
        _check_columns([label], header, path, where, "label")
    kept_label = label if want_labels and label in header else None
    if section.text is not None:
        if section.features is not None:
            raise DataError(
                f"{where}: give either `text` (one column of text) or `features` (numeric columns), not both"
            )
        _check_columns([section.text], header, path, where, "text")
        if weights is not None:
            raise DataError(
                f"{where}: sample weights (`weights:`) are read with numeric features, not with a `text:` column",
                hint="train text without `weights:`, or give class weights with `train.class_weight`",
            )
        return CsvColumns([], section.text, kept_label)
    holds_label = want_labels or section.label is not None or _one_more_than(len(columns), input_shape)
    features = section.features or [name for name in columns if name != label or not holds_label]
    _check_columns(features, header, path, where, "features")
    if not features:
        raise DataError(f"{where}: {path} has one column; the last column is the label, so no features are left")
    return CsvColumns(features, None, kept_label, weights)


def csv_shard_columns(path: Path, section: SourceSection, where: str, *, want_labels: bool) -> tuple[list, str, int]:
    """A CSV shard's numeric feature columns, its label column and its number of rows, no cell converted."""
    with _csv_reader(path, where) as rows:
        header = next(rows, None)
        if header is None:
            raise DataError(f"{where}: {path} is empty; a CSV source needs a header row, then one row per sample")
        header = [name.strip() for name in header]
        columns = _csv_columns(header, section, path, where, want_labels, None)
        if columns.text is not None or columns.weights is not None:
            raise DataError(
                f"{where}: CSV shards hold numeric features and a label only",
                hint="remove `text:` and `weights:`, or give one CSV file",
            )
        count = 0
        for row in rows:
            if len(row) != len(header):
                raise DataError(f"{where}: {path}:{rows.line}: row has {len(row)} cells, the header has {len(header)}")
            count += 1
    return columns.features, columns.label, count


def _one_more_than(count: int, input_shape: tuple | None) -> bool:
    return input_shape is not None and len(input_shape) == 1 and input_shape[0] == count - 1


def _refuse_index_column(values: np.ndarray, name: str, features: list[str], path: Path, where: str) -> None:
    """A first column of row numbers 0..n-1 under pandas' index header is no feature: say so."""
    if len(values) < 2 or not np.array_equal(values, np.arange(len(values))):
        return
    rest = ", ".join(features[1:7]) + (", ..." if len(features) > 7 else "")
    raise DataError(
        f"{where}: the first column of {path} (header {name!r}) holds the row numbers 0..{len(values) - 1}: "
        "it is the index pandas writes with to_csv, not a feature",
        hint=f"save the CSV with to_csv(..., index=False), or list the features: `features: [{rest}]`",
    )


def _csv_weights(body: dict, columns: CsvColumns, path: Path, where: str) -> np.ndarray | None:
    """The weights column (read after the features), float32 and finite, or None."""
    if columns.weights is None:
        return None
    weights = body["numbers"][:, len(columns.features)].astype(np.float32)
    _check_csv_finite(weights, [columns.weights], body["lines"], "weights", path, where)
    return weights


def _csv_inputs(body: dict, columns: CsvColumns, input_shape: tuple | None, path: Path, where: str):
    if columns.text is not None:
        return as_texts([cell.encode() for cell in body["text"]], None, None, input_shape)
    values, lines = body["numbers"], body["lines"]
    with np.errstate(over="ignore", invalid="ignore"):  # a number float32 cannot hold becomes inf: named below
        x = values[:, : len(columns.features)].astype(np.float32)
    _check_csv_finite(x, columns.features, lines, "x", path, where)
    return x


def _csv_labels(
    body: dict, label: str, class_names: list[str] | None, path: Path, where: str
) -> tuple[np.ndarray, list[str] | None]:
    """Numeric labels as class indices (whole numbers) or float32; a column of class names as indices into
    their sorted list (``class_names``, the training data's, when given)."""
    if body["names"] is not None:
        return _class_ids(body["names"], body["lines"], class_names, path, where)
    values = body["numbers"][:, -1]
    with np.errstate(over="ignore", invalid="ignore"):
        whole = np.all(np.mod(values, 1) == 0) and np.all(np.abs(values) <= 2**53)  # class indices, exactly
        y = values.astype(np.int64) if whole else values.astype(np.float32)
    _check_csv_finite(y, [label], body["lines"], "y", path, where)
    return y, None


def _class_ids(
    names: list[str], lines: np.ndarray, class_names: list[str] | None, path: Path, where: str
) -> tuple[np.ndarray, list[str]]:
    known = class_names if class_names is not None else sorted(set(names))
    index = {name: position for position, name in enumerate(known)}
    ids = np.fromiter((index.get(name, -1) for name in names), dtype=np.int64, count=len(names))
    unknown = np.flatnonzero(ids < 0)
    if len(unknown):
        raise DataError(
            f"{where}: {path}:{lines[unknown[0]]}: the label is not one of the {len(known)} classes the model "
            f"was trained on ({len(unknown)} rows like it)",
            hint="labels must be class names of the training data",
        )
    return ids, list(known)


def _csv_body(rows: _Rows, header: list[str], columns: CsvColumns, path: Path, where: str) -> dict:
    """The cells a source needs, read within the memory budget: ``numbers`` (features then a numeric label,
    float64), ``text`` and ``names`` (a label column of class names, else None) as lists, ``lines``."""
    budget = max_memory()
    width = len(header)
    numeric = [header.index(name) for name in columns.features]
    numeric += [header.index(columns.weights)] if columns.weights is not None else []
    label_index = None if columns.label is None else header.index(columns.label)
    text_index = None if columns.text is None else header.index(columns.text)
    reader = _CsvBody(label_index, text_index)
    chunk_rows = max(1, min(CSV_CHUNK_ROWS, budget // (CELL_BYTES * 4 * width)))  # text cells: a quarter
    chunk, lines = [], []
    for row in rows:
        if len(row) != width:
            raise DataError(f"{where}: {path}:{rows.line}: row has {len(row)} cells, the header has {width}")
        reader.add(row, rows.line, path, where)
        chunk.append(row)
        lines.append(rows.line)
        if len(chunk) == chunk_rows:
            reader.add_chunk(chunk, lines, numeric, header, path, where)
            chunk, lines = [], []
            if reader.bytes > budget:
                raise DataError(
                    f"{where}: {path} holds more than {human_size(budget)} of {reader.kind} "
                    f"(stopped reading at line {rows.line}), over the memory limit",
                    hint=over_budget_hint(),
                )
    if chunk:
        reader.add_chunk(chunk, lines, numeric, header, path, where)
    return reader.result(len(numeric))


class _CsvBody:
    """The cells of a CSV's body as :func:`_csv_body` gathers them, and the bytes they take."""

    def __init__(self, label_index: int | None, text_index: int | None):
        self.label_index, self.text_index = label_index, text_index
        self.chunks: list[np.ndarray] = []
        self.line_chunks: list[np.ndarray] = []
        self.text: list[str] = []
        self.names: list[str] | None = None
        self.distinct: set[str] = set()
        self.bytes = 0
        self.rows = 0

    def add(self, row: list[str], line: int, path: Path, where: str) -> None:
        """Keep the row's text cells; a label column whose first cell is not a number holds class names."""
        if self.text_index is not None:
            self.text.append(row[self.text_index])
            self.bytes += len(row[self.text_index]) + STRING_OVERHEAD
        if self.label_index is None:
            return
        cell = row[self.label_index]
        self.rows += 1
        if self.rows == 1 and not _is_number(cell):
            self.names = []
        if self.names is not None:
            self.names.append(cell)
            self.bytes += len(cell) + STRING_OVERHEAD
            if cell not in self.distinct:
                self.distinct.add(cell)
                if len(self.distinct) > MAX_CLASSES:
                    raise DataError(
                        f"{where}: {path}:{line}: the label column holds more than {MAX_CLASSES:,} distinct "
                        "class names",
                        hint="a classifier's labels are a few class names; a column of free text or numbers "
                        "is not one (name the label column with `label:`)",
                    )

    @property
    def kind(self) -> str:
        """What the body holds, in words: ``numbers``, or ``numbers and text``."""
        return "numbers" if self.text_index is None and self.names is None else "numbers and text"

    def add_chunk(self, chunk: list[list[str]], lines: list[int], numeric: list[int], header, path, where) -> None:
        columns = numeric + ([self.label_index] if self.label_index is not None and self.names is None else [])
        cells = [[row[i] for i in columns] for row in chunk]
        self.chunks.append(_csv_chunk(cells, lines, columns, header, path, where))
        self.line_chunks.append(np.array(lines, dtype=np.int64))
        self.bytes += self.chunks[-1].nbytes + self.line_chunks[-1].nbytes

    def result(self, width: int) -> dict:
        if not self.chunks:
            numbers, lines = np.zeros((0, width + 1)), np.zeros(0, np.int64)
        else:
            numbers, lines = np.concatenate(self.chunks), np.concatenate(self.line_chunks)
        return {"numbers": numbers, "lines": lines, "text": self.text, "names": self.names}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


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
    return max(min(max_memory() // 64, 64 << 20), 4096)


@contextlib.contextmanager
def _csv_reader(path: Path, where: str, roots=None):
    """A csv.reader over the non-empty rows of a UTF-8 file read through the door (a leading byte-order mark
    dropped), line by line, each line at most :func:`csv_line_limit` long; a line that is not UTF-8 or too
    long is a DataError naming its line (and column), never its text."""
    handle = open_data_file(path, where, roots=roots, whole=False)  # streamed: priced as it is read
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
                f"{where}: {path}:{number}: line is longer than {human_size(limit)}",
                hint=f"a CSV row holds one sample; {over_budget_hint()}",
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


def _csv_chunk(
    chunk: list[list[str]], lines: list[int], columns: list[int], header: list[str], path: Path, where: str
) -> np.ndarray:
    """The cells of ``chunk`` (already cut to the file's ``columns``) as float64; a cell that is not a number
    is named by its line and column."""
    try:
        return np.array(chunk, dtype=np.float64).reshape(len(chunk), len(columns))
    except ValueError:
        pass
    for number, row in zip(lines, chunk):
        for position, cell in enumerate(row):
            if not _is_number(cell):
                column = columns[position]
                raise DataError(
                    f"{where}: {path}:{number}: column {column + 1} is not a number",
                    hint="every cell after the header row must be a number (a label column of class names "
                    "starts with a name; a column of text is named with `text: COLUMN`)",
                )
    raise DataError(f"{where}: cannot read {path} as numbers")  # pragma: no cover
