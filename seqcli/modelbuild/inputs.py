"""The model's input: an ``Input`` entry, a first layer's ``input_shape`` (or ``input_dim``), or ``--input-shape``."""

from __future__ import annotations

from seqcli import registry
from seqcli.errors import clean_message, did_you_mean
from seqcli.memory import dtype_size, impossible_tensor
from seqcli.modelbuild.context import BuildContext
from seqcli.modelbuild.result import Shape
from seqcli.shapes import shape_text
from seqcli.specfile import LayerEntry


def model_input(context: BuildContext, entries: list[LayerEntry], override: Shape | None):
    """``(input tensor or None, the entries that make layers)``; records the input shape and its source."""
    first = entries[0] if entries else None
    shape, source = None, None
    for entry in entries[1:]:
        if entry.class_name == "Input":
            context.problem(
                entry.path + ("Input",),
                "Input must be the first entry of 'layers'",
                "move it to the top, or remove it",
                key=True,
            )
    if first is not None and first.class_name == "Input":
        entries = entries[1:]
        shape, source = _input_entry_shape(context, first), "Input"
        input_args = _input_arguments(context, first)
    elif first is not None and (key := registry.shape_argument(first.class_name, first.args)):
        # Keras's Layer takes input_dim as input_shape (input_dim,), and prefers it when both are given.
        shape, source, input_args = parse_shape(context, first.path + (first.class_name, key), first.args[key]), key, {}
    else:
        input_args = {}
    if override is not None and shape is None:
        shape, source = tuple(override), "--input-shape"
    context.result.input_shape = shape
    context.result.input_source = source if shape is not None else None
    if shape is None:
        return None, entries
    try:
        tensor = context.keras.Input(shape=shape, **{k: v for k, v in input_args.items() if k != "shape"})
    except Exception as error:  # Keras raises ValueError, TypeError... for a dtype or shape it cannot use
        context.problem(
            first.path + ("Input",) if first is not None and source == "Input" else ("layers", 0),
            f"Keras rejected the input: {clean_message(error)}",
            "check Input's shape and dtype (e.g. float32, int32)",
            key=source == "Input",
        )
        context.result.input_shape = None
        return None, entries
    impossible = impossible_tensor(shape, dtype_size(tensor.dtype))
    if impossible:
        context.problem(
            first.path + ("Input", "shape") if first is not None and source == "Input" else ("layers", 0),
            f"no machine can hold one input sample of shape {shape_text(shape)}: it would take {impossible}",
            "make the input shape smaller",
        )
        context.result.input_shape = None
        return None, entries
    return tensor, entries


def _input_entry_shape(context: BuildContext, entry: LayerEntry) -> Shape | None:
    args = entry.args
    if "shape" not in args and "batch_shape" not in args:
        context.problem(entry.path + ("Input",), "Input needs a shape", "write 'Input: {shape: [28, 28, 1]}'")
        return None
    if "batch_shape" in args:
        batch_shape = parse_shape(context, entry.path + ("Input", "batch_shape"), args["batch_shape"])
        return batch_shape[1:] if batch_shape else None
    if args["shape"] == [] and args.get("dtype") == "string":
        return ()  # one string per sample, as keras.io's text examples also write [1]
    return parse_shape(context, entry.path + ("Input", "shape"), args["shape"])


def _input_arguments(context: BuildContext, entry: LayerEntry) -> dict:
    args = {}
    for key, value in entry.args.items():
        if key not in registry.INPUT_ARGUMENTS:
            context.problem(
                entry.path + ("Input", key),
                f"unknown argument for Input: {key!r}",
                did_you_mean(key, registry.INPUT_ARGUMENTS),
                key=True,
            )
        elif key != "batch_shape":
            args[key] = value
    return args


def parse_shape(context: BuildContext, path, value) -> Shape | None:
    """A spec shape (an int or a list of positive ints and nulls) as a tuple; None, with a problem, otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value,)
    if (
        isinstance(value, list)
        and value
        and all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value)
    ):
        return tuple(value)
    context.problem(
        path,
        f"expected a shape such as [28, 28, 1], got {value!r}",
        "list the sizes of each dimension, without the batch dimension",
    )
    return None
