"""Early stopping: Keras's EarlyStopping rules, with state that a checkpoint carries across a resume."""

from __future__ import annotations

from dataclasses import dataclass

from seqcli.directions import compiled_direction
from seqcli.errors import Problem, did_you_mean
from seqcli.specfile import Spec

# The name words that mean "higher is better" when the compiled model cannot tell (see resolve_mode).
_INCREASING_WORDS = ("acc", "auc", "precision", "recall", "f1", "iou", "r2")


@dataclass
class EarlyStopper:
    """keras.callbacks.EarlyStopping's rules (Keras 3), epoch by epoch, with state that a checkpoint carries
    across a resume. Epochs are numbered from 1 here, from 0 in Keras."""

    monitor: str
    mode: str  # "min", "max", or "auto" until resolve_mode has seen the compiled model
    patience: int
    min_delta: float
    restore_best: bool
    baseline: float | None = None
    start_from_epoch: int = 0
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0

    @classmethod
    def create(cls, spec: Spec, saved: dict | None) -> EarlyStopper | None:
        section = spec.train.early_stopping
        if section is None:
            return None
        stopper = cls(
            section.monitor,
            section.mode,
            section.patience,
            abs(float(section.min_delta)),
            section.restore_best_weights,
            None if section.baseline is None else float(section.baseline),
            section.start_from_epoch,
        )
        if saved:
            stopper.best, stopper.best_epoch, stopper.wait = saved.get("best"), saved.get("best_epoch"), saved["wait"]
        return stopper

    def resolve_mode(self, model=None) -> None:
        """Settle ``mode: auto`` as Keras does once the model's metrics are built (after an epoch): a loss
        is minimized, a metric goes the direction it declares; the name's words decide only where Keras
        could not (it would stop with an error)."""
        if self.mode != "auto":
            return
        name = self.monitor.removeprefix("val_")
        direction = "down" if name == "loss" else compiled_direction(model, name)
        if direction is None:
            direction = "up" if any(word in name for word in _INCREASING_WORDS) else "down"
        self.mode = "max" if direction == "up" else "min"

    def update(self, row: dict, model=None) -> bool:
        """Record an epoch's logs; True when training should stop (EarlyStopping.on_epoch_end). ``model``, the
        compiled model, settles ``mode: auto`` (see resolve_mode)."""
        value = row.get(self.monitor)
        if value is None or row["epoch"] - 1 < self.start_from_epoch:
            return False
        self.resolve_mode(model)
        self.wait += 1
        if self._improves_on(value, self.best):
            self.best, self.best_epoch = value, row["epoch"]
            # An improvement resets the patience only when it also beats the baseline.
            if self.baseline is None or self._improves_on(value, self.baseline):
                self.wait = 0
            return False
        return self.wait >= self.patience and row["epoch"] > 1

    def _improves_on(self, value: float, reference: float | None) -> bool:
        """MonitorCallback._is_improvement, with the same arithmetic (a NaN never improves on a number)."""
        if reference is None:
            return True
        if self.mode == "max":
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def restored_epoch(self, last_epoch: int) -> int | None:
        """The epoch whose weights the model ends with when that is not ``last_epoch`` (restore_best_weights,
        which Keras applies at the end of training, stopped early or not); None when the last weights stay."""
        if self.restore_best and self.best_epoch not in (None, last_epoch):
            return self.best_epoch
        return None

    def message(self, epoch: int) -> str:
        epochs = "1 epoch" if self.wait == 1 else f"{self.wait} epochs"
        short_of_baseline = (
            self.baseline is not None and self.best is not None and not self._improves_on(self.best, self.baseline)
        )
        what = f"has not beaten the baseline {self.baseline:.4g}" if short_of_baseline else "has not improved"
        return (
            f"early stopping after epoch {epoch}: {self.monitor} {what} for {epochs} "
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
