"""Numbers in data that cannot train: non-finite inputs and labels, and labels that do not fit the loss.

A NaN pixel or a ``nan`` CSV cell turns every weight it touches into NaN without an error, and a
fractional or negative class index is cast or wrapped silently; so data is checked when it is loaded
(:func:`check_finite`, naming the file and the first bad sample) and the training labels against the
spec's loss before training (:func:`check_labels`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqcli.errors import SeqError

CHUNK_ELEMENTS = 1 << 22  # elements tested at a time
SPARSE_LOSSES = ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


class DataValueError(SeqError):
    """Data whose values cannot train: NaN or infinite numbers, labels that do not fit the loss."""


def check_finite(values: np.ndarray, role: str, path: Path | str, where: str, first: int = 0) -> None:
    """Raise :class:`DataValueError` naming the first sample of ``values`` that holds a NaN or an infinity
    (numbered from ``first``: the file's number of ``values[0]``, for a chunk of it)."""
    found = first_non_finite(values)
    if found is None:
        return
    index, value, count = found
    raise DataValueError(
        f"{where}: {role} in {path} holds a non-finite value ({value}) at sample {first + index}{_more(count)}",
        hint=NON_FINITE_HINT,
    )


NON_FINITE_HINT = "NaN and infinite numbers cannot train: fill or drop those samples"


def first_non_finite(values: np.ndarray) -> tuple[int, float, int] | None:
    """``(index of the first sample holding a NaN or an infinity, that value, how many samples hold one)``,
    or None when every value is finite (or not a float)."""
    if not np.issubdtype(values.dtype, np.floating) or values.size == 0:
        return None
    per_sample = max(values.size // len(values), 1)
    step = max(CHUNK_ELEMENTS // per_sample, 1)  # a boolean copy of a chunk, never of the whole array
    bad_per_chunk = [
        start + np.flatnonzero(~np.isfinite(values[start : start + step]).reshape(-1, per_sample).all(axis=1))
        for start in range(0, len(values), step)
    ]
    bad = np.concatenate(bad_per_chunk)
    if not bad.size:
        return None
    sample = values[bad[0]].reshape(-1)
    return int(bad[0]), sample[~np.isfinite(sample)][0], len(bad)


def _more(count: int) -> str:
    return f" (and {count - 1} more samples)" if count > 1 else ""


def check_labels(labels: np.ndarray | None, loss, classes: int | None, where: str) -> None:
    """Labels fit for a sparse categorical loss: whole numbers from 0 to ``classes - 1``. Other losses take
    any finite labels (checked on loading), so only the sparse ones are checked here."""
    if labels is None or labels.size == 0 or not is_sparse_loss(loss):
        return
    flat = labels.reshape(-1)
    whole = np.mod(flat, 1) == 0 if np.issubdtype(flat.dtype, np.floating) else np.ones(flat.shape, bool)
    if not whole.all():
        index = int(np.flatnonzero(~whole)[0])
        raise DataValueError(
            f"{where}: label {flat[index]} of sample {index} is not a whole number; "
            f"{_loss_name(loss)} takes class indices 0 .. classes-1",
            hint="for soft or one-hot labels use categorical_crossentropy, "
            "for a number to predict use a regression loss such as mse",
        )
    negative = flat < 0
    if negative.any():
        index = int(np.flatnonzero(negative)[0])
        raise DataValueError(
            f"{where}: label {_whole(flat[index])} of sample {index} is negative; class indices start at 0",
            hint="check the labels",
        )
    top = int(flat.max())
    if classes is not None and top >= classes:
        index = int(np.argmax(flat))
        raise DataValueError(
            f"{where}: label {top} of sample {index} is out of range: the model outputs "
            f"{classes} class scores (labels 0 .. {classes - 1})",
            hint=f"give the last layer {top + 1} units, or check the labels",
        )


def is_sparse_loss(loss) -> bool:
    return _loss_name(loss) in SPARSE_LOSSES


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict) and len(loss) == 1:
        return next(iter(loss))
    return ""


def _whole(value) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
