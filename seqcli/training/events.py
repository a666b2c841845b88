"""What a run is asked to do, what it tells a display while it runs, and what it produces."""

from __future__ import annotations

import json
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainOptions:
    """What ``seq train`` was asked to do. CLI-level settings become spec overrides, validated like the file."""

    spec: str
    _: KW_ONLY  # everything but the spec by keyword: options are added over time, never positionally
    output: str | None = None
    epochs: int | None = None
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False
    strategy: str | None = None
    devices: list[str] | None = None
    virtual_cpus: int | None = None

    def spec_overrides(self) -> list[str]:
        extra = []
        if self.epochs is not None:
            extra.append(f"train.epochs={self.epochs}")
        if self.strategy is not None:
            extra.append(f"distribute.strategy={self.strategy}")
        if self.devices:
            extra.append(f"distribute.devices={json.dumps(list(self.devices))}")
        if self.virtual_cpus is not None:
            extra.append(f"distribute.virtual_cpus={self.virtual_cpus}")
        return [*self.overrides, *extra]


@dataclass
class RunHeader:
    """What a run is about to do, for the display before the first epoch."""

    spec: str
    model: str
    params: int
    trainable_params: int
    output: Path
    epochs: int
    steps_per_epoch: int
    train_count: int
    validation_count: int | None
    seed: int
    distribution: dict[str, Any]
    compile: dict[str, str]
    steps_per_execution: int
    jit_compile: bool | str
    precision: str = "float32"
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)
    class_weight: str | None = None  # the class weights in words, when the spec has train.class_weight
    adapted: str | None = None  # the layers that learned their state from the data, in words


@dataclass
class TrainResult:
    """What a run produced."""

    output: Path
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    epochs_done: int
    epochs: int
    stopped_early: bool = False
    best_epoch: int | None = None
    elapsed: float = 0.0
    files: list[Path] = field(default_factory=list)
    already_complete: bool = False

    def as_dict(self) -> dict:
        return {
            "output": str(self.output),
            "epochs_done": self.epochs_done,
            "epochs": self.epochs,
            "stopped_early": self.stopped_early,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "elapsed_seconds": round(self.elapsed, 3),
            "files": [str(f) for f in self.files],
        }


class Reporter:
    """Receives training events. This one ignores them; see :mod:`seqcli.views.progress` for displays."""

    def run_started(self, header: RunHeader) -> None: ...

    def epoch_started(self, epoch: int, epochs: int, steps: int, done: int) -> None: ...

    def steps_done(self, done: int, logs: dict[str, float]) -> None: ...

    def epoch_finished(self, row: dict[str, Any]) -> None: ...

    def stop_after_epoch(self, row: dict[str, Any]) -> str | None:
        """Asked at each epoch's end, before its checkpoint: a reason (text) stops training after this epoch,
        recorded like early stopping (the run is finished); None trains on. ``seq tune``'s pruner answers here."""
        return None

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...

    wants_step_logs = False
