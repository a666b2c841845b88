"""Real tables that ship inside scikit-learn's wheel, by name (``breast_cancer``, ``wine``, ``iris``,
``diabetes``, ``digits``): public data with no download, for examples, benchmarks and first runs.

Each has a fixed split: ``NAME:test`` is a fifth of the samples (of each class, for the classification tables),
chosen by a seeded permutation; ``NAME:train`` the rest. The split is the same on every machine and every run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seqcli.data.arrays import Arrays, as_arrays
from seqcli.errors import MissingDependency

if TYPE_CHECKING:  # annotations only: the section model's module reads the dataset table, which reads this
    from seqcli.specfile.sections import SourceSection

# name -> (the sklearn.datasets loader, whether its target is a class)
BUNDLED_DATASETS: dict[str, tuple[str, bool]] = {
    "breast_cancer": ("load_breast_cancer", True),
    "wine": ("load_wine", True),
    "iris": ("load_iris", True),
    "digits": ("load_digits", True),
    "diabetes": ("load_diabetes", False),
}
TEST_SHARE = 0.2
SPLIT_SEED = 0


def open_bundled_dataset(section: SourceSection, where: str, want_labels: bool) -> Arrays:
    name = section.dataset
    x, y = load_table(name)
    rows = split_rows(y, classes=BUNDLED_DATASETS[name][1])[section.split]
    return as_arrays(x[rows], y[rows] if want_labels else None, section.scale, f"dataset {name!r}", where)


def load_table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole table as (features float32, targets), in scikit-learn's order."""
    try:
        from sklearn import datasets
    except ImportError:
        raise MissingDependency(
            f"the dataset {name!r} ships inside scikit-learn, which is not installed",
            hint="pip install scikit-learn  (the test extra has it: pip install 'seqcli[test]')",
        ) from None
    loader, _ = BUNDLED_DATASETS[name]
    x, y = getattr(datasets, loader)(return_X_y=True)
    return np.asarray(x, np.float32), np.asarray(y)


def split_rows(y: np.ndarray, *, classes: bool) -> dict[str, np.ndarray]:
    """Row indices of the train and test splits: a seeded permutation, taken per class for a class target so
    that both splits keep the class proportions. Rows stay in the table's order within each split."""
    rng = np.random.default_rng(SPLIT_SEED)
    groups = [np.flatnonzero(y == value) for value in np.unique(y)] if classes else [np.arange(len(y))]
    test = np.concatenate([rng.permutation(group)[: round(len(group) * TEST_SHARE)] for group in groups])
    chosen = np.zeros(len(y), bool)
    chosen[test] = True
    return {"train": np.flatnonzero(~chosen), "test": np.flatnonzero(chosen)}
