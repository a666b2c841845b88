"""The spec: YAML in, a validated :class:`Spec` out. Never imports TensorFlow."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli.errors import Problem, SpecError
from seqcli.specfile.sections import SpecSections
from seqcli.specfile.validate import LAYER_EXTRA_KEYS, first_layer_over_limits, validate_sections, validate_top_level
from seqcli.specfile.yamlload import Document, PathKey, format_path, parse_spec_text, read_spec_file

__all__ = ["LayerEntry", "Spec", "load_spec", "read_spec", "parse_spec_text", "format_path"]


@dataclass
class LayerEntry:
    """One item of ``layers``: a class name, its keyword arguments and an optional expected shape."""

    index: int
    class_name: str
    args: dict[str, Any]
    expect: list[int | None] | None
    path: PathKey


@dataclass(kw_only=True)
class Spec(SpecSections):
    """A validated spec: its document (plain data and positions), its layers, its name and its sections (typed,
    as :class:`~seqcli.specfile.sections.SpecSections` declares them), and the problems found in it."""

    document: Document
    layers: list[LayerEntry]
    name: str | None = None
    problems: list[Problem] = field(default_factory=list)
    refused_files: set[PathKey] = field(default_factory=set)  # file-valued spec values it may not read

    @property
    def file(self) -> str:
        return self.document.file

    @property
    def base_dir(self) -> Path:
        return document_folder(self.document)

    def may_read(self, path: PathKey) -> bool:
        """Whether the file-valued value at ``path`` (or any under it) passed :mod:`seqcli.specfile.paths`."""
        path = tuple(path)
        return not any(refused[: len(path)] == path for refused in self.refused_files)

    @property
    def display_name(self) -> str:
        return self.name or Path(self.document.file).stem

    @property
    def declares_input(self) -> bool:
        """Whether the spec gives its own input shape (an Input entry, or input_shape or input_dim on its first
        layer); only a spec without one takes the data's shape."""
        first = self.layers[0] if self.layers else None
        if first is None or first.class_name == "Input" or "input_shape" in first.args:
            return first is not None
        if "input_dim" not in first.args:
            return False
        from seqcli.registry import shape_argument  # imports Keras: only for a first layer with input_dim

        return shape_argument(first.class_name, first.args) is not None

    def problem(self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> Problem:
        return self.document.problem(path, message, hint, key=key)

    def error(self, problems: list[Problem] | None = None) -> SpecError:
        return SpecError(list(problems if problems is not None else self.problems), self.document.source)

    def raise_problems(self) -> None:
        if self.problems:
            raise self.error()

    def resolved(self) -> dict:
        """The spec's plain data after overrides: what a run records."""
        return copy.deepcopy(self.document.data)


def read_spec(path: str | Path, overrides: list[str] | None = None, *, confined: bool = True) -> Spec:
    """Read and validate a spec file. Problems are collected on ``Spec.problems``; raises SpecError
    only when the file is unreadable YAML or its layers cannot be understood at all.

    ``confined``: the files the spec names must pass :mod:`seqcli.specfile.paths` (inside its folder or an
    allowed one). Only a spec the user chose on the command line as a run's record is read unconfined."""
    document = read_spec_file(path)
    return spec_from_document(document, overrides, confined=confined)


def spec_from_text(text: str | bytes, display: str = "<spec>", overrides: list[str] | None = None) -> Spec:
    return spec_from_document(parse_spec_text(text, display), overrides)


def spec_from_document(document: Document, overrides: list[str] | None = None, *, confined: bool = True) -> Spec:
    from seqcli.specfile.numbers import number_problems
    from seqcli.specfile.overrides import apply_overrides
    from seqcli.specfile.paths import path_problems

    problems = apply_overrides(document, overrides or [])
    problems += validate_top_level(document)
    if problems and not _layers_usable(document):
        raise SpecError(problems, document.source)
    sections, section_problems = validate_sections(document)
    problems += section_problems + number_problems(document)
    refused: set = set()
    if confined:
        found, refused = path_problems(document, document_folder(document))
        problems += found
    spec = Spec(
        document=document,
        layers=_layer_entries(document),
        name=document.data.get("name") if isinstance(document.data.get("name"), str) else None,
        problems=problems,
        refused_files=refused,
        **sections,
    )
    return spec


def document_folder(document: Document) -> Path:
    """The folder a spec's relative file names start from: its file's, or the current one for text."""
    return Path(document.file).resolve().parent if document.file != "<spec>" else Path.cwd()


def load_spec(path: str | Path, overrides: list[str] | None = None, *, confined: bool = True) -> Spec:
    """Read a spec and raise SpecError if anything in it is wrong (layers are checked when built)."""
    spec = read_spec(path, overrides, confined=confined)
    spec.raise_problems()
    return spec


def _layers_usable(document: Document) -> bool:
    """Whether the layers can be read further: a list of layers within seq's limits (no heavy work otherwise)."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list) or not data["layers"]:
        return False
    return first_layer_over_limits(data["layers"]) is None


def _layer_entries(document: Document) -> list[LayerEntry]:
    entries = []
    for index, item in enumerate(document.data["layers"]):
        if not isinstance(item, dict):
            continue
        classes = [k for k in item if k not in LAYER_EXTRA_KEYS]
        if len(classes) != 1 or not (item[classes[0]] is None or isinstance(item[classes[0]], dict)):
            continue
        name = classes[0]
        expect = item.get("expect") if isinstance(item.get("expect"), list) else None
        entries.append(LayerEntry(index, name, dict(item[name] or {}), expect, ("layers", index)))
    return entries
