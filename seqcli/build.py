"""Spec -> ``keras.Sequential``, with every layer problem attributed to its spec entry.

``build_model(spec, abstract=True)`` builds inside ``keras.StatelessScope(initialize_variables=False)``:
shapes and parameter counts are exact but no weight memory is allocated, so ``summary`` and
``check`` answer for a billion-parameter spec as fast as for a tiny one.

A pretrained base (a ``keras.applications`` model or ``Model: {path: ...}``, see
:mod:`seqcli.applications`) is made when the tensor reaching it is known, so its input shape is
the previous layer's output; abstract builds never download or read its weights. Once assembled,
the model takes ``transfer.weights`` (real builds only) and the ``freeze:`` section
(:func:`seqcli.trainable.apply_freeze`); rows keep the trainable state from before the freeze.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli import applications, registry
from seqcli.errors import Problem, SeqError, clean_message, did_you_mean
from seqcli.files import resolve_path
from seqcli.keras_env import import_keras, snake_case, weightless_scope
from seqcli.limits import human_size, parse_size
from seqcli.memory import estimate_memory, spec_batch_size, spec_optimizer
from seqcli.models import ModelLoadError, WeightsError, check_weights_file, load_weights
from seqcli.shapes import shape_text
from seqcli.spec import LayerEntry, Spec
from seqcli.spec.paths import is_file_argument, layer_files
from seqcli.trainable import apply_freeze

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
        return (self.trainable and before is not None and self.trainable_params is not None
                and 0 < self.trainable_params < before)

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
            row.update(trainable_params=self.trainable_params, trainable_before=self.trainable_before,
                       trainable_params_before=self.trainable_params_before)
        return row


@dataclass
class BuiltModel:
    model: Any  # keras.Sequential, or None when a layer could not be constructed
    rows: list[LayerRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    input_shape: Shape | None = None
    input_source: str | None = None  # "Input", "input_shape", "--input-shape", or None (unbuilt)
    freeze: Any = None  # the FreezeReport of the spec's freeze: section, when it has one
    memory: Any = None  # the MemoryEstimate (seqcli.memory) to train the whole model, once it is built

    @property
    def trainable_params_before(self) -> int | None:
        """Trainable parameters before the spec's freeze: section (the same as trainable_params without one)."""
        if not self.built:
            return None
        return sum(row.trainable_params if row.trainable_params_before is None else row.trainable_params_before
                   for row in self.rows)

    @property
    def built(self) -> bool:
        return (self.input_shape is not None and bool(self.rows)
                and all(row.output_shape is not None for row in self.rows))

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
        return sum(math.prod(w.shape) * _dtype_size(w.dtype) for w in self.model.weights)


def build_model(spec: Spec, *, abstract: bool = False, input_shape: Shape | None = None,
                upto: str | int | None = None) -> BuiltModel:
    """Build the spec's model; problems are collected on the result, never raised.

    ``input_shape`` (without the batch dimension) supplies a shape for a spec that has none;
    ``upto`` (a layer name or index) stops after that layer: the guide's incremental debugging.
    """
    keras = import_keras()
    scope = weightless_scope() if abstract else contextlib.nullcontext()
    with scope:
        return _Builder(spec, keras, abstract).build(input_shape, upto)


class _Builder:
    def __init__(self, spec: Spec, keras, abstract: bool = False):
        self.spec = spec
        self.keras = keras
        self.abstract = abstract
        self.result = BuiltModel(model=None)
        self.names = {e.args.get("name") for e in spec.layers if isinstance(e.args.get("name"), str)}

    def problem(self, path, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.result.problems.append(self.spec.problem(path, message, hint, key=key))

    def build(self, input_shape: Shape | None, upto: str | int | None) -> BuiltModel:
        entries = list(self.spec.layers)
        input_tensor, entries = self._input(entries, input_shape)
        layers = [self._construct(entry) for entry in entries]
        self._check_unique_names(entries)
        entries, layers = self._cut(entries, layers, upto)
        if any(layer is None for layer in layers):
            return self.result
        layers = self._trace_shapes(entries, layers, input_tensor)
        if self.result.problems:
            return self.result
        # A Keras layer takes input_shape as an argument; a base gets it from an explicit Input.
        keeps_shape = self.result.input_source == "input_shape" and not isinstance(layers[0], self.keras.Model)
        stack = [input_tensor, *layers] if input_tensor is not None and not keeps_shape else layers
        try:
            self.result.model = self.keras.Sequential(stack, name=self.spec.name or "sequential")
        except (ValueError, TypeError) as error:
            self.problem(("layers",), f"Keras could not assemble the model: {error}")
            return self.result
        if upto is None and self.spec.transfer is not None and self.spec.transfer.weights is not None:
            self._pretrained_weights(self.spec.transfer.weights)
        if upto is None and self.spec.freeze is not None:
            self._freeze()
        if self.result.built:
            self.result.memory = estimate_memory(self.result.model, batch_size=spec_batch_size(self.spec),
                                                 optimizer=spec_optimizer(self.spec))
        self._compare_expectations(whole_model=upto is None)
        return self.result

    def _pretrained_weights(self, weights: str) -> None:
        """transfer.weights: the whole model's pretrained weights, loaded once it is built (never when abstract)."""
        where = ("transfer", "weights")
        if not self.spec.may_read(where):
            return  # refused, and said so already
        try:
            path = check_weights_file(resolve_path(weights, self.spec.base_dir), written_as=weights,
                                      base_dir=self.spec.base_dir)
        except WeightsError as error:
            self.problem(where, error.message, error.hint)
            return
        if not self.result.built:
            self.problem(where, "the model has no input shape, so it cannot take weights",
                         "start 'layers' with '- Input: {shape: [...]}'")
        elif not self.abstract:
            try:
                load_weights(self.result.model, path)
            except SeqError as error:  # WeightsError, or a file over the limits
                self.problem(where, error.message, error.hint)

    def _freeze(self) -> None:
        """Apply the spec's freeze: section; rows keep their trainable state before it."""
        report = apply_freeze(self.result.model, self.spec.freeze, strict=False)
        for field_name, position, pattern in report.unmatched:
            self.problem(("freeze", field_name, position), f"{pattern!r} matches no layer",
                         did_you_mean(pattern, report.paths) or "list the layer names with 'seq summary'")
        if report.all_but_last_error:
            self.problem(("freeze", "all_but_last"), report.all_but_last_error)
        for row, layer in zip(self.result.rows, self.result.model.layers):
            row.trainable_before, row.trainable_params_before = row.trainable, row.trainable_params
            row.trainable = bool(layer.trainable)
            row.trainable_params = _trainable_count(layer)
        self.result.freeze = report

    def _input(self, entries: list[LayerEntry], override: Shape | None):
        first = entries[0] if entries else None
        shape, source = None, None
        for entry in entries[1:]:
            if entry.class_name == "Input":
                self.problem(entry.path + ("Input",), "Input must be the first entry of 'layers'",
                             "move it to the top, or remove it", key=True)
        if first is not None and first.class_name == "Input":
            entries = entries[1:]
            shape, source = self._input_entry_shape(first), "Input"
            input_args = self._input_arguments(first)
        elif first is not None and "input_shape" in first.args:
            shape, source, input_args = self._shape(first.path + (first.class_name, "input_shape"),
                                                    first.args["input_shape"]), "input_shape", {}
        else:
            input_args = {}
        if override is not None and shape is None:
            shape, source = tuple(override), "--input-shape"
        self.result.input_shape = shape
        self.result.input_source = source if shape is not None else None
        if shape is None:
            return None, entries
        try:
            tensor = self.keras.Input(shape=shape, **{k: v for k, v in input_args.items() if k != "shape"})
        except Exception as error:  # Keras raises ValueError, TypeError... for a dtype or shape it cannot use
            self.problem(first.path + ("Input",) if source == "Input" else ("layers", 0),
                         f"Keras rejected the input: {clean_message(error)}",
                         "check Input's shape and dtype (e.g. float32, int32)", key=source == "Input")
            self.result.input_shape = None
            return None, entries
        return tensor, entries

    def _input_entry_shape(self, entry: LayerEntry) -> Shape | None:
        args = entry.args
        if "shape" not in args and "batch_shape" not in args:
            self.problem(entry.path + ("Input",), "Input needs a shape", "write 'Input: {shape: [28, 28, 1]}'")
            return None
        if "batch_shape" in args:
            batch_shape = self._shape(entry.path + ("Input", "batch_shape"), args["batch_shape"])
            return batch_shape[1:] if batch_shape else None
        return self._shape(entry.path + ("Input", "shape"), args["shape"])

    def _input_arguments(self, entry: LayerEntry) -> dict:
        args = {}
        for key, value in entry.args.items():
            if key not in registry.INPUT_ARGUMENTS:
                self.problem(entry.path + ("Input", key), f"unknown argument for Input: {key!r}",
                             did_you_mean(key, registry.INPUT_ARGUMENTS), key=True)
            elif key != "batch_shape":
                args[key] = value
        return args

    def _shape(self, path, value) -> Shape | None:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return (value,)
        if isinstance(value, list) and value and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value):
            return tuple(value)
        self.problem(path, f"expected a shape such as [28, 28, 1], got {value!r}",
                     "list the sizes of each dimension, without the batch dimension")
        return None

    def _cut(self, entries: list[LayerEntry], layers: list, upto: str | int | None):
        """Keep the entries up to and including the one named or indexed by ``upto``."""
        if upto is None:
            return entries, layers
        names = [getattr(layer, "name", None) for layer in layers]
        for position, entry in enumerate(entries):
            if upto in (entry.index, str(entry.index), names[position]):
                return entries[: position + 1], layers[: position + 1]
        self.problem(("layers",), f"--upto {upto!r} matches no layer",
                     did_you_mean(str(upto), [n for n in names if n]) or "give a layer name or an index into 'layers'")
        return entries, layers

    def _construct(self, entry: LayerEntry):
        if entry.class_name == "Input" or not self.spec.may_read(entry.path):
            return None  # a file it names is refused, and said so already
        if applications.is_base(entry.class_name):
            return self._base(entry)
        cls = self._resolve(entry)
        if cls is None:
            return None
        args = self._arguments(entry, cls)
        if args is None:
            return None
        args.setdefault("name", self._default_name(cls))
        try:
            return cls(**args)
        except Exception as error:  # Keras raises ValueError, TypeError, AttributeError... for bad arguments
            self.problem(entry.path + (entry.class_name,), f"Keras rejected {entry.class_name}: "
                         f"{_keras_message(entry, error)}",
                         "check the arguments against the Keras documentation of this layer", key=True)
            return None

    def _base(self, entry: LayerEntry) -> _PendingBase | None:
        """Check a base entry's arguments; the base itself is made once its input shape is known."""
        name, path = entry.class_name, entry.path + (entry.class_name,)
        is_application = name in applications.APPLICATIONS
        accepted = applications.application_arguments(name) if is_application else applications.SAVED_MODEL_ARGUMENTS
        ok = True
        for key, value in entry.args.items():
            if key in applications.SUPPLIED_ARGUMENTS and is_application:
                self.problem(path + (key,), f"{key} is not given in a spec",
                             f"{name} takes its input from the entry before it", key=True)
                ok = False
            elif key not in accepted:
                self.problem(path + (key,), f"unknown argument for {name}",
                             did_you_mean(key, accepted) or f"{name} accepts: {', '.join(sorted(accepted))}", key=True)
                ok = False
            elif isinstance(value, dict):
                self.problem(path + (key,), f"{key} does not take a mapping", "give a plain value")
                ok = False
        if entry.index > 0 and "input_shape" in entry.args and self.spec.layers[0] is not entry:
            self.problem(path + ("input_shape",), "input_shape only takes effect on the first layer",
                         "remove it: a base takes its input shape from the entry before it", key=True)
            ok = False
        found = (applications.weights_problems(name, entry.args.get("weights"), self.spec.base_dir)
                 if is_application else applications.saved_model_problems(entry.args, self.spec.base_dir))
        self._base_problems(entry, found)
        if not ok or found:
            return None
        args = {k: tuple(v) if k == "input_shape" and isinstance(v, list) else v for k, v in entry.args.items()}
        return _PendingBase(entry, args)

    def _base_problems(self, entry: LayerEntry, problems: list) -> None:
        path = entry.path + (entry.class_name,)
        for found in problems:
            if found.key is not None and found.key in entry.args:
                self.problem(path + (found.key,), found.message, found.hint)
            else:
                self.problem(path, found.message, found.hint, key=True)

    def _realize(self, entry: LayerEntry, pending: _PendingBase, tensor):
        """Make a base for its incoming tensor; None (with a problem at the entry) when it cannot be made."""
        shape = tuple(tensor.shape[1:]) if tensor is not None else pending.args.get("input_shape")
        name, path = entry.class_name, entry.path + (entry.class_name,)
        try:
            if name == applications.SAVED_MODEL:
                return applications.load_saved_model(pending.args, abstract=self.abstract,
                                                     base_dir=self.spec.base_dir)
            found = applications.shape_problems(name, pending.args, shape)
            self._base_problems(entry, found)
            if found:
                return None
            return applications.construct_application(name, pending.args, shape, abstract=self.abstract,
                                                      base_dir=self.spec.base_dir)
        except applications.WeightsDownloadError as error:
            weights_path = path + ("weights",) if "weights" in entry.args else path
            self.problem(weights_path, error.message, error.hint, key="weights" not in entry.args)
        except ModelLoadError as error:
            self.problem(path, f"Keras could not make {name}: {error.message}", error.hint, key=True)
        except SeqError as error:  # a file over the limits (seqcli.limits)
            self.problem(path, error.message, error.hint, key=True)
        except Exception as error:  # Keras raises ValueError, TypeError, OSError... for a base it cannot make
            self.problem(path, f"Keras could not make {name}: {clean_message(error)}",
                         "check the arguments against the Keras documentation of this model", key=True)
        return None

    def _default_name(self, cls: type) -> str:
        """Keras's own naming (dense, dense_1, ...) counted within this spec, not per process."""
        base = snake_case(cls.__name__)
        name, number = base, 0
        while name in self.names:
            number += 1
            name = f"{base}_{number}"
        self.names.add(name)
        return name

    def _resolve(self, entry: LayerEntry):
        classes = registry.layer_classes()
        if entry.class_name in classes:
            return classes[entry.class_name]
        reason = registry.excluded_reason(entry.class_name)
        if reason:
            self.problem(entry.path + (entry.class_name,), f"{entry.class_name} cannot be used in a spec: {reason}",
                         key=True)
        else:
            self.problem(entry.path + (entry.class_name,), f"unknown layer class {entry.class_name!r}",
                         did_you_mean(entry.class_name, registry.known_names())
                         or "layer classes are spelled as in keras.layers, e.g. Dense, Conv2D", key=True)
        return None

    def _arguments(self, entry: LayerEntry, cls: type) -> dict | None:
        accepted, required = registry.accepted_arguments(cls)
        path = entry.path + (entry.class_name,)
        args: dict = {}
        ok = True
        for key, value in entry.args.items():
            if key not in accepted:
                self.problem(path + (key,), f"unknown argument for {entry.class_name}",
                             did_you_mean(key, accepted)
                             or f"{entry.class_name} accepts: {', '.join(sorted(accepted))}", key=True)
                ok = False
                continue
            converted = self._argument_value(path + (key,), key, value)
            if converted is _INVALID:
                ok = False
            args[key] = converted
        missing = sorted(required - set(entry.args))
        if missing:
            self.problem(path, f"{entry.class_name} needs {', '.join(missing)}",
                         f"add {missing[0]}: ... to its arguments", key=True)
            ok = False
        if entry.index > 0 and "input_shape" in args and self.spec.layers[0] is not entry:
            self.problem(path + ("input_shape",), "input_shape only takes effect on the first layer",
                         "remove it, or move the shape to an 'Input' entry at the top", key=True)
            ok = False
        return args if ok else None

    def _argument_value(self, path, key: str, value):
        module = registry.object_argument_module(key)
        if key in registry.NESTED_LAYER_ARGUMENTS and isinstance(value, dict):
            return self._nested_layer(path, value)
        if isinstance(value, dict):
            if module is None:
                self.problem(path, f"{key} does not take a mapping",
                             "mappings name Keras objects only for *_initializer, *_regularizer, *_constraint "
                             "and layer arguments")
                return _INVALID
            return self._keras_object(path, module, value)
        if is_file_argument(key, value):
            return str(resolve_path(value, self.spec.base_dir))  # Keras would read it from the current folder
        if key == "input_shape" or key == "kernel_size" or key == "pool_size" or key == "strides":
            return tuple(value) if isinstance(value, list) else value
        return value

    def _keras_object(self, path, module: str, value: dict):
        classes = registry.object_classes(module)
        if len(value) != 1:
            self.problem(path, f"name one {module[:-1]} class, got {len(value)} keys",
                         "for example {GlorotUniform: {seed: 1}}")
            return _INVALID
        (name, args), = value.items()
        if name not in classes:
            self.problem(path + (name,), f"unknown {module[:-1]} {name!r}", did_you_mean(name, classes), key=True)
            return _INVALID
        try:
            return classes[name](**(args or {}))
        except Exception as error:  # whatever the constructor raises is about the arguments given
            self.problem(path + (name,), f"Keras rejected {name}: {clean_message(error)}", key=True)
            return _INVALID

    def _nested_layer(self, path, value: dict):
        if len(value) != 1:
            self.problem(path, "a nested layer names exactly one class", "for example layer: {LSTM: {units: 32}}")
            return _INVALID
        (name, args), = value.items()
        nested = LayerEntry(-1, name, dict(args or {}), None, path)
        layer = self._construct(nested)
        return layer if layer is not None else _INVALID

    def _check_unique_names(self, entries: list[LayerEntry]) -> None:
        seen: dict[str, LayerEntry] = {}
        for entry in entries:
            name = entry.args.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                self.problem(entry.path + (entry.class_name, "name"),
                             f"layer name {name!r} is already used by layers[{seen[name].index}]",
                             "layer names in a model must be unique")
            seen[name] = entry

    def _trace_shapes(self, entries: list[LayerEntry], layers: list, tensor) -> list:
        """Call each layer on the symbolic tensor, recording rows; returns the layers with bases made."""
        made = []
        for entry, layer in zip(entries, layers):
            if isinstance(layer, _PendingBase):
                layer = self._realize(entry, layer, tensor)
                if layer is None:
                    self.result.rows.append(LayerRow(entry.index, entry.args.get("name") or "?", entry.class_name,
                                                     None, None, None, entry.args.get("trainable", True) is not False,
                                                     entry.expect))
                    tensor = None
                    continue
            made.append(layer)
            row = LayerRow(entry.index, layer.name, entry.class_name, None, None, None, bool(layer.trainable),
                           entry.expect)
            if isinstance(layer, self.keras.Model):
                row.inner_layers = applications.inner_layer_count(layer)
            self.result.rows.append(row)
            if tensor is None:
                continue
            try:
                tensor = layer(tensor)
            except Exception as error:  # Keras raises many types for a shape that does not fit
                shape = shape_text(getattr(tensor, "shape", None))
                self.problem(entry.path + (entry.class_name,),
                             f"{entry.class_name} cannot take input of shape {shape}: {_keras_message(entry, error)}",
                             "check the previous layers' output shapes with 'seq summary --upto'", key=True)
                tensor = None
                continue
            row.output_shape = tuple(tensor.shape)
            row.params = layer.count_params()
            row.trainable_params = _trainable_count(layer)
        return made

    def _compare_expectations(self, whole_model: bool) -> None:
        for row in self.result.rows:
            if row.expect is None or row.output_shape is None:
                continue
            row.expect_ok = shape_matches(row.expect, row.output_shape[1:])
            if not row.expect_ok:
                self.problem(("layers", row.index, "expect"),
                             f"expected output shape {shape_text(row.expect)}, "
                             f"built {shape_text(row.output_shape[1:])}",
                             "update 'expect' if the new shape is intended")
        if whole_model:
            self._compare_model_expectations()

    def _compare_model_expectations(self) -> None:
        expect = self.spec.expect
        if expect is None or not self.result.built:
            return
        output = self.result.output_shape[1:]
        if expect.output is not None and not shape_matches(expect.output, output):
            self.problem(("expect", "output"), f"expected model output {shape_text(expect.output)}, "
                                               f"built {shape_text(output)}")
        params, trainable = self.result.params, self.result.trainable_params
        if expect.params is not None and params != expect.params:
            self.problem(("expect", "params"), f"expected {expect.params:,} parameters, built {params:,}")
        if expect.max_params is not None and params > expect.max_params:
            self.problem(("expect", "max_params"), f"model has {params:,} parameters, "
                                                   f"over the limit of {expect.max_params:,}")
        memory = self.result.memory
        if expect.max_memory is not None and memory is not None and memory.total > parse_size(expect.max_memory):
            self.problem(("expect", "max_memory"), f"training needs about {human_size(memory.total)}, over the "
                                                   f"limit of {expect.max_memory}: {memory.text()}",
                         "make the model, its input or data.batch_size smaller, or raise expect.max_memory")
        if expect.trainable_params is not None and trainable != expect.trainable_params:
            self.problem(("expect", "trainable_params"),
                         f"expected {expect.trainable_params:,} trainable parameters, built {trainable:,}")


_INVALID = object()


def _keras_message(entry: LayerEntry, error: Exception) -> str:
    """Keras's message for a layer that failed; for a layer that reads a file (a vocabulary...) only the
    error's class, since Keras quotes the values it read (``Received: ...``) and they are the file's."""
    files = layer_files(entry.args, ())
    if not files:
        return clean_message(error)
    named = ", ".join(f"{'.'.join(map(str, f.path))} file {f.value!r}" for f in files)
    return (f"{type(error).__name__} while using {named} (Keras's message is not shown: it may quote the "
            "file's contents)")


@dataclass
class _PendingBase:
    """A base entry whose arguments are checked; it is made when its input shape is known."""

    entry: LayerEntry
    args: dict

    @property
    def name(self) -> str | None:
        return self.args.get("name")


def _trainable_count(layer) -> int:
    return sum(math.prod(w.shape) for w in layer.trainable_weights)


def shape_matches(expected, actual) -> bool:
    return len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual))


def _dtype_size(dtype) -> int:
    import numpy as np

    try:
        return np.dtype(str(dtype)).itemsize
    except TypeError:
        return 4


# ----------------------------------------------------------------------------- models with weights


def model_from_spec(spec: Spec, *, weights: str | Path | None = None, input_shape: Shape | None = None,
                    batch_size: int = 0, what: str = "this model"):
    """Build the spec's model for real (bases with their weights, the freeze: section applied), load
    ``weights`` (a .weights.h5 or a .keras file) into it, and return the Keras model. First a weightless build
    estimates the memory to run batches of ``batch_size``: over the budget, a LimitError says so and nothing
    is allocated. Raises SpecError for any problem in the spec, WeightsError for a weights file that does not fit."""
    check_spec_memory(spec, input_shape=input_shape, batch_size=batch_size, what=what)
    built = build_model(spec, input_shape=input_shape)
    if built.problems:
        raise spec.error(built.problems)
    if not built.built:
        raise SeqError("the spec's model has no input shape, so it cannot hold weights",
                       hint="start 'layers' with '- Input: {shape: [...]}'")
    if weights is not None:
        load_weights(built.model, weights)
    return built.model


def check_spec_memory(spec: Spec, *, input_shape: Shape | None, batch_size: int, what: str,
                      training: bool = False) -> None:
    """LimitError when the spec's model (estimated on a weightless build) is over the memory budget."""
    from seqcli.memory import check_budget, spec_optimizer

    abstract = build_model(spec, abstract=True, input_shape=input_shape)
    if abstract.problems:
        raise spec.error(abstract.problems)
    if abstract.built:
        check_budget(estimate_memory(abstract.model, batch_size=batch_size, optimizer=spec_optimizer(spec),
                                     training=training), what)

