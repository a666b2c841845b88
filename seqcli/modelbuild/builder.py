"""One build, start to end: the input, a layer per entry, shapes traced, the model assembled, then (for the
whole model) ``transfer.weights``, the ``freeze:`` section, the memory estimate and the ``expect`` checks."""

from __future__ import annotations

import contextlib

from seqcli.budget import LimitError
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import resolve_path
from seqcli.keras_env import import_keras, weightless_scope
from seqcli.memory import estimate_memory, spec_batch_size, spec_optimizer
from seqcli.modelbuild.bases import PendingBase, realize_base
from seqcli.modelbuild.context import BuildContext
from seqcli.modelbuild.inputs import model_input
from seqcli.modelbuild.layers import LayerMaker
from seqcli.modelbuild.result import BuiltModel, Shape, trainable_count
from seqcli.modelbuild.trace import compare_expectations, trace_shapes
from seqcli.models import WeightsError, check_weights_file, load_weights
from seqcli.specfile import LayerEntry, Spec
from seqcli.trainable import apply_freeze


def build_model(
    spec: Spec,
    *,
    abstract: bool = False,
    input_shape: Shape | None = None,
    upto: str | int | None = None,
    adapted: dict | None = None,
) -> BuiltModel:
    """Build the spec's model; problems are collected on the result, never raised.

    ``input_shape`` (without the batch dimension) supplies a shape for a spec that has none;
    ``upto`` (a layer name or index) stops after that layer: the guide's incremental debugging;
    ``adapted`` gives layers the state they learned from the data (:mod:`seqcli.modelbuild.adapt`).
    """
    keras = import_keras()
    scope = weightless_scope() if abstract else contextlib.nullcontext()
    context = BuildContext(spec, keras, abstract, BuiltModel(model=None), dict(adapted or {}))
    with scope:
        return _Builder(context).build(input_shape, upto)


class _Builder:
    def __init__(self, context: BuildContext):
        self.context = context
        self.spec = context.spec
        self.keras = context.keras
        self.result = context.result

    def build(self, input_shape: Shape | None, upto: str | int | None) -> BuiltModel:
        input_tensor, entries = model_input(self.context, list(self.spec.layers), input_shape)
        layers = self._construct(LayerMaker(self.context), entries, input_tensor)
        self._check_unique_names(entries)
        entries, layers = self._cut(entries, layers, upto)
        if any(layer is None for layer in layers):
            return self.result
        layers = trace_shapes(self.context, entries, layers, input_tensor)
        if self.result.problems:
            return self.result
        # A Keras layer takes input_shape as an argument; a base gets it from an explicit Input.
        keeps_shape = self.result.input_source in ("input_shape", "input_dim") and not isinstance(
            layers[0], self.keras.Model
        )
        stack = [input_tensor, *layers] if input_tensor is not None and not keeps_shape else layers
        try:
            self.result.model = self.keras.Sequential(stack, name=self.spec.name or "sequential")
        except (ValueError, TypeError) as error:
            self.context.problem(("layers",), f"Keras could not assemble the model: {error}")
            return self.result
        if upto is None and self.spec.transfer is not None and self.spec.transfer.weights is not None:
            self._pretrained_weights(self.spec.transfer.weights)
        if upto is None and self.spec.freeze is not None:
            self._freeze()
        if self.result.built:
            self.result.memory = estimate_memory(
                self.result.model, batch_size=spec_batch_size(self.spec), optimizer=spec_optimizer(self.spec)
            )
        compare_expectations(self.context, whole_model=upto is None)
        return self.result

    def _construct(self, maker: LayerMaker, entries: list[LayerEntry], input_tensor) -> list:
        """Each entry's layer, in the spec's order. A base whose input is known by its turn is made then, as a
        Keras script makes it before the layers after it: their initializers draw their seeds (from
        ``keras.utils.set_random_seed``'s state) in the script's order. Other bases wait for the trace."""
        layers = []
        for entry in entries:
            layer = maker.construct(entry)
            if isinstance(layer, PendingBase):
                layer = self._base_now(entry, layer, layers, input_tensor)
            layers.append(layer)
        return layers

    def _base_now(self, entry: LayerEntry, pending: PendingBase, before: list, input_tensor):
        """The base made for the tensor the layers ``before`` it give; ``pending`` when that is not known yet or
        the base cannot be made (the trace makes it again and reports why, at its row)."""
        tensor = input_tensor
        try:
            for layer in before:
                tensor = layer(tensor) if tensor is not None and layer is not None else None
        except Exception:  # the trace reports a layer that does not fit its input, at its entry
            return pending
        if before and tensor is None:
            return pending
        recorded = len(self.result.problems)
        base = realize_base(self.context, entry, pending, tensor)
        if base is None:
            del self.result.problems[recorded:]
            return pending
        return base

    def _pretrained_weights(self, weights: str) -> None:
        """transfer.weights: the whole model's pretrained weights, loaded once it is built (never when abstract)."""
        where = ("transfer", "weights")
        if not self.spec.may_read(where):
            return  # refused, and said so already
        try:
            path = check_weights_file(
                resolve_path(weights, self.spec.base_dir), written_as=weights, base_dir=self.spec.base_dir
            )
        except WeightsError as error:
            self.context.problem(where, error.message, error.hint)
            return
        if not self.result.built:
            self.context.problem(
                where,
                "the model has no input shape, so it cannot take weights",
                "start 'layers' with '- Input: {shape: [...]}'",
            )
        elif not self.context.abstract:
            try:
                load_weights(self.result.model, path)
            except LimitError as error:  # a file over the limits: transfer.weights is its position, not its prefix
                self.context.problem(where, error.detail, error.hint)
            except SeqError as error:  # WeightsError
                self.context.problem(where, error.message, error.hint)

    def _freeze(self) -> None:
        """Apply the spec's freeze: section; rows keep their trainable state before it."""
        report = apply_freeze(self.result.model, self.spec.freeze, strict=False)
        for field_name, position, pattern in report.unmatched:
            self.context.problem(
                ("freeze", field_name, position),
                f"{pattern!r} matches no layer",
                did_you_mean(pattern, report.paths) or "list the layer names with 'seq summary'",
            )
        if report.all_but_last_error:
            self.context.problem(("freeze", "all_but_last"), report.all_but_last_error)
        for row, layer in zip(self.result.rows, self.result.model.layers):
            row.trainable_before, row.trainable_params_before = row.trainable, row.trainable_params
            row.trainable = bool(layer.trainable)
            row.trainable_params = trainable_count(layer)
        self.result.freeze = report

    def _cut(self, entries: list[LayerEntry], layers: list, upto: str | int | None):
        """Keep the entries up to and including the one named or indexed by ``upto``."""
        if upto is None:
            return entries, layers
        names = [getattr(layer, "name", None) for layer in layers]
        for position, entry in enumerate(entries):
            if upto in (entry.index, str(entry.index), names[position]):
                return entries[: position + 1], layers[: position + 1]
        self.context.problem(
            ("layers",),
            f"--upto {upto!r} matches no layer",
            did_you_mean(str(upto), [n for n in names if n]) or "give a layer name or an index into 'layers'",
        )
        return entries, layers

    def _check_unique_names(self, entries: list[LayerEntry]) -> None:
        seen: dict[str, LayerEntry] = {}
        for entry in entries:
            name = entry.args.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                self.context.problem(
                    entry.path + (entry.class_name, "name"),
                    f"layer name {name!r} is already used by layers[{seen[name].index}]",
                    "layer names in a model must be unique",
                )
            seen[name] = entry
