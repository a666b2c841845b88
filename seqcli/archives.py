"""Zip archives (``.npz`` data, ``.keras`` models, checkpoints) and ``.npy`` arrays, priced before they are
read, every file opened through the door (:func:`seqcli.inputs.open_input`).

- :func:`open_archive` is the door to zip archives: every member's declared size is checked for consistency
  with its compressed size, and their total against the budget, before a byte is decompressed (zipfile never
  inflates past a member's declared size).
- :func:`read_model_config` reads a ``.keras`` config within :data:`CONFIG_LIMIT` and
  :func:`check_model_structure` bounds it (:data:`~seqcli.budget.MAX_LAYERS`,
  :data:`~seqcli.budget.MAX_NESTING`, :data:`MAX_JSON_DEPTH`) before Keras makes anything of it.
- :func:`check_npy_header`: an ``.npy`` array (a file or an archive member) whose header claims more bytes than
  the file holds, or than the budget, or a dtype TensorFlow cannot take, is refused before numpy allocates it.

Messages name the file, the member and the kind of problem, never bytes the file holds.
Imports no TensorFlow, Keras, rich or click.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from seqcli.budget import MAX_LAYERS, MAX_NESTING, LimitError, human_size, max_memory, over_budget_hint
from seqcli.inputs import UNREADABLE_HINT, check_data_file, check_input, open_input, read_into

CONFIG_LIMIT = 64 << 20  # a .keras config.json: the largest Keras applications need a few MB
MAX_JSON_DEPTH = 100  # a .keras config.json: the applications' configs nest about 14 levels deep
DEFLATE_MAX_RATIO = 1100  # deflate cannot expand data more than ~1032 times; a member claiming more lies


@contextlib.contextmanager
def open_archive(
    path: str | Path, what: str, *, limit: int | None = None, roots: Sequence[Path] | None = None
) -> Iterator[zipfile.ZipFile]:
    """The zip archive at ``path``, opened through the door, once its members' declared sizes are consistent
    and their total fits ``limit`` (default: the memory budget). ``what`` names the file in messages."""
    try:
        handle = open_input(path, what, roots=roots, limit=None)
    except OSError as error:
        raise LimitError(
            f"{what}: cannot read {path}: {error.strerror or error}", hint=UNREADABLE_HINT, where=what
        ) from None
    with handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as error:
            raise LimitError(
                f"{what}: {path} is not a readable zip archive: {_zip_problem(error)}",
                hint="the file is damaged or not what its extension says",
                where=what,
            ) from None
        with archive:
            check_members(archive, path, what, limit=max_memory() if limit is None else limit)
            try:
                yield archive
            except DAMAGED_MEMBER as error:  # a member read without open_member, which names it
                raise LimitError(
                    f"{what}: {path} is damaged: {_damage(error)}", hint=DAMAGED_HINT, where=what
                ) from None


def _zip_problem(error: Exception) -> str:
    """What is wrong with an archive, in zipfile's words (they name members, never their contents)."""
    if isinstance(error, EOFError):
        return "it ends too soon"
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)


DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error)  # a bad CRC-32, corrupt deflate data
DAMAGED_HINT = (
    "the file changed after it was written (an interrupted copy or download, a full disk, bad storage); "
    "write or copy it again"
)


@contextlib.contextmanager
def open_member(archive: zipfile.ZipFile, member: str, path, what: str) -> Iterator:
    """A member of an archive from :func:`open_archive`, opened for reading: a damaged member (a bad CRC-32,
    corrupt deflate data) is a LimitError that names the file and the member."""
    try:
        with archive.open(member) as handle:
            yield handle
    except DAMAGED_MEMBER as error:
        raise LimitError(
            f"{what}: member {member!r} of {path} is damaged: {_damage(error)}", hint=DAMAGED_HINT, where=what
        ) from None


def _damage(error: Exception) -> str:
    if isinstance(error, zlib.error):
        return f"its compressed data is corrupt ({error})"
    if "CRC" in str(error):
        return "its CRC-32 checksum does not match its data"
    return str(error)


def check_members(archive: zipfile.ZipFile, path, what: str, *, limit: int) -> int:
    """Total declared size of ``archive``'s members; LimitError for an impossible or too large one."""
    total = 0
    for info in archive.infolist():
        _check_member(info, path, what)
        total += info.file_size
    if total > limit:
        raise LimitError(
            f"{what}: {path} would take {human_size(total)} when read ({len(archive.infolist())} "
            f"members, {human_size(Path(path).stat().st_size)} on disk), over the memory limit",
            hint=over_budget_hint(),
            where=what,
        )
    return total


def _check_member(info: zipfile.ZipInfo, path, what: str) -> None:
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        problem = f"is stored uncompressed but declares {info.file_size:,} bytes for {info.compress_size:,}"
    elif info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 1024:
        problem = (
            f"declares {human_size(info.file_size)} from {human_size(info.compress_size)} compressed, "
            "more than deflate can produce"
        )
    else:
        return
    raise LimitError(
        f"{what}: {path}: member {info.filename!r} {problem}",
        hint="the archive is damaged or forged; write it again (numpy.savez, model.save)",
        where=what,
    )


def load_npz(path: str | Path, what: str):
    """The ``.npz`` at ``path`` (no pickles), read through the door once :func:`open_archive` has checked it:
    checkpoints. The returned archive owns the open file."""
    import numpy as np

    with open_archive(path, what):
        pass
    handle = open_input(path, what, limit=None)
    try:
        return np.lib.npyio.NpzFile(handle, own_fid=True, allow_pickle=False)
    except BaseException:
        handle.close()
        raise


def check_model_file(path: str | Path, what: str, *, roots: Sequence[Path] | None = None) -> None:
    """A ``.keras`` archive (or an ``.h5`` weights file) that can be read within the budget, through the door:
    the archive's members fit it and its ``config.json`` is at most :data:`CONFIG_LIMIT`."""
    path = Path(path)
    if path.suffix != ".keras":
        check_data_file(path, what, roots=roots)
        if path.is_file():
            check_input(path, what, roots=roots)
        return
    with open_archive(path, what, roots=roots) as archive:
        _check_config_size(archive, path, what)


def read_model_config(path: str | Path, what: str) -> dict:
    """The ``config.json`` of a ``.keras`` archive, read within :data:`CONFIG_LIMIT`; nothing else is read."""
    import json

    with open_archive(path, what) as archive:
        _check_config_size(archive, path, what)
        try:
            config = json.loads(archive.read("config.json"))
        except RecursionError:
            raise _too_deep(path, what) from None
        except KeyError:
            raise LimitError(
                f"{what}: {path} has no config.json", hint="a .keras file written by model.save holds one", where=what
            ) from None
        except (ValueError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise LimitError(f"{what}: cannot read the config.json of {path}: {error}", where=what) from None
    check_model_structure(config, path, what)
    return config


LAYER_SLOTS = frozenset({"layers", "layer", "backward_layer", "forward_layer", "cell", "cells"})


def check_model_structure(config, path: str | Path, what: str) -> None:
    """LimitError when a ``.keras`` config (parsed JSON, not yet given to Keras) nests deeper than
    :data:`MAX_JSON_DEPTH`, holds more than :data:`~seqcli.budget.MAX_LAYERS` layers, or layers in layers
    deeper than :data:`~seqcli.budget.MAX_NESTING`. One pass, without recursion."""
    layers = 0
    stack = [(config, 1, 0, True)]  # (value, JSON depth, layers around it, whether a layer may sit there)
    while stack:
        value, depth, nesting, slot = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(path, what)
        if isinstance(value, list):
            stack += [(item, depth + 1, nesting, slot) for item in value]
            continue
        if not isinstance(value, dict):
            continue
        if slot and "class_name" in value:  # a layer, or at the top the model itself
            layers, nesting = layers + (nesting > 0), nesting + 1
            _check_layers(layers, nesting, path, what)
        stack += [(item, depth + 1, nesting, key in LAYER_SLOTS) for key, item in value.items()]


def _check_layers(layers: int, nesting: int, path, what: str) -> None:
    if layers > MAX_LAYERS:
        problem = f"holds more than {MAX_LAYERS:,} layers, seq's limit for one model (nested layers included)"
    elif nesting > MAX_NESTING + 1:  # the model itself is the outermost level
        problem = f"nests layers in layers more than {MAX_NESTING} levels deep, seq's limit"
    else:
        return
    raise LimitError(
        f"{what}: the config.json of {path} {problem}",
        hint="seq loads and builds models within these limits only (see 'Bounded memory' in the README)",
        where=what,
    )


def _too_deep(path, what: str) -> LimitError:
    return LimitError(
        f"{what}: the config.json of {path} nests JSON more than {MAX_JSON_DEPTH} levels deep, seq's limit "
        "for a model's config",
        hint="model.save writes configs a few levels deep; the file is damaged or forged",
        where=what,
    )


def _check_config_size(archive: zipfile.ZipFile, path: Path, what: str) -> None:
    try:
        size = archive.getinfo("config.json").file_size
    except KeyError:
        return
    if size > CONFIG_LIMIT:
        raise LimitError(
            f"{what}: the config.json of {path} declares {human_size(size)}; a model's config "
            f"is at most {human_size(CONFIG_LIMIT)}",
            hint="the file is damaged or forged; save the model again with model.save",
            where=what,
        )


def check_npy_header(handle, available: int, where: str, label: str) -> tuple[tuple, str]:
    """Read an ``.npy`` header from ``handle`` (positioned at its start) and check that the array it
    declares fits in ``available`` bytes (what follows the header) and in the budget, in a dtype seq takes.
    Returns ``(shape, dtype text)``. ``label`` names the array in messages."""
    shape, _, dtype = _checked_npy_header(handle, available, where, label)
    return shape, str(dtype)


def read_npy(handle, available: int, where: str, label: str):
    """The ``.npy`` array ``handle`` holds (positioned at its start), its header checked as
    :func:`check_npy_header` does, its data read a chunk at a time into the array (an interrupt stops the
    read between chunks; nothing is read twice)."""
    import numpy as np

    shape, fortran, dtype = _checked_npy_header(handle, available, where, label)
    array = np.empty(tuple(reversed(shape)) if fortran else shape, dtype)
    read_into(handle, array, where=where, path=label)
    return array.T if fortran else array


def _checked_npy_header(handle, available: int, where: str, label: str):
    import numpy as np

    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(handle, max_header_size=1 << 16)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(handle, max_header_size=1 << 16)
        else:  # format 3.0 (utf-8 field names) has no public header reader
            shape, fortran, dtype = fmt._read_array_header(handle, version, max_header_size=1 << 16)
        offset = handle.tell()
    except (ValueError, OSError, SyntaxError, TypeError, EOFError) as error:
        raise LimitError(f"{where}: cannot read {label} as an .npy array: {_npy_problem(error)}", where=where) from None
    check_dtype(dtype, where, label)
    declared = math.prod(shape) * dtype.itemsize
    left = available - offset
    if declared > left:
        raise LimitError(
            f"{where}: {label} claims shape {tuple(shape)} of {dtype} ({human_size(declared)}), "
            f"but holds {human_size(max(left, 0))} of data",
            hint="the file is truncated or its header is wrong; write it again with numpy.save",
            where=where,
        )
    if declared > max_memory():
        raise LimitError(
            f"{where}: {label} holds {human_size(declared)} (shape {tuple(shape)} of {dtype}), over the memory limit",
            hint=over_budget_hint(),
            where=where,
        )
    return shape, fortran, dtype


def _npy_problem(error: Exception) -> str:
    """What is wrong with an ``.npy`` header in words of its own: numpy's messages quote the file's bytes."""
    text = str(error)
    if "magic string" in text or isinstance(error, EOFError):
        return "it does not start as an .npy file does"
    if "header" in text.lower() and "large" in text.lower():
        return "its header is longer than an .npy header may be"
    return "its header is not an .npy header"


def check_dtype(dtype, where: str, label: str) -> None:
    """Refuse an array dtype TensorFlow cannot take: extended precision, complex numbers, Python objects,
    records (structured), raw bytes, dates. Text is left to the reader that handles it."""
    kind = dtype.kind
    name = "longdouble (float128)" if kind == "f" and dtype.itemsize > 8 else str(dtype)
    if kind == "f" and dtype.itemsize > 8:
        problem, fix = f"{name} is not a dtype seq can train on", "convert it to float32 (or float64)"
    elif kind == "c":
        problem, fix = f"{name} (complex numbers) is not a dtype seq can train on", "split it into real arrays"
    elif dtype.hasobject:
        problem, fix = "it holds Python objects, which seq does not load", "save plain numbers with numpy.save"
    elif dtype.fields is not None or kind == "V":
        problem, fix = "it holds records (a structured dtype), not numbers", "save each field as its own array"
    elif kind in "mM":
        problem, fix = f"{name} (dates or durations) is not a dtype seq can train on", "convert it to numbers"
    else:
        return
    raise LimitError(f"{where}: {label}: {problem}", hint=f"{fix}, e.g. array.astype('float32')", where=where)
