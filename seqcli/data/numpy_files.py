""".npz and .npy sources: every array's header (shape, dtype, size against the file and the memory budget) is
checked before the array is read; an .npz's arrays are named by ``x``, ``y`` and ``weights``, an .npy holds
inputs only (its labels an .npy named by ``y``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqcli import archives
from seqcli.data.arrays import Arrays, DataError, as_arrays, require_exists
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import resolve_path
from seqcli.inputs import UNREADABLE_HINT, open_input
from seqcli.shapes import check_sample_shape

if TYPE_CHECKING:  # annotations only: the section model's module reads the format table, which reads these
    from seqcli.data.formats import Opening
    from seqcli.specfile.sections import SourceSection


def open_npz(opening: Opening) -> Arrays:
    """An .npz source: arrays ``x`` and ``y`` (and ``weights`` when named) as one in-memory source."""
    section, path, where = opening.section, opening.path, opening.where
    x, y = read_npz(
        path,
        section,
        where,
        labels=opening.labels,
        want_labels=opening.want_labels,
        input_shape=opening.input_shape,
    )
    weights = npz_weights(path, section, where) if opening.want_labels else None
    return as_arrays(x, y, section.scale, path, where, weights)


def open_npy(opening: Opening) -> Arrays:
    """An .npy source of inputs; its labels, when wanted, from the .npy file ``y`` names."""
    section, path, where = opening.section, opening.path, opening.where
    x = read_npy(path, where, input_shape=opening.input_shape)
    y = None
    y_name = section.y if opening.want_labels else None
    if y_name is not None and _names_npy(y_name):
        y_path = resolve_path(y_name, opening.base_dir)
        require_exists(y_path, y_name, opening.base_dir, f"{where}.y")
        y = read_npy(y_path, where)
    return as_arrays(x, y, section.scale, path, where)


def npz_weights(path: Path, section: SourceSection, where: str) -> np.ndarray | None:
    """The .npz array ``section.weights`` names (its header checked first), or None when none is named."""
    if section.weights is None:
        return None
    with archives.open_archive(path, where) as archive:
        members = {name.removesuffix(".npy"): name for name in archive.namelist()}
        npz_header(archive, section.weights, members, path, f"{where}.weights", "weights")
        return _npz_array(archive, members[section.weights], path, where)


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


def read_npy(path: Path, where: str, *, input_shape: tuple | None = None, roots=None) -> np.ndarray:
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


def _names_npy(name: str) -> bool:
    return name.lower().endswith(".npy")
