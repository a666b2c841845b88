"""The data formats and datasets are one table (seqcli.data.formats): the spec's choices, the schema, the format
a suffix names, the hints and the command-line help all know every row, and every reader has its row."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.data import formats, shards, streams
from seqcli.data.arrays import DataError
from seqcli.data.bundled_datasets import BUNDLED_DATASETS
from seqcli.data.formats import (
    DATA_FORMATS,
    DATASET_NAMES,
    DATASETS,
    FORMAT_NAMES,
    folder_shard_formats,
    format_of_path,
    shard_format_names,
)
from seqcli.data.keras_datasets import KERAS_DATASETS
from seqcli.data.sources import open_source
from seqcli.specfile import spec_from_text
from tests.conftest import SPECS

DATA = Path(formats.__file__).parent


def source_schema(schema: dict) -> dict:
    return schema["$defs"]["SourceSection"]["properties"]


def choices(field: dict) -> list[str]:
    return next(item["enum"] for item in field["anyOf"] if "enum" in item)


def test_the_spec_and_its_committed_schema_offer_every_format_and_dataset():
    properties = source_schema(json.loads((SPECS / "seq.schema.json").read_text()))
    assert choices(properties["format"]) == list(FORMAT_NAMES)
    assert choices(properties["dataset"]) == list(DATASET_NAMES)
    for name in FORMAT_NAMES:
        assert f"{name}: {DATA_FORMATS[name].summary}" in properties["format"]["description"]


@pytest.mark.parametrize("field, given, meant", [("format", "tfrecords", "tfrecord"), ("dataset", "iriss", "iris")])
def test_a_misspelt_format_or_dataset_gets_did_you_mean_from_the_table(field, given, meant):
    spec = spec_from_text(f"layers:\n  - Dense: {{units: 3}}\ndata:\n  train: {{path: a.npz, {field}: {given}}}\n")
    [problem] = [problem for problem in spec.problems if problem.path == f"data.train.{field}"]
    assert problem.hint == f"did you mean {meant!r}?"
    for name in FORMAT_NAMES if field == "format" else DATASET_NAMES:
        assert repr(name) in problem.message


@pytest.mark.parametrize("command", ["predict", "evaluate", "extract", "export"])
def test_the_help_of_every_command_that_reads_a_source_names_every_format_and_dataset(command):
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for row in DATA_FORMATS.values():
        assert (row.suffixes[0] if row.files else row.name) in result.output, (command, row.name)
    for name in DATASET_NAMES:
        assert name in result.output, (command, name)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_a_file_of_each_format_is_told_by_its_suffix(name):
    row = DATA_FORMATS[name]
    for suffix in row.suffixes:
        assert format_of_path(f"data/train{suffix.upper()}") is row
        assert format_of_path(f"data/train{suffix}.gz") is (row if row.compressed else None)


def test_a_file_no_format_names_gets_every_format_in_its_hint(tmp_path):
    (tmp_path / "notes.dat").write_text("1,2\n")
    with pytest.raises(DataError) as error:
        open_source("notes.dat", tmp_path, "data.train", labels=True)
    assert "cannot tell the format" in error.value.message
    for row in DATA_FORMATS.values():
        assert (row.suffixes[0] if row.files else row.name) in error.value.hint
        assert row.name in error.value.hint


def _readers_in(path: Path) -> set[str]:
    """The functions of a module that take an Opening: the readers of a format."""
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.args.args
        and ast.unparse(node.args.args[0].annotation or ast.Constant(None)) == "Opening"
    }


def _called_by_the_table() -> set[str]:
    tree = ast.parse(Path(formats.__file__).read_text())
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module.startswith("seqcli.data.")
        for alias in node.names
    }


def test_every_reader_has_its_row_in_the_table():
    """A reader of a format (a function taking an Opening) that no row reads from is a format seq cannot name."""
    readers = set().union(*(_readers_in(path) for path in DATA_FORMATS_MODULES()))
    called = _called_by_the_table()
    assert readers and readers <= called, f"readers no row of seqcli.data.formats reads with: {readers - called}"
    for row in DATA_FORMATS.values():
        assert row.reader is not None or row.shards, f"{row.name}: neither a reader nor streamed"


def DATA_FORMATS_MODULES() -> list[Path]:
    return [path for path in sorted(DATA.glob("*.py")) if path.name != "formats.py"]


def test_every_streamed_format_has_its_shard_header_and_chunk_reader():
    streamed = {row.name for row in DATA_FORMATS.values() if row.shards and row.files}
    assert set(shard_format_names()) == streamed
    assert set(shards._HEADERS) == streamed
    assert set(streams._READERS) == streamed
    # folders named by a glob or a list are read as one source by their format's reader, not streamed
    assert folder_shard_formats() == ("images",)
    assert all(DATA_FORMATS[name].reader is not None for name in folder_shard_formats())


def test_every_dataset_has_its_reader_and_every_reader_its_row():
    keras = {name for name, row in DATASETS.items() if row.reader is formats._read_keras_dataset}
    bundled = {name for name, row in DATASETS.items() if row.reader is formats._read_bundled_dataset}
    assert keras == set(KERAS_DATASETS)
    assert bundled == set(BUNDLED_DATASETS)
    assert keras | bundled == set(DATASET_NAMES)
