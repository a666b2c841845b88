"""The manifest: what seq wrote in a folder, so that ``--overwrite`` removes that and nothing else.

A folder seq fills (a run, a study, a features folder, a SavedModel) holds :data:`MANIFEST`, a JSON object:

- ``members``: each exact path (relative, ``/``-separated) seq wrote there, with its kind (``file`` or
  ``folder``) and, for a file, its size in bytes as seq left it. No pattern, no ``..``, no absolute path,
  never seq's own lock or manifest: a path seq cannot have written makes the whole manifest untrusted.
  A member folder that holds a manifest of its own (a study's trial, a transfer's phase) is judged by it.
- ``writing``: present while a command writes the folder (its name, process id and start time, in
  nanoseconds). A file changed after that time is the writer's own unfinished work; otherwise a file must
  have the size recorded for it.

:func:`judge` compares a manifest with the disk without following a link; :func:`remove_members` removes
members only when every entry of the folder is a member as recorded. Updates are serialised (a thread lock
and an OS lock on the folder itself), since the workers of a study record their trial folders in one manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.files import TEMPORARY_PREFIX, write_text_atomic

MANIFEST = ".seq-run.json"
LOCK = ".seq-lock"
PROBE = ".seq-write-test"
INTERNAL = (MANIFEST, LOCK, PROBE)
FORMAT = 2
MANIFEST_LIMIT = 4 << 20  # bytes; seq's manifests are a few kilobytes
MEMBER_LIMIT = 100_000
GLOB_CHARACTERS = frozenset("*?[]")
TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\d+)-")
RETIRED_SUFFIX = ".seq-replaced"
_UPDATES = threading.Lock()


class OutputRefused(SeqError):
    """An output that would replace or remove something seq did not write, or an input."""


class ManifestError(OutputRefused):
    """A manifest seq cannot trust: it does not parse, or claims a path seq cannot have written."""


@dataclass
class Member:
    kind: str  # "file" or "folder"
    size: int | None = None  # a file's size as seq left it; None while it is being written

    def as_dict(self) -> dict:
        return {"kind": self.kind} if self.size is None else {"kind": self.kind, "size": self.size}


@dataclass
class Manifest:
    writer: str
    members: dict[str, Member] = field(default_factory=dict)
    writing: dict | None = None  # {"by", "pid", "since_ns"} while a command writes the folder

    def text(self) -> str:
        data = {
            "format": FORMAT,
            "written_by": self.writer,
            **({"writing": self.writing} if self.writing else {}),
            "members": {path: member.as_dict() for path, member in self.members.items()},
        }
        return json.dumps(data, indent=1) + "\n"

    def written_since(self) -> int | None:
        return self.writing["since_ns"] if self.writing else None


# ----------------------------------------------------------------------------- what a member may be


def member_problem(path: str) -> str | None:
    """Why ``path`` cannot be a member seq wrote (None when it can): only an exact relative path below the
    folder, none of seq's own lock, manifest or temporary names."""
    if not isinstance(path, str) or not path:
        return "not a path"
    if path.startswith("/") or "\\" in path or "\x00" in path:
        return "not a relative path"
    if GLOB_CHARACTERS & set(path):
        return "a pattern, not an exact path"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "not a plain path below the folder"
        if part in INTERNAL or part.startswith(TEMPORARY_PREFIX) or part.endswith(RETIRED_SUFFIX):
            return "one of seq's own working files"
    return None


def _parse_member(path, value) -> Member:
    why = member_problem(path)
    if why is not None:
        raise ValueError(f"{_shown(path)} is {why}")
    if not isinstance(value, dict) or value.get("kind") not in ("file", "folder"):
        raise ValueError(f"{_shown(path)} has no kind 'file' or 'folder'")
    size = value.get("size")
    if size is not None and (value["kind"] != "file" or not isinstance(size, int) or isinstance(size, bool)):
        raise ValueError(f"{_shown(path)} has a size that is not a file's byte count")
    if size is not None and size < 0:
        raise ValueError(f"{_shown(path)} has a negative size")
    return Member(value["kind"], size)


def _shown(path) -> str:
    text = path if isinstance(path, str) else repr(path)
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


# ----------------------------------------------------------------------------- reading and writing


def read_manifest(folder: Path) -> Manifest | None:
    """``folder``'s manifest, or None when it has none. A manifest that is a link, too large, does not
    parse, is of an earlier format (members by pattern) or claims a path seq cannot have written is a
    :class:`ManifestError` naming the entry."""
    path = Path(folder) / MANIFEST
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _untrusted(path, f"it cannot be read ({error.strerror or error})") from error
    if not stat.S_ISREG(info.st_mode):
        raise _untrusted(path, "it is not a plain file")
    if info.st_size > MANIFEST_LIMIT:
        raise _untrusted(path, f"it holds {info.st_size:,} bytes, seq writes a few thousand")
    try:
        data = json.loads(path.read_bytes())
        return _parse_manifest(data)
    except json.JSONDecodeError as error:
        raise _untrusted(path, f"invalid JSON at line {error.lineno}, column {error.colno}") from error
    except (ValueError, RecursionError, TypeError) as error:
        raise _untrusted(path, str(error) if isinstance(error, ValueError) else type(error).__name__) from error
    except OSError as error:
        raise _untrusted(path, f"it cannot be read ({error.strerror or error})") from error


def _parse_manifest(data) -> Manifest:
    if isinstance(data, dict) and isinstance(data.get("members"), list):
        raise ValueError("it lists members by pattern, as an earlier seq wrote it")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("members"), dict):
        raise ValueError("it is not a manifest seq writes (a JSON object with format 2 and its members)")
    if len(data["members"]) > MEMBER_LIMIT:
        raise ValueError(f"it lists more than {MEMBER_LIMIT:,} members")
    members = {path: _parse_member(path, value) for path, value in data["members"].items()}
    for path in members:
        parent = path.rpartition("/")[0]
        if parent and (parent not in members or members[parent].kind != "folder"):
            raise ValueError(f"{_shown(path)} lies in a folder the manifest does not list")
    writing = data.get("writing")
    if writing is not None and not (isinstance(writing, dict) and isinstance(writing.get("since_ns"), int)):
        raise ValueError("its 'writing' entry has no start time")
    return Manifest(str(data.get("written_by", "seq")), members, writing)


def _untrusted(path: Path, why: str) -> ManifestError:
    return ManifestError(
        f"cannot trust {path}: {why}; nothing was removed",
        hint=f"seq removes only what its manifest lists exactly; move what you want to keep out of {path.parent} "
        "and delete the folder yourself, or choose another --output",
    )


@contextlib.contextmanager
def updating(folder: Path, writer: str) -> Iterator[Manifest]:
    """The folder's manifest (a new one when it has none) to change in the block; written back atomically
    at its end. One update at a time, across threads and processes."""
    with _UPDATES, _folder_lock(folder):
        manifest = read_manifest(folder) or Manifest(writer)
        yield manifest
        write_text_atomic(Path(folder) / MANIFEST, manifest.text())


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An OS lock on the folder itself (not on its lock file, which a writer holds for its whole run)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_members(folder: Path, members: Iterable[str], writer: str) -> None:
    """Claim ``members`` before they are written: ``name`` a file, ``name/`` a folder (its parents are
    claimed as folders too). A kill between the two leaves a claim of a file not yet there, never a file
    the manifest does not claim. Every path is checked: a pattern or ``..`` is refused, not recorded."""
    with updating(folder, writer) as manifest:
        for name in members:
            kind = "folder" if name.endswith("/") else "file"
            path = name.rstrip("/") if kind == "folder" else name
            why = member_problem(path)
            if why is not None:
                raise OutputRefused(f"seq cannot record {_shown(path)} in {folder}: it is {why}")
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in manifest.members or manifest.members[parent].kind != "folder":
                    manifest.members[parent] = Member("folder")
            known = manifest.members.get(path)
            if known is None or known.kind != kind:
                manifest.members[path] = Member(kind)


def open_writing(folder: Path, writer: str) -> None:
    """Mark the folder as being written by this process. The start of an earlier writer that never
    finished is kept: what it wrote is unfinished work too."""
    with updating(folder, writer) as manifest:
        since = manifest.written_since()
        now = time.time_ns()
        manifest.writing = {"by": writer, "pid": os.getpid(), "since_ns": now if since is None else min(since, now)}


def writing_here(folder: Path) -> bool:
    """Whether this process marked ``folder`` as being written (:func:`open_writing`) and has not sealed it."""
    with contextlib.suppress(ManifestError):
        manifest = read_manifest(folder)
        return manifest is not None and manifest.writing is not None and manifest.writing.get("pid") == os.getpid()
    return False


@contextlib.contextmanager
def writing(folder: Path, writer: str, members: Iterable[str] = ()) -> Iterator[None]:
    """Claim ``members`` and mark the folder as being written while the block runs; then record what is
    there as written (:func:`seal`), however the block ends."""
    record_members(folder, members, writer)
    open_writing(folder, writer)
    try:
        yield
    finally:
        if writing_here(folder):
            seal(folder, writer)


def seal(folder: Path, writer: str) -> None:
    """Record the size of every member file as it is now, forget members that are gone, and end the
    writing mark: from here on a member changed on disk makes ``--overwrite`` refuse."""
    with updating(folder, writer) as manifest:
        kept = {}
        for path, member in manifest.members.items():
            info = _lstat(Path(folder) / path)
            if info is None:
                continue
            if member.kind == "file" and stat.S_ISREG(info.st_mode):
                member = Member("file", info.st_size)
            kept[path] = member
        manifest.members, manifest.writing = kept, None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


# ----------------------------------------------------------------------------- the disk against the manifest


@dataclass
class Judgement:
    """What a folder holds besides its members (``foreign``) and members that are not as seq left them
    (``changed``): paths relative to the folder, folders ending in ``/``."""

    foreign: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # what removing would remove, deepest first
    nested: list[str] = field(default_factory=list)  # member folders with a manifest of their own

    def clean(self) -> bool:
        return not self.foreign and not self.changed


def judge(folder: Path, manifest: Manifest | None = None) -> Judgement:
    """Compare ``folder`` with its manifest (or ``manifest``), never following a link. Without a manifest
    every entry is foreign. An untrusted manifest, here or in a member folder, is a :class:`ManifestError`."""
    manifest = read_manifest(folder) if manifest is None else manifest
    judgement = Judgement()
    _judge(Path(folder), "", manifest or Manifest("none"), judgement)
    judgement.members.sort(key=lambda p: p.count("/"), reverse=True)
    return judgement


def _judge(folder: Path, prefix: str, manifest: Manifest, judgement: Judgement) -> None:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        relative = prefix + entry.name
        # seq's lock and probe anywhere (a member folder a killed command had just made holds its lock), the
        # folder's own manifest, and temporary files
        if entry.name in (LOCK, PROBE) or not prefix and entry.name == MANIFEST or TEMPORARY.match(entry.name):
            continue
        member = manifest.members.get(relative)
        is_folder = entry.is_dir(follow_symlinks=False)
        if member is None:
            judgement.foreign.append(relative + ("/" if is_folder else ""))
        elif member.kind == "folder":
            _judge_folder(Path(entry.path), relative, manifest, judgement, is_folder)
        elif not _as_written(entry, member, manifest):
            judgement.changed.append(relative + ("/" if is_folder else ""))
        else:
            judgement.members.append(relative)


def _judge_folder(path: Path, relative: str, manifest: Manifest, judgement: Judgement, is_folder: bool) -> None:
    if not is_folder:  # a file, or a link (to a folder or not), where seq made a folder
        judgement.changed.append(relative)
        return
    nested = read_manifest(path)
    if nested is None:
        _judge(path, relative + "/", manifest, judgement)
    else:
        inner = judge(path, nested)
        judgement.foreign += [f"{relative}/{p}" for p in inner.foreign]
        judgement.changed += [f"{relative}/{p}" for p in inner.changed]
        judgement.nested.append(relative)
    judgement.members.append(relative)


def _as_written(entry: os.DirEntry, member: Member, manifest: Manifest) -> bool:
    """A plain file (not a link) of the recorded size, or one written since the writing mark."""
    info = entry.stat(follow_symlinks=False)
    if not stat.S_ISREG(info.st_mode):
        return False
    since = manifest.written_since()
    return info.st_size == member.size or (since is not None and info.st_mtime_ns >= since)


def remove_members(folder: Path) -> None:
    """Remove what ``folder``'s manifest claims and nothing else, after checking every entry against it:
    anything else there, or a member not as seq left it, refuses before anything is removed. Member
    folders with their own manifest lose their members, manifest and lock too."""
    judgement = judge(folder)
    if not judgement.clean():
        raise refusal(folder, judgement, overwrite=True)
    _remove(Path(folder), judgement)
    with updating(folder, "seq") as manifest:
        manifest.members = {}


def _remove(folder: Path, judgement: Judgement) -> None:
    for relative in judgement.members:
        path = folder / relative
        if relative in judgement.nested:
            _remove(path, judge(path))
            with contextlib.suppress(FileNotFoundError):
                (path / MANIFEST).unlink()
        if path.is_dir() and not path.is_symlink():
            for name in (LOCK, PROBE):
                with contextlib.suppress(FileNotFoundError):
                    (path / name).unlink()
            with contextlib.suppress(OSError):
                path.rmdir()
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ----------------------------------------------------------------------------- messages

SHOWN = 8  # entries named in an error; the rest are counted


def refusal(folder: Path, judgement: Judgement, *, overwrite: bool) -> OutputRefused:
    """The error for a folder that holds what seq did not write, or members changed since it wrote them."""
    parts = []
    if judgement.foreign:
        parts.append(f"{listing(judgement.foreign)} that seq did not write")
    if judgement.changed:
        them = "it" if len(judgement.changed) == 1 else "them"
        parts.append(f"{listing(judgement.changed)} changed since seq wrote {them}")
    holds = " and ".join(parts)
    if overwrite:
        return OutputRefused(
            f"cannot overwrite {folder}: it holds {holds}; nothing was removed",
            hint="move those out of the folder, or choose another --output",
        )
    return OutputRefused(f"{folder} exists and holds {holds}", hint="choose another --output (a new or empty folder)")


def listing(entries: list[str]) -> str:
    shown = ", ".join(entries[:SHOWN])
    more = f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    return shown + more
