"""A classifier's outputs read as classes: the classes each sample's outputs rank first and their
probabilities (``seq predict``), and per-class precision, recall and the confusion matrix of predictions
against labels (``seq evaluate``, ``seq plot --confusion``).

A model with several outputs per sample predicts the class of the largest; with one output it is a binary
classifier whose output is the probability of class 1 (a sigmoid's; an output outside [0, 1] is a logit).
Outputs that are not probabilities (rows outside [0, 1] or not summing to 1) are logits and go through a
softmax. Imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CONFUSION_CLASSES = 1000  # a confusion matrix of more classes is not kept (it grows with their square)
PROBABILITY_TOLERANCE = 1e-3  # how far from 1 the outputs of a softmax may sum


def probabilities(values: np.ndarray) -> np.ndarray:
    """Rows of class probabilities, ``(samples, classes)``; one output per sample becomes two columns."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    if values.shape[1] == 1:
        p = values[:, 0] if _within_unit(values) else 1 / (1 + np.exp(-values[:, 0]))
        return np.stack([1 - p, p], axis=1)
    if _within_unit(values) and np.allclose(values.sum(axis=1), 1, atol=PROBABILITY_TOLERANCE):
        return values
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _within_unit(values: np.ndarray) -> bool:
    return bool(np.all((values >= 0) & (values <= 1)))


def top_classes(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes of each sample, most probable first, and their probabilities."""
    probs = probabilities(values)
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def predicted_ids(values: np.ndarray) -> np.ndarray:
    """The class each sample's outputs rank first."""
    return top_classes(values, 1)[0][:, 0]


def label_ids(labels: np.ndarray, width: int) -> np.ndarray | None:
    """Class indices from labels: integers (one per sample) or one-hot rows of ``width``; None when the
    labels are not classes of a ``width``-output model (regression targets)."""
    labels = np.asarray(labels)
    classes = max(width, 2)
    if np.issubdtype(labels.dtype, np.integer) and labels.size == len(labels):
        ids = labels.reshape(-1)
        return ids if np.all((ids >= 0) & (ids < classes)) else None
    if labels.ndim == 2 and labels.shape[1] == width > 1 and np.all((labels == 0) | (labels == 1)):
        if np.all(labels.sum(axis=1) == 1):
            return np.argmax(labels, axis=1)
    return None


@dataclass
class ClassReport:
    """Counts of a classifier's predictions against the labels: per class, and (up to
    :data:`MAX_CONFUSION_CLASSES` classes) the confusion matrix, rows the true class, columns the predicted."""

    names: list[str]
    support: np.ndarray  # samples of each true class
    predicted: np.ndarray  # samples predicted as each class
    correct: np.ndarray  # samples of each class predicted as it
    confusion: np.ndarray | None

    @property
    def precision(self) -> list[float | None]:
        """Of the samples predicted as a class, the share that is of it (None when none is predicted as it)."""
        return [None if p == 0 else float(c / p) for c, p in zip(self.correct, self.predicted)]

    @property
    def recall(self) -> list[float | None]:
        """Of the samples of a class, the share predicted as it (None when the data holds none of it)."""
        return [None if s == 0 else float(c / s) for c, s in zip(self.correct, self.support)]

    def as_dict(self) -> dict:
        return {
            "names": list(self.names),
            "precision": self.precision,
            "recall": self.recall,
            "support": [int(s) for s in self.support],
            "confusion": None if self.confusion is None else self.confusion.tolist(),
        }


def class_report(true: np.ndarray, predicted: np.ndarray, count: int, names: list[str] | None) -> ClassReport:
    """The report of ``count`` classes for true and predicted class indices; ``names`` when they are ``count``."""
    true, predicted = np.asarray(true, np.int64), np.asarray(predicted, np.int64)
    names = list(names) if names is not None and len(names) == count else [str(i) for i in range(count)]
    confusion = None
    if count <= MAX_CONFUSION_CLASSES:
        confusion = np.zeros((count, count), np.int64)
        np.add.at(confusion, (true, predicted), 1)
    return ClassReport(
        names=names,
        support=np.bincount(true, minlength=count),
        predicted=np.bincount(predicted, minlength=count),
        correct=np.bincount(true[true == predicted], minlength=count),
        confusion=confusion,
    )
