"""TFRecord files of ``tf.train.Example`` records, for streamed sources (:mod:`seqcli.data.streams`): records read
with their checksums verified and counted up front, parsed a chunk at a time against the source's ``features``
description; a truncated, corrupted or mismatched record is a DataError naming the file and the record's number.

``source`` below is a :class:`~seqcli.data.streams.Stream` (its ``where``, ``compression``, ``section``, ``labels``
and ``parse_features()``)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqcli.data.arrays import DataError
from seqcli.errors import clean_tensorflow_message
from seqcli.inputs import check_input, open_input
from seqcli.keras_env import import_tensorflow

COMPRESSIONS = {"GZIP": "GZIP", "ZLIB": "ZLIB", "none": "", None: ""}


def records(path: Path, source, start: int) -> Iterator[bytes]:
    """The records of a TFRecord file from record ``start`` (0-based), their checksums verified."""
    tf = import_tensorflow()

    options = tf.io.TFRecordOptions(compression_type=COMPRESSIONS[source.compression])
    check_input(path, source.where, limit=None)  # the door; TensorFlow opens the file itself
    read = 0  # records read whole: an error is about the next one
    try:
        for record in tf.compat.v1.io.tf_record_iterator(str(path), options):
            read += 1
            if read > start:
                yield record
    except tf.errors.OpError as error:
        raise damaged(path, read + 1, error.message, source.where) from None


def damaged(path: Path, number: int, detail: str, where: str) -> DataError:
    text = clean_tensorflow_message(detail)
    kind = "is truncated" if "truncated" in text.lower() else "is damaged"
    return DataError(
        f"{where}: record {number} of {path} {kind} ({text})",
        hint="the file changed after it was written (an interrupted copy, a full disk); write or copy it again",
    )


def parse_records(batch: list[bytes], first: int, path: Path, source) -> tuple[np.ndarray, np.ndarray | None]:
    """A chunk of serialized ``tf.train.Example`` records as ``(x, y)``; a record that does not match the
    description is named by its number."""
    tf = import_tensorflow()

    try:
        parsed = tf.io.parse_example(tf.constant(batch), source.parse_features())
    except tf.errors.InvalidArgumentError as error:
        index, detail = _first_unparsable(batch, source)
        detail = detail or clean_tensorflow_message(error.message)
        raise DataError(
            f"{source.where}: record {first + index + 1} of {path} does not match the features description: {detail}",
            hint=f"describe the records as they are written under `{source.where}.features`: "
            "each feature's dtype (float32, int64) and shape",
        ) from None
    x = parsed[source.section.x].numpy()
    y = parsed[source.section.y].numpy() if source.with_labels else None
    return x, y


def _first_unparsable(batch: list[bytes], source) -> tuple[int, str | None]:
    tf = import_tensorflow()

    for index, record in enumerate(batch):
        try:
            tf.io.parse_example(tf.constant([record]), source.parse_features())
        except tf.errors.InvalidArgumentError as error:
            return index, clean_tensorflow_message(error.message)
    return 0, None


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c_table() -> list[int]:
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (0x82F63B78 if value & 1 else 0)
        table.append(value)
    return table


_CRC32C_TABLE = _crc32c_table()


def count_records(path: Path, source) -> int:
    """Records in a TFRecord file. Uncompressed: each record's length field is read (and its checksum checked)
    and its data skipped; compressed: every record is read."""
    if COMPRESSIONS[source.compression]:
        return sum(1 for _ in records(path, source, 0))
    count, offset = 0, 0
    with open_input(path, source.where, limit=None) as handle:
        size = os.fstat(handle.fileno()).st_size
        while offset < size:
            header = handle.read(12)
            if len(header) < 12:
                raise damaged(path, count + 1, "truncated record length", source.where)
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != _masked_crc32c(header[:8]):
                raise damaged(path, count + 1, "corrupted record length: its checksum does not match", source.where)
            offset += 12 + length + 4
            if offset > size:
                raise damaged(path, count + 1, "truncated record: the file ends inside it", source.where)
            handle.seek(offset)
            count += 1
    return count
