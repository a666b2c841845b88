"""User-facing errors.

Core code raises :class:`SeqError` (or a subclass); only ``cli.py`` turns them into
exit statuses (:class:`seqcli.exit_status.ExitStatus`). A :class:`Problem` points into a spec
file: ``FILE:LINE:COL: PATH: message``, then the source line with a caret, then a hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from seqcli.display import shown

SOURCE_WINDOW = 80  # characters of a long source line shown around the caret


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, at a position in its file.

    ``line`` and ``column`` are 1-based; either may be None when unknown.
    """

    message: str
    path: str = ""
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    file: str | None = None

    def location(self) -> str:
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def headline(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return terminal_safe(f"{self.location()}: {where}{self.message}")

    def as_dict(self) -> dict:
        return {
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


class SeqError(Exception):
    """An error the user can fix; shown without a traceback. ``kind`` says where the fix lies: ``input`` (the
    spec, data or paths given) or ``environment`` (the machine: packages, disk, another process)."""

    kind = "input"
    result: dict | None = None  # what the command found before it failed: its --format json document holds it

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return terminal_safe(text)


class MissingDependency(SeqError):
    """An optional package or program that a command needs is not installed."""

    kind = "environment"


class Interrupted(SeqError):
    """SIGINT or SIGTERM stopped a command that can be resumed (``signum`` sets the exit status). When it is
    ``resumable``, the command line sets ``resume_command`` to the command that continues the work in ``output``."""

    kind = "interrupted"

    def __init__(self, signum: int, message: str, output=None):
        super().__init__(message)
        self.signum = signum
        self.output = output
        self.resume_command: str | None = None

    @property
    def resumable(self) -> bool:
        return self.output is not None

    def render(self) -> str:
        text = f"interrupted: {self.message}"
        if self.resume_command:
            text += f"\nresume with:\n  {self.resume_command}"
        return terminal_safe(text)


@dataclass
class SpecError(SeqError):
    """One or more problems found in a spec, all reported together."""

    problems: list[Problem] = field(default_factory=list)
    source: str | None = None

    def __post_init__(self):
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        SeqError.__init__(self, f"{count} {noun} in spec")

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        lines = self.source.splitlines() if self.source is not None else []
        return "\n".join(format_problem(p, lines) for p in self.problems)


def format_problem(problem: Problem, source_lines: Sequence[str] = ()) -> str:
    """``FILE:LINE:COL: PATH: message``, the source line with a caret, and the hint."""
    out = [problem.headline()]
    if problem.line is not None and 0 < problem.line <= len(source_lines):
        text = source_lines[problem.line - 1].rstrip("\n")
        indent = len(text) - len(text.lstrip(" "))
        column = problem.column if problem.column is not None else indent + 1
        start = max(indent, column - 1 - SOURCE_WINDOW // 2)
        visible = terminal_safe(text[start : start + SOURCE_WINDOW].rstrip(" "))  # one line: no breaks to keep
        out.append("    " + visible)
        out.append("    " + " " * max(column - 1 - start, 0) + "^")
    if problem.hint:
        out.append(terminal_safe(f"  hint: {problem.hint}"))
    return "\n".join(out)


def terminal_safe(text: str) -> str:
    """A whole message as it may go to a terminal, a log or a CI report: the text door
    (:func:`seqcli.display.shown`) with its line breaks and tabs kept and no bound (its parts are bounded)."""
    return shown(text, limit=None, lines=True)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelled name, or None when nothing is close."""
    choices = list(choices)
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    return f"did you mean {matches[0]!r}?" if matches else None


def clean_message(error: BaseException, limit: int = 400) -> str:
    """An exception's text on one line, without the quotes Keras wraps around some messages and without the
    wrappers Keras puts around its cause (see :func:`clean_text`)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return clean_text(text, limit)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Keras's wrappers around the cause of an error: the call that failed, the arguments it received, the config
# of an object it could not deserialize (with the cause after it: the last "Exception encountered: ").
_KERAS_CALL = re.compile(r"^Exception encountered when calling (?:[\w.]+\(\)|layer .*?\(type [\w.]+\))\.\s*")
_KERAS_ARGUMENTS = re.compile(r"\s*(?:Call arguments|Arguments) received by .*\Z", re.S)
_KERAS_FULL_CONFIG = re.compile(r"\s*Full object config: .*\Z", re.S)
_KERAS_DESERIALIZE = re.compile(
    r"^<class '(?:[\w.]+\.)?(\w+)'> could not be deserialized properly\..*Exception encountered: ", re.S
)


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)([^@/?#]*)(@)")


def masked_url(url: str) -> str:
    """A database URL as it may be shown: any password replaced by ``***`` (``postgresql://admin:***@host/db``)."""
    return _PASSWORD.sub(r"\1***\3", url)


def url_password(url: str) -> str | None:
    """The password a URL carries (``scheme://user:PASSWORD@host``), or None."""
    found = _PASSWORD.match(url)
    return found.group(2) or None if found else None


def clean_text(text: str, limit: int = 400) -> str:
    """Error text on one line, at most ``limit`` characters: Keras's wrappers (the call that failed, the
    arguments and configs it dumps) and terminal escapes dropped, so that its cause shows; text still too long
    keeps its start and its end, where causes are, and drops the middle."""
    text = _ANSI.sub("", text).strip()
    text = _KERAS_DESERIALIZE.sub(lambda match: f"{match.group(1)} could not be deserialized: ", text)
    text = _KERAS_CALL.sub("", text)
    text = _KERAS_FULL_CONFIG.sub("", _KERAS_ARGUMENTS.sub("", text))
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if len(text) <= limit:
        return text
    head = (limit - 5) // 2
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head) :]}"


def clean_tensorflow_message(text: str, limit: int = 400) -> str:
    """TensorFlow's error text without its node names, op suffixes and value dumps (see :func:`clean_text`)."""
    text = re.sub(r"\s*\[\[\s*\]\]", "", re.sub(r"\{\{[^}]*\}\}\s*", "", text))  # {{node X}}, [[{{node X}}]]
    text = text.split(" [Op:")[0].split(" Label values:")[0]
    return clean_text(text, limit)
