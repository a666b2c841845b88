"""Safe YAML loading that remembers where every value came from.

PyYAML alone is not fit for hand-written specs: YAML 1.1 reads ``1e-3`` as a string and
``yes`` as True, keeps the last of duplicate keys silently, recurses on deep nesting and
expands aliases without bound. This loader reads YAML 1.2 core scalars, rejects duplicate
keys, tags, deep nesting, multi-document files and alias bombs, and records a
``(line, column)`` mark for every key and value so that errors can point into the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.resolver import BaseResolver

from seqcli.errors import Problem, SpecError
from seqcli.inputs import ALLOW_PATH_ENV, ReadRefused, extra_roots, open_input

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 100_000
YAML_11_BOOLEANS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"}

PathKey = tuple  # ("layers", 0, "Dense", "units")


@dataclass
class Document:
    """Plain data read from a spec, with the position of every key and value."""

    data: Any
    file: str
    source: str
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    overridden: dict[PathKey, str] = field(default_factory=dict)  # path -> "--set #N"
    quoted: set[PathKey] = field(default_factory=set)  # strings written in quotes: meant as strings

    def position(self, path: PathKey, *, key: bool = False) -> tuple[int | None, int | None]:
        """1-based (line, column) of the value at ``path`` (or of its key), or of its nearest ancestor."""
        table = self.key_marks if key else self.marks
        path = tuple(path)
        while path:
            if path in table:
                return table[path]
            if not key and path in self.key_marks:
                return self.key_marks[path]
            path = path[:-1]
            table = self.marks
        return self.marks.get((), (1, 1))

    def problem(self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> Problem:
        for depth in range(len(path), 0, -1):
            if tuple(path[:depth]) in self.overridden:
                return Problem(message, format_path(path), None, None, hint, self.overridden[tuple(path[:depth])])
        line, column = self.position(path, key=key)
        return Problem(message, format_path(path), line, column, hint, self.file)


def format_path(path: PathKey) -> str:
    """('layers', 0, 'Dense', 'units') -> 'layers[0].Dense.units'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class _Resolver(BaseResolver):
    """YAML 1.2 core schema: the scalars a user means, not YAML 1.1's surprises."""


_Resolver.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]:
    _Resolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def reads_as_string(text: str) -> bool:
    """Whether ``text``, written as a plain (unquoted) YAML scalar, reads back as that string in a spec."""
    return _Resolver().resolve(yaml.nodes.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver):
    def __init__(self, stream):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}


def read_spec_file(path: str | Path, display: str | None = None) -> Document:
    """Read and parse a spec file through the door (:func:`seqcli.inputs.open_input`); raise SpecError with
    positions for anything unsafe or broken. A spec reached through a symbolic link that leaves the folder
    it was named in is refused unless ``--allow-path`` covers its target: nothing of it is read."""
    path = Path(path)
    display = display or str(path)
    try:
        with open_input(path, display, roots=spec_roots(path), limit=None) as handle:
            raw = handle.read(MAX_BYTES + 1)
    except ReadRefused as error:
        raise _single(
            display, error.detail.removeprefix(f"{path} ").removeprefix(f"{str(path)!r} "), _hint(error)
        ) from None
    except IsADirectoryError:
        raise _single(display, "is a directory, not a spec file", "pass a .yaml file") from None
    except FileNotFoundError:
        raise _single(display, "no such file", "check the path (relative to the current directory)") from None
    except PermissionError:
        raise _single(display, "permission denied while reading the spec", None) from None
    except OSError as error:
        raise _single(display, f"cannot read the spec: {error.strerror or type(error).__name__}", None) from None
    if len(raw) > MAX_BYTES:
        raise _single(
            display,
            f"file is over {MAX_BYTES:,} bytes; specs are limited to {MAX_BYTES:,}",
            "a spec describes a model; keep data in separate files under data:",
        )
    return parse_spec_text(raw, display)


def spec_roots(path: Path) -> list[Path]:
    """Where a spec file may resolve to: the folder it was named in (that folder's own links followed) and
    the allowed folders."""
    named_in = Path(os.path.abspath(path)).parent
    return [named_in.resolve(), *extra_roots()]


def _hint(error) -> str | None:
    if "regular file" in error.message:
        return "pass a .yaml file"
    return (
        "seq reads a spec inside the folder it was named in only; copy the spec there, or allow its "
        f"folder with --allow-path DIR (or {ALLOW_PATH_ENV} in CI)"
    )


def parse_spec_text(raw: bytes | str, display: str = "<spec>") -> Document:
    """Parse spec text (bytes must be UTF-8) into a Document."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_BYTES:
            raise _single(display, f"spec is {len(raw):,} bytes; the limit is {MAX_BYTES:,}", None)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
            raise SpecError(
                [
                    Problem(
                        f"invalid UTF-8 byte 0x{raw[error.start]:02x}",
                        "",
                        line,
                        column,
                        "save the file as UTF-8",
                        display,
                    )
                ]
            ) from None
    else:
        text = raw
    document = Document(None, display, text)
    try:
        node = _compose(text, document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = (error.problem or error.context or "invalid YAML").strip()
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        hint = "indent with spaces: YAML does not allow tabs" if "\\t" in message else None
        if error.context and error.context_mark and error.context_mark is not mark:
            hint = (
                f"{error.context.strip()} that starts at line {error.context_mark.line + 1}, "
                f"column {error.context_mark.column + 1}"
            )
        raise SpecError([Problem(f"invalid YAML: {message}", "", line, column, hint, display)], text) from None
    except yaml.reader.ReaderError as error:  # a character YAML forbids: reported by offset, not line
        raise SpecError([_character_problem(text, error, display)], text) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem(f"invalid YAML: {error}", "", None, None, None, display)], text) from None
    if node is None:
        raise SpecError(
            [Problem("spec is empty", "", 1, 1, "a spec is a mapping with at least 'layers:'", display)], text
        )
    problems: list[Problem] = []
    _count_nodes(node, document, problems)
    if problems:
        raise SpecError(problems, text)
    document.data = _construct(node, (), document, problems)
    if problems:
        raise SpecError(problems, text)
    return document


def _character_problem(text: str, error: yaml.reader.ReaderError, display: str) -> Problem:
    """The line and column of a character YAML does not allow (NUL, other control characters...)."""
    position = error.position if isinstance(error.position, int) and 0 <= error.position <= len(text) else 0
    # Lines as the error display splits them (str.splitlines: \r, \r\n, U+2028... too), so the line shown is it.
    before = text[:position].splitlines(keepends=True) or [""]
    ends_a_line = before[-1] != "" and before[-1].splitlines() != [before[-1]]
    line = len(before) + (1 if ends_a_line else 0)
    column = 1 if ends_a_line else len(before[-1]) + 1
    character = error.character if isinstance(error.character, str) else text[position : position + 1]
    code = f"U+{ord(character):04X}" if len(character) == 1 else repr(character)
    what = "a NUL byte" if character == "\0" else f"the character {code}"
    return Problem(
        f"invalid YAML: {what} is not allowed in a YAML file",
        "",
        line,
        column,
        f"remove {code} from the file; a spec is plain UTF-8 text (a NUL byte often means the file is binary "
        "or saved as UTF-16)"
        if character == "\0"
        else f"remove {code} from the file: YAML allows printable characters, tabs and line breaks only",
        display,
    )


def _single(display: str, message: str, hint: str | None) -> SpecError:
    return SpecError([Problem(message, "", None, None, hint, display)])


def _compose(text: str, document: Document):
    """Compose one YAML node tree, checking the event stream first (iteratively) for depth and documents."""
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                mark = event.start_mark
                raise SpecError(
                    [
                        Problem(
                            "a spec holds one YAML document; found a second '---'",
                            "",
                            mark.line + 1,
                            mark.column + 1,
                            "put each model in its own file",
                            document.file,
                        )
                    ],
                    text,
                )
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise SpecError(
                    [
                        Problem(
                            f"nesting deeper than {MAX_DEPTH} levels",
                            "",
                            mark.line + 1,
                            mark.column + 1,
                            None,
                            document.file,
                        )
                    ],
                    text,
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _count_nodes(root, document: Document, problems: list[Problem]) -> None:
    """Reject self-referencing aliases, and aliases whose expansion is too large or too deep, without
    expanding anything: sizes and depths are computed once per node, iteratively."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack = [(root, False)]
    active: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not children_done:
            if key in active:
                return _alias_problem(
                    problems,
                    document,
                    node,
                    "an alias refers to the node that contains it",
                    "aliases must point to a finished anchor",
                )
            active.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in active and id(child) not in sizes:
                    return _alias_problem(
                        problems,
                        document,
                        child,
                        "an alias refers to the node that contains it",
                        "aliases must point to a finished anchor",
                    )
                stack.append((child, False))
            continue
        active.discard(key)
        sizes[key] = 1 + sum(sizes[id(child)] for child in children)
        depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
        if sizes[key] > MAX_NODES:
            return _alias_problem(
                problems,
                document,
                node,
                f"aliases expand to more than {MAX_NODES:,} values",
                "write the values out instead of nesting aliases",
            )
        if depths[key] > MAX_DEPTH + 1:
            return _alias_problem(
                problems,
                document,
                node,
                f"aliases nest deeper than {MAX_DEPTH} levels",
                "write the values out instead of nesting aliases",
            )


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _alias_problem(problems: list[Problem], document: Document, node, message: str, hint: str) -> None:
    mark = node.start_mark
    problems.append(Problem(message, "", mark.line + 1, mark.column + 1, hint, document.file))


def _construct(node, path: PathKey, document: Document, problems: list[Problem]) -> Any:
    document.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if node.tag not in _STANDARD_TAGS:
        problems.append(
            _node_problem(
                node,
                path,
                document,
                f"YAML tag {node.tag!r} is not allowed in a spec",
                "remove the tag; specs hold plain values only",
            )
        )
        return None
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(node, path, document, problems)
    if isinstance(node, yaml.SequenceNode):
        return [_construct(child, path + (i,), document, problems) for i, child in enumerate(node.value)]
    if node.style in ("'", '"'):
        document.quoted.add(path)
    try:
        return _construct_scalar(node)
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        problems.append(
            _node_problem(
                node,
                path,
                document,
                f"a number of {len(node.value)} characters is too large for any spec value",
                "Keras and TensorFlow take 64-bit integers: at most 9223372036854775807",
            )
        )
        return None


def _node_problem(node, path: PathKey, document: Document, message: str, hint: str | None) -> Problem:
    mark = node.start_mark
    return Problem(message, format_path(path), mark.line + 1, mark.column + 1, hint, document.file)


MERGE_HINT = "write the keys out"


def _construct_mapping(node, path: PathKey, document: Document, problems: list[Problem]) -> dict:
    result: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            problems.append(_node_problem(key_node, path, document, "merge keys ('<<') are not supported", MERGE_HINT))
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(_node_problem(key_node, path, document, "mapping keys must be plain names", None))
            continue
        if key_node.value == "<<" and key_node.style is None:
            problems.append(_node_problem(key_node, path, document, "merge keys ('<<') are not supported", MERGE_HINT))
            continue
        key = _construct_scalar(key_node)
        key = key if isinstance(key, str) else str(key)
        key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        child = path + (key,)
        if key in result:
            first = document.key_marks[child]
            problems.append(
                Problem(
                    f"duplicate key {key!r} (first defined on line {first[0]})",
                    format_path(child),
                    *key_mark,
                    "YAML keeps only one of them; remove or rename one",
                    document.file,
                )
            )
            continue
        document.key_marks[child] = key_mark
        result[key] = _construct(value_node, child, document, problems)
    return result


def _construct_scalar(node) -> Any:
    value = node.value
    tag = node.tag
    if tag == "tag:yaml.org,2002:str" or node.style in ("'", '"', "|", ">"):
        return value
    if tag == "tag:yaml.org,2002:bool":
        return value.lower() == "true"
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:int":
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value)
    if tag == "tag:yaml.org,2002:float":
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if value.startswith("-") else float("inf")
        if lowered == ".nan":
            return float("nan")
        return float(value)
    return value
