"""What a ``distribute:`` section asks for, what was chosen for a run, and the error for what cannot be done."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seqcli.errors import SeqError


class DistributeError(SeqError):
    """The distribute section asks for something this machine or cluster cannot do."""


@dataclass
class StrategyInfo:
    """The strategy chosen for a run and where this process stands in it."""

    strategy: Any  # tf.distribute.Strategy
    kind: str  # "one_device" | "mirrored" | "multi_worker" | "default"
    devices: list[str]
    replicas: int
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    def describe(self, global_batch: int) -> dict:
        """Rows for the run header: strategy, devices, replicas, workers, global and per-replica batch."""
        return {
            "strategy": self.kind,
            "devices": ", ".join(self.devices),
            "replicas": self.replicas,
            "workers": self.workers,
            "global batch": global_batch,
            "per-replica batch": per_replica_batch(global_batch, self.replicas),
        }


@dataclass(frozen=True)
class Settings:
    strategy: str = "auto"
    devices: tuple[str, ...] | None = None
    virtual_cpus: int | None = None
    timeout: float = 120.0


def per_replica_batch(global_batch: int, replicas: int) -> int | str:
    """The batch each replica sees: an int, or "LOW-HIGH" when the global batch does not divide evenly."""
    low, extra = divmod(global_batch, max(replicas, 1))
    return low if extra == 0 else f"{low}-{low + 1}"


def read_settings(config: Mapping | None) -> Settings:
    """The section checked against its schema; DistributeError naming the first field that is wrong."""
    from pydantic import ValidationError

    from seqcli.specfile.sections import DistributeSection

    try:
        section = DistributeSection.model_validate(dict(config or {}))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"distribute.{where}: {first['msg']} (received: {first.get('input')!r})"
        raise DistributeError(message) from error
    devices = tuple(section.devices) if section.devices is not None else None
    return Settings(section.strategy, devices, section.virtual_cpus, float(section.timeout))
