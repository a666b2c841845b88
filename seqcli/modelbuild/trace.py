"""Shape tracing: each layer called on the symbolic tensor in turn, a row recorded per layer, and the spec's
``expect`` entries (per layer and for the whole model) compared with what was built."""

from __future__ import annotations

from seqcli import applications
from seqcli.budget import human_size, parse_size
from seqcli.memory import dtype_size, impossible_tensor
from seqcli.modelbuild.bases import PendingBase, realize_base
from seqcli.modelbuild.context import BuildContext
from seqcli.modelbuild.layers import keras_message
from seqcli.modelbuild.result import LayerRow, trainable_count
from seqcli.shapes import shape_fits, shape_text
from seqcli.specfile import LayerEntry


def trace_shapes(context: BuildContext, entries: list[LayerEntry], layers: list, tensor) -> list:
    """Call each layer on the symbolic tensor, recording rows; returns the layers with bases made."""
    made = []
    rows = context.result.rows
    for entry, layer in zip(entries, layers):
        if isinstance(layer, PendingBase):
            layer = realize_base(context, entry, layer, tensor)
            if layer is None:
                rows.append(
                    LayerRow(
                        entry.index,
                        entry.args.get("name") or "?",
                        entry.class_name,
                        None,
                        None,
                        None,
                        entry.args.get("trainable", True) is not False,
                        entry.expect,
                    )
                )
                tensor = None
                continue
        if tensor is None and not made and len(entries) > 1:
            tensor = _input_of_first_layer(context, entry, layer)
        made.append(layer)
        row = LayerRow(entry.index, layer.name, entry.class_name, None, None, None, bool(layer.trainable), entry.expect)
        if isinstance(layer, context.keras.Model):
            row.inner_layers = applications.inner_layer_count(layer)
        rows.append(row)
        if tensor is None:
            continue
        try:
            tensor = layer(tensor)
        except Exception as error:  # Keras raises many types for a shape that does not fit, or a bad argument
            context.problem(entry.path + (entry.class_name,), *_call_problem(entry, error, tensor), key=True)
            tensor = None
            continue
        problem = _output_problem(entry, layer, tensor)
        if problem:
            context.problem(entry.path + (entry.class_name,), *problem, key=True)
            tensor = None
            continue
        row.output_shape = tuple(tensor.shape)
        row.params = layer.count_params()
        row.trainable_params = trainable_count(layer)
    return made


def _input_of_first_layer(context: BuildContext, entry: LayerEntry, layer):
    """The input a first layer carries (a base: a keras.applications model, ``Model: {path}``), from which
    Keras builds a Sequential of more than one layer; None when it carries none."""
    if not isinstance(layer, context.keras.Model):
        return None
    try:
        batch_shape = layer.input_shape
    except (AttributeError, ValueError):  # an unbuilt model has no input
        return None
    if not isinstance(batch_shape, tuple) or not all(d is None or isinstance(d, int) for d in batch_shape):
        return None  # several inputs: Keras does not build
    context.result.input_shape, context.result.input_source = tuple(batch_shape[1:]), entry.class_name
    return context.keras.Input(batch_shape=batch_shape, dtype=layer.compute_dtype)


def _output_problem(entry: LayerEntry, layer, output) -> tuple[str, str] | None:
    """(message, hint) for an output the next layer cannot take: several outputs (return_state and the
    like), or a weight or an output no machine can hold; None for a good one."""
    if not hasattr(output, "shape"):
        return (
            f"{entry.class_name} gives {len(output)} outputs here; in a Sequential model each layer gives one",
            "drop the argument that adds outputs (return_state: true, for one)",
        )
    impossible = impossible_sizes(layer, output)
    if impossible:
        return (
            f"{entry.class_name} cannot be built on any machine: {impossible}",
            "make its sizes (units, filters, the input shape...) smaller",
        )
    return None


def _call_problem(entry: LayerEntry, error: Exception, tensor) -> tuple[str, str]:
    """(message, hint) for a layer Keras could not call on its input: an input its InputSpec refuses is a
    shape that does not fit; anything else (an argument that does not work for this input...) is said as
    Keras said it."""
    shape = shape_text(getattr(tensor, "shape", None))
    message = keras_message(entry, error)
    if INCOMPATIBLE_INPUT in str(error):
        return (
            f"{entry.class_name} cannot take input of shape {shape}: {message}",
            "check the previous layers' output shapes with 'seq summary --upto'",
        )
    return (
        f"Keras rejected {entry.class_name} on input of shape {shape}: {message}",
        f"check {entry.class_name}'s arguments against the shape it receives "
        "('seq summary --upto LAYER' shows the shapes up to a layer)",
    )


INCOMPATIBLE_INPUT = "is incompatible with the layer"  # Keras's InputSpec check: rank, axis sizes, dtype


def impossible_sizes(layer, output) -> str | None:
    """What of a traced layer no machine can hold (a weight, or its output for one sample), or None."""
    for weight in layer.weights:
        why = impossible_tensor(weight.shape, dtype_size(weight.dtype))
        if why:
            return f"its weight {weight.path!r} of shape {shape_text(weight.shape)} would take {why}"
    why = impossible_tensor(tuple(output.shape)[1:], dtype_size(output.dtype))
    if why:
        return f"its output of shape {shape_text(output.shape)} would take {why} for one sample"
    return None


def compare_expectations(context: BuildContext, whole_model: bool) -> None:
    """A problem for each layer's ``expect`` that the built shape misses, then the spec's ``expect:`` section."""
    _compare_input_expectation(context)
    for row in context.result.rows:
        if row.expect is None or row.output_shape is None:
            continue
        row.expect_ok = shape_fits(row.expect, row.output_shape[1:])
        if not row.expect_ok:
            context.problem(
                ("layers", row.index, "expect"),
                f"expected output shape {shape_text(row.expect)}, built {shape_text(row.output_shape[1:])}",
                "update 'expect' if the new shape is intended",
            )
    if whole_model:
        _compare_model_expectations(context)


def _compare_input_expectation(context: BuildContext) -> None:
    """An Input entry's ``expect``: the input is its output."""
    first = context.spec.layers[0] if context.spec.layers else None
    shape = context.result.input_shape
    if first is None or first.class_name != "Input" or first.expect is None or shape is None:
        return
    if not shape_fits(first.expect, shape):
        context.problem(
            first.path + ("expect",),
            f"expected output shape {shape_text(first.expect)}, but Input gives {shape_text(shape)}",
            "an Input entry outputs the shape it declares: update 'expect' or the shape",
        )


def _compare_model_expectations(context: BuildContext) -> None:
    expect, result = context.spec.expect, context.result
    if expect is not None and result.input_shape is not None and not result.rows and not result.problems:
        context.problem(
            ("expect",),
            "the model has no layers after Input, so there is nothing for expect to check",
            "add the model's layers after Input, or remove expect",
            key=True,
        )
        return
    if expect is None or not result.built:
        return
    output = result.output_shape[1:]
    if expect.output is not None and not shape_fits(expect.output, output):
        context.problem(
            ("expect", "output"), f"expected model output {shape_text(expect.output)}, built {shape_text(output)}"
        )
    params, trainable = result.params, result.trainable_params
    if expect.params is not None and params != expect.params:
        context.problem(("expect", "params"), f"expected {expect.params:,} parameters, built {params:,}")
    if expect.max_params is not None and params > expect.max_params:
        context.problem(
            ("expect", "max_params"), f"model has {params:,} parameters, over the limit of {expect.max_params:,}"
        )
    memory = result.memory
    if expect.max_memory is not None and memory is not None and memory.total > parse_size(expect.max_memory):
        context.problem(
            ("expect", "max_memory"),
            f"training needs about {human_size(memory.total)}, over the limit of {expect.max_memory}: {memory.text()}",
            "make the model, its input or data.batch_size smaller, or raise expect.max_memory",
        )
    if expect.trainable_params is not None and trainable != expect.trainable_params:
        context.problem(
            ("expect", "trainable_params"),
            f"expected {expect.trainable_params:,} trainable parameters, built {trainable:,}",
        )
