"""Numbers a spec may hold: finite, within 64 bits, and learning rates above zero.

A NaN or an infinity trains to nothing without an error, and an integer beyond 64 bits overflows in
TensorFlow, so every number in a spec is checked here, at its position, before anything is built:
``seq check`` fails them like any other problem.
"""

from __future__ import annotations

import math
from typing import Any

from seqcli.errors import Problem
from seqcli.specfile.yamlload import Document, PathKey

INT64_MAX = 2**63 - 1
# Keys whose number is a learning rate wherever it appears (optimizer, schedule, fine-tuning).
LEARNING_RATE_KEYS = ("learning_rate", "initial_learning_rate")


def number_problems(document: Document) -> list[Problem]:
    """Every non-finite float, every integer beyond 64 bits and every learning rate <= 0 in the spec."""
    return list(_walk(document, (), document.data))


def _walk(document: Document, path: PathKey, value: Any):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(document, path + (key,), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(document, path + (index,), item)
    elif not isinstance(value, bool) and isinstance(value, int | float):
        problem = _number_problem(path, value)
        if problem is not None:
            yield document.problem(path, *problem)


def _number_problem(path: PathKey, value: int | float) -> tuple[str, str] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return (
            f"{value} is not a finite number; nothing trains with it",
            "give a finite number (YAML reads .nan, .inf and -.inf as NaN and infinities)",
        )
    if isinstance(value, int) and abs(value) > INT64_MAX:
        return (
            f"{value} does not fit in 64 bits",
            f"Keras and TensorFlow take integers from -{INT64_MAX} to {INT64_MAX}",
        )
    if path and path[-1] in LEARNING_RATE_KEYS and value <= 0:
        return (
            f"a learning rate must be above zero; received {value}",
            "typical learning rates are 1e-4 to 1e-1, e.g. learning_rate: 0.001",
        )
    return None
