"""Shapes: as plain text for messages and tables (``(None, 28, 28, 1)``, ``(10,)``, ``?`` when unknown), and
the one rule for whether a shape fits the one a model takes.

The rule (:func:`shape_fits`): a None in the model's shape accepts any size there; every size it names must be
matched exactly, so a None in the shape it is given (a size known only when the model runs) fits only a None.
Every comparison of samples with a model's input (data files from their headers, datasets, the inputs an
export is verified with) and of a built shape with the spec's ``expect`` uses it.

Plain strings only (no rich), so the core can word its errors without loading the terminal stack."""

from __future__ import annotations

from seqcli.errors import SeqError


class DataShapeError(SeqError):
    """Samples that do not fit a model's input: their shape, or their kind (text for a numeric input)."""


class ShapeMismatchError(DataShapeError):
    """Samples whose shape does not fit the model's input; ``shape`` and ``input_shape`` (both without the
    batch dimension) let a caller report it at the spec entry that declares the input."""

    def __init__(self, message: str, hint: str | None, *, shape: tuple, input_shape: tuple):
        super().__init__(message, hint)
        self.shape, self.input_shape = shape, input_shape


def shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def shape_fits(model_shape, shape) -> bool:
    """Whether ``shape`` (samples', or a built layer's output) fits ``model_shape`` (what the model takes, or
    what a spec's ``expect`` asks for), both without the batch dimension: the same rank, and a None in
    ``model_shape`` takes any size; each size it names takes that size only."""
    model_shape, shape = tuple(model_shape), tuple(shape)
    return len(model_shape) == len(shape) and all(
        wanted is None or wanted == given for wanted, given in zip(model_shape, shape)
    )


def check_sample_shape(shape, input_shape, source, where: str) -> None:
    """:class:`ShapeMismatchError` when samples of ``shape`` do not fit a model taking ``input_shape``
    (:func:`shape_fits`; None for a model that takes any shape). ``where`` names the input in front of
    the message (``data.train``, ``--data``); ``source``, when not None, the file or dataset it read."""
    if input_shape is None:
        return
    shape, input_shape = tuple(shape), tuple(input_shape)
    if shape_fits(input_shape, shape):
        return
    samples = "samples" if source is None else f"samples in {source}"
    raise ShapeMismatchError(
        f"{where}: {samples} have shape {shape_text(shape)}, but the model takes {shape_text(input_shape)}",
        hint=f"give data shaped like the model's input, or a model for inputs of shape {list(shape)}",
        shape=shape,
        input_shape=input_shape,
    )
