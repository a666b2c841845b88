"""Opening a streamed source (:mod:`seqcli.data.streams`): the files of a glob or a list, every shard's header
read and checked alike (sample shape and dtypes as the first shard's, or the shard is named), TFRecord's
``features`` description checked against ``x`` and ``y``."""

from __future__ import annotations

import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from seqcli import archives
from seqcli.data.arrays import DataError
from seqcli.data.formats import DATA_FORMATS, file_suffixes, format_of_path, shard_format_names
from seqcli.data.stream_readers import DECODABLE
from seqcli.data.streams import CHUNK_ROWS, READ_BUFFER, RECORD_BLOCK, FileReaders, RawArray, Shard, Stream
from seqcli.data.tfrecord import count_records, parse_records, records
from seqcli.errors import did_you_mean
from seqcli.inputs import check_data_file, open_input
from seqcli.shapes import check_sample_shape
from seqcli.specfile.sections import SourceSection

STREAM_FORMATS = shard_format_names()


def is_streamed(section: SourceSection, fmt: str | None, base_dir: Path) -> bool:
    """Whether a source is sharded (a list or a glob) or of a format only ever streamed (TFRecord): streamed,
    unless its shards are image folders (read as one image source, :func:`seqcli.data.sources._open_path`)."""
    from seqcli.files import is_pattern

    streamed_only = fmt is not None and DATA_FORMATS[fmt].reader is None
    return (
        isinstance(section.path, list)
        or (section.path is not None and is_pattern(section.path, base_dir))
        or streamed_only
    )


def open_stream(
    section: SourceSection,
    files: list[Path],
    where: str,
    *,
    labels: bool,
    input_shape: tuple | None,
    readers: FileReaders,
) -> Stream:
    """A streamed source over ``files`` (resolved, in order), every shard's header checked alike."""
    fmt = section.format or _shard_format(files[0], where)
    if section.weights is not None:
        raise DataError(
            f"{where}.weights: sample weights are not read from shards or TFRecord files",
            hint="give one .npz or CSV file with its weights, or use train.class_weight",
        )
    if fmt not in STREAM_FORMATS:
        raise DataError(
            f"{where}: format {fmt!r} cannot be sharded",
            hint=f"shards are {', '.join(STREAM_FORMATS)} files, or image folders",
        )
    compression = section.compression or (
        "GZIP" if DATA_FORMATS[fmt].compressed and files[0].suffix.lower() == ".gz" else None
    )
    stream = Stream([], section, where, with_labels=labels, readers=readers, compression=compression)
    if fmt == "tfrecord":
        _check_description(section, where, labels)
    for path in files:
        check_data_file(path, where)
        if path.is_dir():
            raise DataError(f"{where}: {path} is a directory; shards are files")
        if (section.format or _shard_format(path, where)) != fmt:
            raise DataError(
                f"{where}: shard {path} is not a .{fmt} file like the first one",
                hint="give shards of one format",
            )
        shard = _HEADERS[fmt](path, stream)
        shard.remember()
        _check_alike(shard, stream.shards[0] if stream.shards else None, where)
        stream.shards.append(shard)
        check_sample_shape(shard.sample_shape, input_shape, path, where)
    if stream.count == 0:
        raise DataError(f"{where}: the shards hold no samples")
    if labels:
        stream.y_dtype = _label_dtype(stream)
    return stream


def _label_dtype(stream: Stream) -> str:
    """int64 for class indices, else float32: from the first shard's header, or its labels for a CSV."""
    first = stream.shards[0]
    if first.fmt == "csv":
        _, y = stream.readers.read_csv(first.path, stream.section, stream.where, want_labels=True)
        return str(y.dtype)
    return "int64" if np.dtype(first.y_dtype).kind in "iu" else "float32"


def _shard_format(path: Path, where: str) -> str:
    fmt = format_of_path(path)
    if fmt is not None and fmt.shards:
        return fmt.name
    shard_formats = tuple(row for row in DATA_FORMATS.values() if row.shards)
    if fmt is not None:
        raise DataError(
            f"{where}: shard {path} is a {fmt.name} file, and {fmt.name} files are not read as shards",
            hint=f"shards are {file_suffixes(shard_formats)} files",
        )
    raise DataError(
        f"{where}: cannot tell the format of shard {path} from its extension {path.suffix!r}",
        hint=f"shards are {file_suffixes(shard_formats)} files; or set `format:`",
    )


def _check_description(section: SourceSection, where: str, labels: bool) -> None:
    described = section.features
    if not isinstance(described, dict) or not described:
        raise DataError(
            f"{where}: TFRecord records need a `features:` description: name -> {{dtype, shape}}",
            hint="e.g. features: {x: {dtype: float32, shape: [28, 28]}, y: {dtype: int64}}",
        )
    roles = [("x", section.x)] + ([("y", section.y)] if labels else [])
    for role, name in roles:
        if name not in described:
            hint = did_you_mean(str(name), described) or f"described features: {', '.join(described)}"
            raise DataError(f"{where}.{role}: {name!r} is not among the described features", hint=hint)


def _check_alike(shard: Shard, first: Shard | None, where: str) -> None:
    if first is None:
        return
    for what, mine, theirs in (
        ("samples of shape", shard.sample_shape, first.sample_shape),
        ("inputs of dtype", shard.x_dtype, first.x_dtype),
        ("labels of dtype", shard.y_dtype, first.y_dtype),
        ("labels of shape", shard.y_shape, first.y_shape),
    ):
        if mine != theirs:
            raise DataError(
                f"{where}: shard {shard.path} holds {what} {mine}, but the first shard, {first.path}, holds {theirs}",
                hint="every shard of a source must hold samples of one shape and dtype",
            )


def _npz_header(path: Path, stream: Stream) -> Shard:
    npz_header = stream.readers.npz_header
    section, where = stream.section, stream.where
    with archives.open_archive(path, where) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        x_shape, x_dtype = npz_header(archive, section.x, members, path, where, "x")
        y_shape, y_dtype = (None, None)
        if stream.with_labels and section.y is not None:
            y_shape, y_dtype = npz_header(archive, section.y, members, path, where, "y")
        _check_rows(path, x_shape, y_shape, where)
        x_raw = _member_layout(archive, members[section.x], path, x_shape[0], where)
        y_raw = _member_layout(archive, members[section.y], path, x_shape[0], where) if section.y and y_shape else None
    raw = (x_raw, y_raw) if x_raw and (y_raw or not y_shape) else None
    open_bytes = math.prod(x_shape) * np.dtype(x_dtype).itemsize * 2 + (math.prod(y_shape or ()) * 8)
    return Shard(
        path, "npz", x_shape[0], tuple(x_shape[1:]), x_dtype, y_dtype, tuple((y_shape or ())[1:]), open_bytes, raw
    )


def _member_layout(archive: zipfile.ZipFile, member: str, path: Path, count: int, where: str) -> RawArray | None:
    """Where the samples of an uncompressed .npz member lie in the file (None when it is compressed)."""
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open_input(path, where, limit=None) as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        return _npy_layout(handle, count, os.fstat(handle.fileno()).st_size)


def _npy_layout(handle, count: int, file_size: int) -> RawArray | None:
    """Where the ``count`` samples of the .npy array at the handle's position lie, one record each (None when
    they cannot be read as fixed-length records: Fortran order, a dtype TensorFlow cannot decode)."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        return None
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read_header(handle, max_header_size=1 << 16)
    kind = f"{dtype.kind}{dtype.itemsize}"
    if fortran or dtype.fields is not None or kind not in DECODABLE:
        return None
    offset = handle.tell()
    record = math.prod(shape[1:]) * dtype.itemsize
    footer = file_size - offset - count * record
    if record == 0 or footer < 0:
        return None
    return RawArray(offset, record, dtype.str)


def _check_rows(path: Path, x_shape: tuple, y_shape: tuple | None, where: str) -> None:
    if len(x_shape) == 0:
        raise DataError(f"{where}: x in {path} is a single value, not an array of samples")
    if y_shape is not None and (len(y_shape) == 0 or y_shape[0] != x_shape[0]):
        raise DataError(
            f"{where}: x and y in {path} have different lengths",
            hint="each sample needs exactly one label",
        )


def _npy_header(path: Path, stream: Stream) -> Shard:
    if stream.with_labels:
        raise DataError(
            f"{stream.where}: .npy shards hold inputs only, but labels are needed here",
            hint="use .npz shards with arrays x and y",
        )
    with open_input(path, stream.where, limit=None) as handle:
        size = os.fstat(handle.fileno()).st_size
        shape, dtype = archives.check_npy_header(handle, size, stream.where, str(path))
        _check_rows(path, tuple(shape), None, stream.where)
        handle.seek(0)
        x_raw = _npy_layout(handle, shape[0], size)
    raw = (x_raw, None) if x_raw else None
    open_bytes = CHUNK_ROWS * math.prod(shape[1:]) * 8
    return Shard(path, "npy", shape[0], tuple(shape[1:]), dtype, None, (), open_bytes, raw)


def _csv_header(path: Path, stream: Stream) -> Shard:
    features, label, rows = stream.readers.csv_columns(
        path, stream.section, stream.where, want_labels=stream.with_labels
    )
    open_bytes = rows * (len(features) + 1) * 8 * 2
    y_dtype = "float64" if stream.with_labels and label is not None else None
    return Shard(path, "csv", rows, (len(features),), "float64", y_dtype, (), open_bytes)


def _tfrecord_header(path: Path, stream: Stream) -> Shard:
    described, y_name = stream.section.features, stream.section.y
    assert isinstance(described, dict), "open_stream refuses a TFRecord source without its features"
    x, y = described[stream.section.x], described[y_name] if stream.with_labels and y_name is not None else None
    count = count_records(path, stream)
    if count:  # a description that does not fit the records is named before training starts
        parse_records([next(records(path, stream, 0))], 0, path, stream)
    values = math.prod(x.shape) + (math.prod(y.shape) if y else 0)
    open_bytes = 2 * READ_BUFFER + RECORD_BLOCK * values * 8  # read buffers, a block of records
    return Shard(
        path,
        "tfrecord",
        count,
        tuple(x.shape),
        x.dtype,
        y.dtype if y else None,
        tuple(y.shape) if y else (),
        open_bytes,
    )


_HEADERS = {"npz": _npz_header, "npy": _npy_header, "csv": _csv_header, "tfrecord": _tfrecord_header}
