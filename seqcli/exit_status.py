"""The exit statuses of ``seq``, in one table (httpie's ``ExitStatus``).

The CLI maps what happened to one of these; core code raises errors and never picks a status. The
table has no dependencies, so the one place outside the CLI that must exit by itself (training's
second Ctrl-C, which cannot wait for an exception to unwind) can use it too."""

from __future__ import annotations

import enum
import signal


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # the input: a spec, data, a model or an output path the user gave is wrong (a SeqError)
    USAGE = 2  # click's status for bad command-line usage
    ENVIRONMENT = 3  # the machine: a missing optional package or program, a disk that cannot be written, a busy run
    INTERNAL = 4  # a bug in seq: an exception it did not expect
    SIGINT = 128 + signal.SIGINT  # 130: Ctrl-C
    SIGTERM = 128 + signal.SIGTERM  # 143: killed by the scheduler, or kill

    @classmethod
    def for_signal(cls, signum: int) -> ExitStatus:
        """The status for a process stopped by ``signum`` (128 + the signal, as shells report it); SIGINT's
        for a signal the table does not list."""
        try:
            return cls(128 + signum)
        except ValueError:
            return cls.SIGINT
