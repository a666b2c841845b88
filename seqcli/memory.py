"""How much memory a model needs, estimated from a weightless build's shapes before anything is allocated.

The estimate adds the weights, for training the gradients and the optimizer's slots (Adam keeps two
per trainable weight), and one batch of activations: the input batch and every layer's output (layers
inside a pretrained base included), float32. It is what ``seq summary`` and ``seq check`` show (and
``expect: {max_memory: 2G}`` gates), and what every command that makes a model's weights compares with
the memory budget (:mod:`seqcli.budget`) before making them, in one function: :func:`check_model_memory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seqcli.budget import LimitError, human_size, max_memory, power_of_two

DEFAULT_BATCH_SIZE = 32
ACTIVATION_BYTES = 4  # float32
# Slots an optimizer keeps per trainable weight (keras.optimizers); unknown names count as two, like Adam.
OPTIMIZER_SLOTS = {
    "sgd": 1,
    "adagrad": 1,
    "lion": 1,
    "adafactor": 1,
    "rmsprop": 2,
    "adam": 2,
    "adamw": 2,
    "adamax": 2,
    "nadam": 2,
    "adadelta": 2,
    "ftrl": 2,
    "lamb": 2,
    "loss_scale_optimizer": 2,
    "muon": 2,
}
DEFAULT_SLOTS = 2


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs: weights, gradients and optimizer state (training), one batch of activations."""

    weights: int
    optimizer: int
    activations: int
    batch_size: int
    training: bool

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.activations

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "weights": self.weights,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "batch_size": self.batch_size,
            "training": self.training,
        }

    def text(self) -> str:
        what = "to train" if self.training else "to run"
        optimizer = f", optimizer {human_size(self.optimizer)}" if self.training else ""
        return (
            f"Memory estimate: {human_size(self.total)} {what} (weights {human_size(self.weights)}"
            f"{optimizer}, a batch of {self.batch_size} {human_size(self.activations)})"
        )


def estimate_memory(
    model, *, batch_size: int = DEFAULT_BATCH_SIZE, optimizer=None, training: bool = True
) -> MemoryEstimate:
    """The estimate for a built Keras model (abstract or real); ``optimizer`` is the spec's
    ``compile.optimizer`` (a name or a one-key mapping)."""
    weights = sum(_bytes(w) for w in model.weights)
    trainable = sum(_bytes(w) for w in model.trainable_weights)
    slots = optimizer_slots(optimizer)
    state = trainable * (slots + 1) if training else 0
    per_sample = _elements(getattr(model, "input_shape", None)) + sum(_output_elements(model))
    activations = batch_size * per_sample * ACTIVATION_BYTES
    return MemoryEstimate(weights, state, activations, batch_size, training)


def optimizer_slots(optimizer) -> int:
    name = next(iter(optimizer), None) if isinstance(optimizer, dict) else optimizer
    return OPTIMIZER_SLOTS.get(str(name).lower(), DEFAULT_SLOTS) if name is not None else DEFAULT_SLOTS


def spec_batch_size(spec) -> int:
    return spec.data.batch_size if getattr(spec, "data", None) is not None else DEFAULT_BATCH_SIZE


def spec_optimizer(spec):
    return spec.compile.optimizer if getattr(spec, "compile", None) is not None else "adam"


def check_model_memory(model, *, batch_size: int, what: str, optimizer=None, training: bool = False) -> MemoryEstimate:
    """The one check of a model's memory against the budget, made on a weightless build (a spec's abstract
    build, or a ``.keras`` config made without its weights) before any weight is allocated: the estimate
    (:func:`estimate_memory`) to run, or with ``training`` to train, batches of ``batch_size``. Returns it; a
    :class:`~seqcli.budget.LimitError` that gives it, and names ``what`` (``training this model``), when it
    is over the budget."""
    estimate = estimate_memory(model, batch_size=batch_size, optimizer=optimizer, training=training)
    budget = max_memory()
    if estimate.total <= budget:
        return estimate
    raise LimitError(
        f"{what} needs about {human_size(estimate.total)}, over the memory limit of "
        f"{human_size(budget)}: {estimate.text()}",
        hint="make the model, its input or the batch size smaller; or, if the machine really "
        "has the memory, raise the limit with --max-memory SIZE (or SEQ_MAX_MEMORY)",
    )


LARGEST_TENSOR = 2**63 - 1  # bytes, and values: TensorFlow counts both in int64, and no address space holds more


def impossible_tensor(shape, itemsize: int) -> str | None:
    """Why a tensor of ``shape`` (None dimensions count as 1) can exist on no machine at all, whatever its
    memory: more values than an int64 counts, or more than 2**63-1 bytes; None when it can exist. For the
    checks that never refuse on size for this machine (``seq check``) but must refuse what no machine builds."""
    values = math.prod(1 if d is None else int(d) for d in shape)
    if values > LARGEST_TENSOR:
        return f"{_magnitude(values)} values, more than a 64-bit count holds"
    if values * itemsize > LARGEST_TENSOR:
        return f"{human_size(values * itemsize)}, more than a 64-bit address space holds"
    return None


def _magnitude(count: int) -> str:
    return power_of_two(count) if count >= 1 << 64 else f"{count:,}"


def _output_elements(model):
    """Elements per sample of every layer's output, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers") and layer.layers:
            yield from _output_elements(layer)
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):
            continue
        outputs = output if isinstance(output, (list, tuple)) else [output]
        yield sum(_elements(getattr(o, "shape", None)) for o in outputs)


def _elements(shape) -> int:
    """Elements per sample of a shape with its batch dimension; unknown sizes count as 1."""
    if shape is None:
        return 0
    if isinstance(shape, list):
        return sum(_elements(s) for s in shape)
    return math.prod(1 if d is None else int(d) for d in tuple(shape)[1:])


def _bytes(variable) -> int:
    return math.prod(int(d) for d in variable.shape) * dtype_size(variable.dtype)


def dtype_size(dtype) -> int:
    """Bytes per value of a Keras or numpy dtype (4 for one numpy does not know)."""
    import numpy as np

    try:
        return np.dtype(str(dtype)).itemsize
    except TypeError:
        return 4
