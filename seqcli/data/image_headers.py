"""An image's dimensions from its header, read before the image is decoded, so that what decoding would take
is priced against the memory budget first: PNG (IHDR), GIF (logical screen), BMP (the DIB header) and JPEG
(the first start-of-frame segment, found by walking the segments, however many come first).

Pure Python on a file object: no TensorFlow, nothing decoded.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8"
GIFS = (b"GIF87a", b"GIF89a")
BMP = b"BM"
# Start-of-frame markers: every JPEG coding process (baseline, progressive, lossless, arithmetic).
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_BARE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # markers without a length (TEM, RSTn)
JPEG_MAX_SEGMENTS = 4096  # more segments before the frame's header than any real file holds


class HeaderError(ValueError):
    """A header that says it is one of the formats but cannot be read as one; the text names the format."""


def image_format(head: bytes) -> str | None:
    """``png``, ``jpeg``, ``gif`` or ``bmp`` from a file's first bytes; None for anything else."""
    if head.startswith(PNG):
        return "png"
    if head.startswith(JPEG):
        return "jpeg"
    if head.startswith(GIFS):
        return "gif"
    if head.startswith(BMP):
        return "bmp"
    return None


def image_dimensions(handle: BinaryIO) -> tuple[str, int, int] | None:
    """``(format, width, height)`` of the image ``handle`` holds (read from its start); None when its first
    bytes are not one of the formats; HeaderError when they are but its header is damaged."""
    head = handle.read(32)
    fmt = image_format(head)
    if fmt is None:
        return None
    reader = {"png": _png, "gif": _gif, "bmp": _bmp}.get(fmt)
    width, height = reader(head) if reader else _jpeg(handle)
    if width <= 0 or height <= 0:
        raise HeaderError(f"its {fmt.upper()} header gives no size")
    return fmt, width, height


def _png(head: bytes) -> tuple[int, int]:
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise HeaderError("its PNG header is damaged (no IHDR chunk first)")
    return struct.unpack(">II", head[16:24])


def _gif(head: bytes) -> tuple[int, int]:
    if len(head) < 10:
        raise HeaderError("its GIF header is cut short")
    return struct.unpack("<HH", head[6:10])


def _bmp(head: bytes) -> tuple[int, int]:
    if len(head) < 26:
        raise HeaderError("its BMP header is cut short")
    if struct.unpack("<I", head[14:18])[0] == 12:  # the old OS/2 header: 16-bit sizes
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)  # a negative height is a top-down bitmap


def _jpeg(handle: BinaryIO) -> tuple[int, int]:
    """The size in the first start-of-frame segment, skipping every segment before it by its length."""
    handle.seek(2)
    for _ in range(JPEG_MAX_SEGMENTS):
        marker = _jpeg_marker(handle)
        if marker in JPEG_BARE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        length = _read_exactly(handle, 2)
        size = struct.unpack(">H", length)[0]
        if size < 2:
            break
        if marker in JPEG_FRAMES:
            frame = _read_exactly(handle, 5)
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        handle.seek(size - 2, 1)
    raise HeaderError("its JPEG header is damaged (no frame header before the image data)")


def _jpeg_marker(handle: BinaryIO) -> int:
    byte = _read_exactly(handle, 1)
    if byte != b"\xff":
        raise HeaderError("its JPEG header is damaged (a segment does not start with a marker)")
    while byte == b"\xff":  # markers may be padded with any number of 0xFF bytes
        byte = _read_exactly(handle, 1)
    return byte[0]


def _read_exactly(handle: BinaryIO, count: int) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise HeaderError("its JPEG header is cut short")
    return data
