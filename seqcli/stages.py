"""Where a command's wall time goes: named stages, timed when someone listens, free when nobody does.

Code marks its costly steps with :func:`stage` (``with stage("model: build"): ...``). A listener, installed
with :func:`listen`, receives one :class:`StageTime` per finished stage, from whichever thread ran it (the
checkpoint writer's stages arrive from the writer thread). :class:`StageTotals` is the listener benches use:
seconds and calls per stage. Setting ``SEQ_PROFILE`` when a command starts prints its totals on stderr as
the command ends (``SEQ_PROFILE=FILE.json`` writes them to that file instead); see :func:`profile_from_environment`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seqcli.errors import terminal_safe

ENVIRONMENT = "SEQ_PROFILE"


@dataclass(frozen=True)
class StageTime:
    """One finished stage: its name, when it started (``time.perf_counter``), how long it took and the
    name of the thread that ran it."""

    name: str
    started: float
    seconds: float
    thread: str


Listener = Callable[[StageTime], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as the stage ``name`` for every listener (also when it raises); nothing when none listens."""
    if not _listeners:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        record = StageTime(name, started, time.perf_counter() - started, threading.current_thread().name)
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(record)


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[Listener]:
    """``listener`` receives every stage that finishes inside the block, from any thread."""
    with _lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _lock:
            _listeners.remove(listener)


@dataclass
class StageTotals:
    """A listener that adds up each stage's seconds and calls, and notes the threads that ran it."""

    totals: dict[str, dict] = field(default_factory=dict)

    def __call__(self, record: StageTime) -> None:
        with _lock:
            item = self.totals.setdefault(record.name, {"seconds": 0.0, "calls": 0, "threads": []})
            item["seconds"] += record.seconds
            item["calls"] += 1
            if record.thread not in item["threads"]:
                item["threads"].append(record.thread)

    def as_dict(self) -> dict[str, dict]:
        """Stage name -> ``{"seconds", "calls", "threads"}``, in the order the stages first finished."""
        with _lock:
            return {name: {**item, "seconds": round(item["seconds"], 4)} for name, item in self.totals.items()}

    def table(self, wall_seconds: float | None = None) -> str:
        """The totals as text, one stage a line; with ``wall_seconds``, the command's own wall time last."""
        lines = [f"{'stage':44} {'seconds':>9} {'calls':>6}  thread"]
        for name, item in self.as_dict().items():
            lines.append(f"{name:44} {item['seconds']:9.3f} {item['calls']:6d}  {', '.join(item['threads'])}")
        if wall_seconds is not None:
            lines.append(f"{'the whole command (wall)':44} {wall_seconds:9.3f}")
        return "\n".join(lines)


@contextlib.contextmanager
def profile_from_environment() -> Iterator[None]:
    """With ``SEQ_PROFILE`` set, the stages of the block added up and reported at its end: on stderr as a
    table, or, when the value ends in ``.json``, written to that file as ``{"stages": ..., "wall_seconds": ...}``
    (a bench's hook into a whole ``seq`` process). Without it, nothing is timed."""
    target = os.environ.get(ENVIRONMENT)
    if not target:
        yield
        return
    totals, started = StageTotals(), time.perf_counter()
    try:
        with listen(totals):
            yield
    finally:
        wall = time.perf_counter() - started
        if target.endswith(".json"):
            document = {"stages": totals.as_dict(), "wall_seconds": round(wall, 4)}
            try:
                _write_whole(Path(target), json.dumps(document, indent=2) + "\n")
            except OSError as error:  # the command's own result stands; the profile is a note
                print(terminal_safe(f"note: {ENVIRONMENT}: cannot write {target}: {error.strerror}"), file=sys.stderr)
        else:
            print(totals.table(wall), file=sys.stderr)


def _write_whole(target: Path, text: str) -> None:
    """``text`` to ``target``, never half written (seqcli.files times its writes with stages: it cannot serve)."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
