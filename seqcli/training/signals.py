"""SIGINT and SIGTERM during training: a checkpoint at the next step boundary, then a clean stop.

A second signal exits at once, with the shell's status for a signal (128 + its number: 130 for
SIGINT, 143 for SIGTERM), since nothing is left to finish. Before training starts a signal stops
right away, with nothing to save.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from seqcli.errors import Interrupted


class TrainingInterrupted(Interrupted):
    """SIGINT or SIGTERM stopped training. ``checkpoint`` is the file saved when training had started (None
    when it had not); ``output`` is the run directory to resume."""

    def __init__(self, signum: int, message: str, checkpoint: Path | None = None, output: Path | None = None):
        super().__init__(signum, message, output)
        self.checkpoint = checkpoint

    @property
    def resumable(self) -> bool:
        """Only a run that saved a checkpoint has something to resume."""
        return self.checkpoint is not None


class SignalGuard:
    """SIGINT and SIGTERM during training ask it to stop at the next step boundary with a checkpoint;
    a second signal exits at once. Before training starts (``armed`` False) a signal stops right away."""

    def __init__(self):
        self.received: int | None = None
        self.armed = False
        self._previous: dict = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def stop_requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            os.write(2, f"\n{name} again: exiting at once, without a checkpoint\n".encode())
            os._exit(128 + signum)
        self.received = signum
        if not self.armed:
            raise TrainingInterrupted(signum, f"{name}: stopped before training started; nothing was trained")
        os.write(2, f"\n{name}: saving a checkpoint after the current steps (again to exit at once)\n".encode())
