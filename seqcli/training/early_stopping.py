"""Early stopping: Keras's EarlyStopping rules, with state that a checkpoint carries across a resume."""

from __future__ import annotations

import math
from dataclasses import dataclass

from seqcli.errors import Problem, did_you_mean
from seqcli.spec import Spec


@dataclass
class EarlyStopper:
    """Keras's EarlyStopping rules with state that a checkpoint can carry across a resume."""

    monitor: str
    mode: str
    patience: int
    min_delta: float
    restore_best: bool
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    @classmethod
    def create(cls, spec: Spec, saved: dict | None) -> EarlyStopper | None:
        section = spec.train.early_stopping
        if section is None:
            return None
        mode = section.mode
        if mode == "auto":
            increasing = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")
            mode = "max" if any(word in section.monitor for word in increasing) else "min"
        stopper = cls(
            section.monitor, mode, section.patience, abs(float(section.min_delta)), section.restore_best_weights
        )
        if saved:
            stopper.best, stopper.best_epoch, stopper.wait = saved.get("best"), saved.get("best_epoch"), saved["wait"]
        return stopper

    def update(self, row: dict) -> bool:
        """Record an epoch's logs; True when training should stop."""
        value = row.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.best is None or self._improved(value):
            self.best, self.best_epoch, self.wait = value, row["epoch"], 0
            return False
        self.wait += 1
        return self.wait > self.patience

    def _improved(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def message(self, epoch: int) -> str:
        epochs = "1 epoch" if self.wait == 1 else f"{self.wait} epochs"
        return (
            f"early stopping after epoch {epoch}: {self.monitor} has not improved for {epochs} "
            f"(best {self.best:.4g} at epoch {self.best_epoch})"
        )

    def as_dict(self) -> dict:
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "restore_best_weights": self.restore_best,
        }


def monitor_problems(spec: Spec, settings, validation: bool) -> list[Problem]:
    """early_stopping.monitor against the logs' names (read from the spec when compile has problems)."""
    from seqcli.compile import CompileSettings, metric_log_name

    section = spec.train.early_stopping
    if section is None:
        return []
    if settings is None:
        metrics = spec.compile.metrics if spec.compile else []
        settings = CompileSettings(None, None, metric_names=[metric_log_name(m) for m in metrics])
    log_names = settings.log_names(validation)
    if section.monitor in log_names:
        return []
    return [
        spec.problem(
            ("train", "early_stopping", "monitor"),
            f"training logs no {section.monitor!r}",
            did_you_mean(section.monitor, log_names) or f"it logs: {', '.join(log_names)}",
        )
    ]
