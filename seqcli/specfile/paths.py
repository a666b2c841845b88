"""Which files a spec may read: the one place that rule lives.

In CI, specs come from pull requests, so every spec value that names a file (:func:`file_fields`: layer
arguments Keras reads as files, ``Model: {path}``, a base's ``weights``, ``data:`` sources,
``transfer.weights``) is confined. Resolved against the spec's folder with symlinks followed, it must
stay inside that folder, or inside a folder the user allows with ``--allow-path DIR`` (repeatable) or
``SEQ_ALLOW_PATH`` (folders separated by ``os.pathsep``). It must not be a URL, a FIFO, a device or a
socket, and it must be under a size cap: :data:`LAYER_FILE_CAP` for files a layer reads whole
(vocabularies), :data:`DATA_FILE_CAP` for data, weights and saved models.

What the user typed on the command line is the user's own choice and is not confined: ``--data``,
``--weights``, a RUN directory (and the spec it recorded), and values set with ``--set``. It is still
judged by kind and size: ``--set ...vocabulary=/dev/zero`` is refused. The rules themselves live in the
one door, :func:`seqcli.inputs.open_input`; this module finds the values they apply to.
"""

from __future__ import annotations

import copy
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqcli.data.formats import is_dataset_name
from seqcli.errors import Problem
from seqcli.files import is_pattern, matching_sources, pattern_folder, resolve_path
from seqcli.inputs import ALLOW_PATH_ENV, URL, allowed_roots, confinement_problem, inside, kind_of
from seqcli.specfile.yamlload import Document, PathKey

MIB = 1 << 20
LAYER_FILE_CAP = 64 * MIB  # vocabularies and other files a layer reads whole, in memory
DATA_FILE_CAP = 16 * 1024 * MIB  # data sources, weights, saved models
ALLOW_HINT = (
    "a spec reads files inside its own folder only; move the file there, or allow a folder "
    f"with --allow-path DIR (or {ALLOW_PATH_ENV} in CI)"
)


@dataclass(frozen=True)
class FileField:
    """A spec value that names a file: where it is, what it says, its size cap."""

    path: PathKey
    value: str
    cap: int
    directory_ok: bool = False  # an image folder is a data source
    pattern: bool = False  # a glob of data shards: every file it matches is read

    def files(self, base_dir: Path) -> list[Path]:
        """The files this value names: the one it names, or every match of a glob (sorted; image folders when
        it matches folders only)."""
        if not self.pattern or not is_pattern(self.value, base_dir):
            return [resolve_path(self.value, base_dir)]
        try:
            return matching_sources(self.value, base_dir)
        except ValueError:
            return []


def is_file_argument(key: Any, value: Any) -> bool:
    """Whether a layer argument names a file Keras would read: ``vocabulary``, ``*path``, ``*_file``,
    ``file``, and ``weights`` other than ``imagenet``; only string values are file names."""
    if not isinstance(key, str) or not isinstance(value, str):
        return False
    if key == "weights":
        return value != "imagenet"
    return key in ("vocabulary", "file") or key.endswith(("path", "_file"))


def file_fields(data: Any) -> list[FileField]:
    """Every value of a spec's plain data that names a file."""
    if not isinstance(data, dict):
        return []
    fields = []
    if isinstance(data.get("layers"), list):
        for index, entry in enumerate(data["layers"]):
            fields += layer_files(entry, ("layers", index))
    if isinstance(data.get("data"), dict):
        fields += _data_files(data["data"])
    transfer = data.get("transfer")
    if isinstance(transfer, dict) and isinstance(transfer.get("weights"), str):
        fields.append(FileField(("transfer", "weights"), transfer["weights"], DATA_FILE_CAP))
    return fields


def absolute_file_fields(data: dict, base_dir: Path) -> dict:
    """A copy of a spec's plain data with every file it names (:func:`file_fields`) made absolute and
    resolved: for a copy of the spec kept elsewhere, and for comparing a spec with a checkpoint's record."""
    data = copy.deepcopy(data)
    for field in file_fields(data):
        parent = data
        for key in field.path[:-1]:
            parent = parent[key]
        parent[field.path[-1]] = str(resolve_path(field.value, base_dir).resolve())
    return data


def layer_files(value: Any, path: PathKey) -> list[FileField]:
    """The file-valued arguments in a layer entry (nested layers included)."""
    if isinstance(value, list):
        return [f for index, item in enumerate(value) for f in layer_files(item, path + (index,))]
    if not isinstance(value, dict):
        return []
    fields = []
    for key, item in value.items():
        if is_file_argument(key, item):
            cap = DATA_FILE_CAP if key in ("weights", "path") else LAYER_FILE_CAP
            fields.append(FileField(path + (key,), item, cap))
        else:
            fields += layer_files(item, path + (key,))
    return fields


def _data_files(section: dict) -> list[FileField]:
    fields = []
    for key in ("train", "validation", "test"):
        source = section.get(key)
        if isinstance(source, str) and not is_dataset_name(source):
            fields.append(_data_field(("data", key), source))
        elif isinstance(source, list):
            fields += _shard_fields(("data", key), source)
        elif isinstance(source, dict):
            if isinstance(source.get("path"), str):
                fields.append(_data_field(("data", key, "path"), source["path"]))
            elif isinstance(source.get("path"), list):
                fields += _shard_fields(("data", key, "path"), source["path"])
            if isinstance(source.get("y"), str) and source["y"].lower().endswith(".npy"):
                fields.append(FileField(("data", key, "y"), source["y"], DATA_FILE_CAP))
    return fields


def _data_field(path: PathKey, value: str) -> FileField:
    return FileField(path, value, DATA_FILE_CAP, directory_ok=True, pattern=is_pattern(value))


def _shard_fields(path: PathKey, values: list) -> list[FileField]:
    """A list of shard files: each one a file field (a glob in the list is one too)."""
    return [_data_field(path + (index,), value) for index, value in enumerate(values) if isinstance(value, str)]


def confine(
    value: str, base_dir: Path, *, cap: int, directory_ok: bool = False, roots: Sequence[Path] | None = None
) -> str | None:
    """Why a spec may not read the file ``value`` names (None when it may), as the door
    (:func:`seqcli.inputs.confinement_problem`) judges it; ``roots=()`` judges kind and size alone (a value
    the user set on the command line). Never opens the file."""
    roots = allowed_roots(base_dir) if roots is None else roots
    joined = resolve_path(value, base_dir)
    if roots or URL.match(value):
        problem = confinement_problem(value, joined, roots, origin="the spec's folder")
        if problem:
            return problem.replace("seq reads local files only", "a spec reads local files only")
    return _kind_problem(value, joined.resolve(), cap, directory_ok)


def confine_pattern(value: str, base_dir: Path, *, cap: int, roots: Sequence[Path]) -> tuple[str, str] | None:
    """Why a spec may not read the files a glob matches, with a hint (None when it may): the folder the
    glob searches and every file (or image folder, when it matches folders only) it matches are confined as
    one file name is (``roots=()``: kind and size alone), and it must match something."""
    if URL.match(value):
        return f"{value!r} is a URL; a spec reads local files only", "download the files into the spec's folder"
    folder = pattern_folder(value, base_dir)
    if roots and not inside(folder.resolve(), roots):
        return f"{value!r} searches {folder}, outside the spec's folder", ALLOW_HINT
    try:
        matches = matching_sources(value, base_dir)
    except ValueError as error:
        return f"{value!r} {error}", "name fewer, larger shards"
    if not matches:
        return (
            f"{value!r} matches no file or folder (searched from {Path(base_dir).resolve()})",
            "check the pattern; it is relative to the spec's folder, and * does not match a leading dot",
        )
    for match in matches:
        if roots and not inside(match.resolve(), roots):
            return f"{value!r} matches {match}, a symbolic link that leads out of the spec's folder", ALLOW_HINT
        problem = _kind_problem(str(match), match.resolve(), cap, directory_ok=True)
        if problem:
            return f"{value!r} matches {problem}", "remove the file from the folder, or narrow the pattern"
    return None


def _kind_problem(value: str, resolved: Path, cap: int, directory_ok: bool) -> str | None:
    try:
        info = resolved.stat()
    except OSError:
        return None  # a missing file is reported by the checks that need it
    if stat.S_ISDIR(info.st_mode):
        return None if directory_ok else f"{value!r} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{value!r} is {kind_of(info.st_mode)}, not a regular file"
    if info.st_size > cap:
        what = "files a layer reads" if cap == LAYER_FILE_CAP else "data, weights and model files"
        return f"{value!r} is {info.st_size:,} bytes, over the {cap // MIB:,} MiB cap for {what}"
    return None


def path_problems(document: Document, base_dir: Path) -> tuple[list[Problem], set[PathKey]]:
    """Every file-valued spec value the spec may not read, as positioned problems, and their paths.
    Values set with ``--set`` are the user's own: not confined, but still a regular file within its cap."""
    roots = allowed_roots(base_dir)
    problems, refused = [], set()
    for field in file_fields(document.data):
        own = _from_command_line(document, field.path)
        if field.pattern and is_pattern(field.value, base_dir):
            found = confine_pattern(field.value, base_dir, cap=field.cap, roots=() if own else roots)
            message, hint = found if found else (None, None)
        else:
            message = confine(
                field.value, base_dir, cap=field.cap, directory_ok=field.directory_ok, roots=() if own else roots
            )
            hint = "download the file into the spec's folder" if URL.match(field.value) else ALLOW_HINT
        if message:
            problems.append(document.problem(field.path, message, None if own else hint))
            refused.add(field.path)
    return problems, refused


def _from_command_line(document: Document, path: PathKey) -> bool:
    return any(tuple(path[:depth]) in document.overridden for depth in range(1, len(path) + 1))
