"""What a build produces: a row per layer (shape, parameters, trainable state) and the model with its problems."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from seqcli.errors import Problem
from seqcli.memory import dtype_size

Shape = tuple  # with None for unknown dimensions, batch dimension first


@dataclass
class LayerRow:
    index: int
    name: str
    class_name: str
    output_shape: Shape | None
    params: int | None
    trainable_params: int | None
    trainable: bool
    expect: list | None = None
    expect_ok: bool | None = None
    inner_layers: int | None = None  # layers inside a pretrained base (an application or a saved model)
    trainable_before: bool | None = None  # before the spec's freeze: section, when it has one
    trainable_params_before: int | None = None

    @property
    def partly_trainable(self) -> bool:
        """Trainable, but with some of the weights it had before freezing now frozen (a partly frozen base)."""
        before = self.trainable_params_before
        return (
            self.trainable
            and before is not None
            and self.trainable_params is not None
            and 0 < self.trainable_params < before
        )

    def as_dict(self) -> dict:
        row = {
            "index": self.index,
            "name": self.name,
            "class": self.class_name,
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "params": self.params,
            "trainable": self.trainable,
        }
        if self.inner_layers is not None:
            row["inner_layers"] = self.inner_layers
        if self.trainable_before is not None:
            row.update(
                trainable_params=self.trainable_params,
                trainable_before=self.trainable_before,
                trainable_params_before=self.trainable_params_before,
            )
        return row


@dataclass
class BuiltModel:
    model: Any  # keras.Sequential, or None when a layer could not be constructed
    rows: list[LayerRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # what Keras warned of (a deprecated argument), at its entry
    input_shape: Shape | None = None
    input_source: str | None = None  # "Input", "input_shape", "input_dim", "--input-shape", the base's name, or None
    freeze: Any = None  # the FreezeReport of the spec's freeze: section, when it has one
    memory: Any = None  # the MemoryEstimate (seqcli.memory) to train the whole model, once it is built

    @property
    def trainable_params_before(self) -> int | None:
        """Trainable parameters before the spec's freeze: section (the same as trainable_params without one)."""
        if not self.built:
            return None
        return sum(
            row.trainable_params if row.trainable_params_before is None else row.trainable_params_before
            for row in self.rows
        )

    @property
    def built(self) -> bool:
        return (
            self.input_shape is not None and bool(self.rows) and all(row.output_shape is not None for row in self.rows)
        )

    @property
    def output_shape(self) -> Shape | None:
        return self.rows[-1].output_shape if self.built and self.rows else None

    @property
    def params(self) -> int | None:
        return sum(row.params for row in self.rows) if self.built else None

    @property
    def trainable_params(self) -> int | None:
        return sum(row.trainable_params for row in self.rows) if self.built else None

    @property
    def weight_bytes(self) -> int | None:
        if not self.built or self.model is None:
            return None
        return sum(math.prod(w.shape) * dtype_size(w.dtype) for w in self.model.weights)


def trainable_count(layer) -> int:
    return sum(math.prod(w.shape) for w in layer.trainable_weights)
