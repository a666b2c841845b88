"""The one reader of the files seq writes and reads back: a run's ``history.csv`` and ``metrics.json``, a study's
``trials.csv`` and ``study.json``, a checkpoint's record.

Such a file may have been edited, truncated or replaced since seq wrote it, so every read is bounded and
typed: the file is a regular file of at most :data:`MAX_BYTES`, its text is UTF-8 (a bad byte is named by
line and column), a CSV line holds at most :data:`MAX_LINE` characters, a row at most :data:`MAX_CELLS`
cells of at most :data:`MAX_FIELD` characters each, each known column holds its type, and JSON nests at most
:data:`MAX_JSON_DEPTH` levels. A file that breaks a bound is a :class:`RecordError` naming the file, the line
and column, and the kind of problem, never a value read from it.

Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqcli.budget import LimitError, human_size
from seqcli.errors import SeqError
from seqcli.inputs import open_input

MAX_BYTES = 16 << 20  # seq writes a few kilobytes (a history of 10,000 epochs: about 2 MB)
MAX_LINE = 1 << 20  # characters in one CSV line, checked before the line is split
MAX_CELLS = 256  # cells in one CSV row (a history's metrics, a study's parameters)
MAX_FIELD = 8192  # characters in one CSV cell (a failed trial's note is the longest)
MAX_JSON_DEPTH = 32  # seq's own JSON nests 4 levels


class RecordError(SeqError):
    """One of seq's own files that is not what seq writes: unreadable, too large, or of the wrong shape."""


@dataclass(frozen=True)
class Column:
    """A CSV column's type: ``parse`` turns a cell into its value (ValueError when it cannot); ``kind`` says
    what the cell should hold, in messages. An empty cell is None unless the column is ``required``."""

    parse: Callable[[str], Any]
    kind: str
    required: bool = False


INTEGER = Column(int, "an integer")
NUMBER = Column(float, "a number")
TEXT = Column(str, "text")


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path``, a regular file of at most :data:`MAX_BYTES`. ``what`` says which file seq
    wrote there (``"a history.csv as seq train writes it"``), for messages."""
    path = Path(path)
    try:
        with open_input(path, str(path), limit=None) as handle:  # the door: a FIFO or a device is refused
            raw = handle.read(MAX_BYTES + 1)
    except LimitError as error:
        raise RecordError(error.detail, hint=error.hint) from None
    except OSError as error:
        raise RecordError(f"cannot read {path}: {error.strerror or error}") from None
    if len(raw) > MAX_BYTES:
        raise not_written_by_seq(path, what, f"it holds more than {human_size(MAX_BYTES)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise not_written_by_seq(path, what, f"line {line}, column {column}: a byte that is not UTF-8") from None


def not_written_by_seq(path: Path, what: str, why: str, hint: str | None = None) -> RecordError:
    """The error for a file seq wrote that has been changed since: ``PATH is not WHAT: WHY``."""
    return RecordError(f"{path} is not {what}: {why}", hint=hint or "write it again with the command that made it")


# ----------------------------------------------------------------------------- JSON


def read_json(path: str | Path, what: str) -> Any:
    """The JSON value in ``path`` (see :func:`read_text`), nested at most :data:`MAX_JSON_DEPTH` levels."""
    return parse_json(read_text(path, what), Path(path), what)


def parse_json(text: str, path: Path, what: str) -> Any:
    """``text`` (from ``path``) as JSON, nested at most :data:`MAX_JSON_DEPTH` levels."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise not_written_by_seq(
            path, what, f"invalid JSON at line {error.lineno}, column {error.colno} ({error.msg})"
        ) from None
    except RecursionError:  # nested far deeper than the bound
        raise _too_deep(path, what) from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(path, what)
    return value


def _too_deep(path: Path, what: str) -> RecordError:
    return not_written_by_seq(path, what, f"its JSON nests more than {MAX_JSON_DEPTH} levels deep")


def json_depth(value: Any) -> int:
    """How many levels of lists and objects ``value`` nests (a number or a string: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in item]
    return deepest


# ----------------------------------------------------------------------------- CSV


def read_csv(path: str | Path, what: str, columns: dict[str, Column], other: Column = TEXT) -> list[dict]:
    """The rows of the CSV file ``path`` as dicts, each cell parsed by its column in ``columns`` (``other``
    for a column not named there); an empty cell is None. The header must name every required column."""
    path = Path(path)
    text = read_text(path, what)
    reader = csv.reader(_bounded_lines(text, path, what), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        _check_header(header, columns, path, what)
        return [_typed_row(row, header, columns, other, reader.line_num, path, what) for row in reader if row]
    except csv.Error as error:
        kind = f"a cell longer than {MAX_FIELD:,} characters" if "field larger" in str(error) else "malformed CSV"
        raise not_written_by_seq(path, what, f"line {reader.line_num}: {kind}") from None


def _bounded_lines(text: str, path: Path, what: str) -> Iterator[str]:
    start, number = 0, 1
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        if end - start > MAX_LINE:
            raise not_written_by_seq(path, what, f"line {number} is longer than {MAX_LINE:,} characters")
        yield text[start:end]
        start, number = end, number + 1


def _check_header(header: list[str], columns: dict[str, Column], path: Path, what: str) -> None:
    _check_cells(header, 1, path, what)
    missing = [name for name, column in columns.items() if column.required and name not in header]
    if missing:
        raise not_written_by_seq(path, what, f"its header has no column {missing[0]!r}")
    if len(set(header)) != len(header):
        raise not_written_by_seq(path, what, "its header names a column twice")


def _check_cells(row: list[str], line: int, path: Path, what: str) -> None:
    if len(row) > MAX_CELLS:
        raise not_written_by_seq(path, what, f"line {line} holds more than {MAX_CELLS} cells")
    for index, cell in enumerate(row):
        if len(cell) > MAX_FIELD:
            raise not_written_by_seq(
                path, what, f"line {line}, column {index + 1}: a cell longer than {MAX_FIELD:,} characters"
            )


def _typed_row(row, header, columns, other, line, path, what) -> dict:
    _check_cells(row, line, path, what)
    if len(row) > len(header):
        raise not_written_by_seq(path, what, f"line {line} holds {len(row)} cells, its header names {len(header)}")
    values = {}
    for index, name in enumerate(header):
        cell = row[index] if index < len(row) else ""
        column = columns.get(name, other)
        shown = repr(name) if name in columns else str(index + 1)  # a header cell seq did not write is not shown
        if cell == "":
            if column.required:
                problem = f"line {line}, column {shown}: empty, it should hold {column.kind}"
                raise not_written_by_seq(path, what, problem)
            values[name] = None
            continue
        try:
            values[name] = column.parse(cell)
        except (ValueError, OverflowError):
            raise not_written_by_seq(path, what, f"line {line}, column {shown}: not {column.kind}") from None
    return values
