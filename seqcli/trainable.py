"""Freezing rules: which layers of a built model train, as the guide's transfer-learning blueprints set it.

:func:`apply_freeze` applies a spec's ``freeze:`` section (or the same keys as a dict) to a built
model and says what it did. Layers are named by path: a top-level layer by its name (``dense``), a
layer inside a base by ``base/inner`` (``mobilenetv2_0.35_32/block_16_project``); globs use
:mod:`fnmatch`. ``all_but_last: N`` freezes every top-level layer but the last N (the guide's
``for layer in model.layers[:-1]: layer.trainable = False`` is ``all_but_last: 1``). Whatever
``unfreeze`` matches stays trainable, whatever else matches.

A frozen BatchNormalization layer runs in inference mode in Keras 3: it normalizes with its moving
mean and variance and never updates them, which is what the Keras transfer-learning guide
recommends for a frozen base.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from seqcli.errors import SeqError, did_you_mean
from seqcli.keras_env import import_keras
from seqcli.specfile.sections import FreezeSection

BATCHNORM_NOTE = (
    "they run in inference mode, normalizing with their moving mean and variance and never "
    "updating them, as the Keras transfer-learning guide recommends"
)


class FreezeError(SeqError):
    """A freeze request that names no layer, or asks for more layers than the model has."""


@dataclass
class FreezeReport:
    """What a freeze did: per-layer paths, BatchNorm layers now in inference mode, parameter counts."""

    frozen: list[str] = field(default_factory=list)  # leaf layer paths now frozen
    trainable: list[str] = field(default_factory=list)  # leaf layer paths that train
    batchnorm_inference: list[str] = field(default_factory=list)
    params: int = 0
    trainable_params_before: int = 0
    trainable_params_after: int = 0
    unmatched: list[tuple[str, int, str]] = field(default_factory=list)  # (field, position, pattern)
    all_but_last_error: str | None = None
    paths: list[str] = field(default_factory=list)  # every layer path, for 'did you mean'

    def lines(self) -> list[str]:
        """The report in words, for the terminal."""
        leaves = len(self.frozen) + len(self.trainable)
        out = [
            f"Frozen: {len(self.frozen):,} of {leaves:,} layers; trainable params "
            f"{self.trainable_params_before:,} → {self.trainable_params_after:,} (of {self.params:,})"
        ]
        if self.batchnorm_inference:
            count = len(self.batchnorm_inference)
            noun = "layer is" if count == 1 else "layers are"
            out.append(f"{count} BatchNormalization {noun} frozen: {BATCHNORM_NOTE}")
        return out

    def as_dict(self) -> dict:
        return {
            "frozen": self.frozen,
            "trainable": self.trainable,
            "batchnorm_inference": self.batchnorm_inference,
            "params": self.params,
            "trainable_params_before": self.trainable_params_before,
            "trainable_params_after": self.trainable_params_after,
        }


def apply_freeze(model, freeze: FreezeSection | dict | None, *, strict: bool = True) -> FreezeReport:
    """Freeze a built Keras model's layers as ``freeze`` says; returns what changed.

    Applying the same freeze twice gives the same model. With ``strict`` a pattern that matches no
    layer, or ``all_but_last`` past the number of layers, raises :class:`FreezeError`; otherwise it is
    recorded on the report (``unmatched``, ``all_but_last_error``) and the rest is applied.
    """
    section = _section(freeze)
    top = list(model.layers)
    nodes = list(walk_layers(top))
    report = FreezeReport(
        params=_count(model.weights),
        trainable_params_before=_count(model.trainable_weights),
        paths=[path for path, _ in nodes],
    )
    frozen_roots = _matches(nodes, section.layers, "layers", report)
    if section.all_but_last is not None:
        if section.all_but_last > len(top):
            report.all_but_last_error = (
                f"all_but_last is {section.all_but_last}, but the model has {len(top)} top-level layers"
            )
        else:
            frozen_roots |= {layer.name for layer in top[: len(top) - section.all_but_last]}
    unfrozen_roots = _matches(nodes, section.unfreeze, "unfreeze", report)
    state = _leaf_states(nodes, frozen_roots, unfrozen_roots)
    if strict:
        _raise_unmatched(report)
    _set_trainable(model, "", state)
    for path, layer in nodes:
        if path in state:
            (report.trainable if state[path] else report.frozen).append(path)
            if not state[path] and is_batchnorm(layer):
                report.batchnorm_inference.append(path)
    report.trainable_params_after = _count(model.trainable_weights)
    return report


def walk_layers(layers: Iterable, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` for every layer of ``layers`` (e.g. ``model.layers``), depth first, input layers
    left out: a top-level layer's path is its name, a layer inside a nested model ``model/inner``."""
    for layer in layers:
        if _is_input(layer):
            continue
        path = f"{prefix}{layer.name}"
        yield path, layer
        if _is_container(layer):
            yield from walk_layers(layer.layers, path + "/")


def is_batchnorm(layer) -> bool:
    """Whether ``layer`` is a BatchNormalization layer (which, frozen, runs in inference mode)."""
    return isinstance(layer, import_keras().layers.BatchNormalization)


# ----------------------------------------------------------------------------- internals


def _section(freeze: FreezeSection | dict | None) -> FreezeSection:
    if freeze is None:
        return FreezeSection()
    if isinstance(freeze, FreezeSection):
        return freeze
    return FreezeSection.model_validate(freeze)


def _matches(nodes: list[tuple[str, Any]], patterns: list[str], field_name: str, report: FreezeReport) -> set[str]:
    matched = set()
    for position, pattern in enumerate(patterns):
        found = {path for path, _ in nodes if fnmatch.fnmatchcase(path, pattern)}
        if not found:
            report.unmatched.append((field_name, position, pattern))
        matched |= found
    return matched


def _leaf_states(nodes, frozen_roots: set[str], unfrozen_roots: set[str]) -> dict[str, bool]:
    """Trainable or not, for every leaf layer: frozen when it or a parent is frozen (or it already was),
    unless it or a parent is unfrozen."""
    state = {}
    for path, layer in nodes:
        if _is_container(layer):
            continue
        lineage = _lineage(path)
        frozen = not layer.trainable or bool(lineage & frozen_roots)
        state[path] = not frozen or bool(lineage & unfrozen_roots)
    return state


def _lineage(path: str) -> set[str]:
    parts = path.split("/")
    return {"/".join(parts[: i + 1]) for i in range(len(parts))}


def _set_trainable(container, prefix: str, state: dict[str, bool]) -> bool | None:
    """Set ``trainable`` top-down so that exactly the leaves ``state`` marks train. Returns True/False when
    every leaf below agrees, None when mixed."""
    layers = [layer for layer in container.layers if not _is_input(layer)]
    summary = {_summary(layer, f"{prefix}{layer.name}", state) for layer in layers}
    if summary <= {True}:
        container.trainable = True
        return True
    if summary == {False}:
        container.trainable = False
        return False
    container.trainable = True  # sets every layer below; the frozen parts are switched off next
    for layer in layers:
        path = f"{prefix}{layer.name}"
        if _is_container(layer):
            _set_trainable(layer, path + "/", state)
        else:
            layer.trainable = state[path]
    return None


def _summary(layer, path: str, state: dict[str, bool]) -> bool | None:
    if not _is_container(layer):
        return state[path]
    values = {value for key, value in state.items() if key.startswith(path + "/")}
    return values.pop() if len(values) == 1 else (None if values else True)


def _raise_unmatched(report: FreezeReport) -> None:
    if report.unmatched:
        field_name, _, pattern = report.unmatched[0]
        listed = ", ".join(repr(p) for _, _, p in report.unmatched)
        raise FreezeError(
            f"{field_name}: {listed} matches no layer",
            hint=did_you_mean(pattern, report.paths)
            or "names are the ones 'seq summary' shows; 'base/inner' reaches into a base; globs work",
        )
    if report.all_but_last_error:
        raise FreezeError(report.all_but_last_error)


def _is_container(layer) -> bool:
    return isinstance(layer, import_keras().Model)


def _is_input(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def _count(weights) -> int:
    return sum(math.prod(w.shape) for w in weights)
