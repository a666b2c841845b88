"""Spec entries to Keras layers: the class from the registry, arguments checked against its signature, nested
objects (initializers, regularizers, layers) made, and Keras's own naming counted within the spec."""

from __future__ import annotations

import warnings
from dataclasses import replace

from seqcli import applications, registry
from seqcli.errors import MissingDependency, clean_message, did_you_mean
from seqcli.files import resolve_path
from seqcli.keras_env import running_light, snake_case
from seqcli.modelbuild.adapt import adapted_arguments
from seqcli.modelbuild.bases import check_base
from seqcli.modelbuild.context import BuildContext
from seqcli.specfile import LayerEntry
from seqcli.specfile.paths import is_file_argument, layer_files

_INVALID = object()


class LayerMaker:
    """Makes the layer for each entry of one spec; a problem is recorded at the entry and the layer is None."""

    def __init__(self, context: BuildContext):
        self.context = context
        self.spec = context.spec
        self.names = {e.args.get("name") for e in self.spec.layers if isinstance(e.args.get("name"), str)}
        self.counts: dict[str, int] = {}  # automatic names given so far, per snake_case class name

    def construct(self, entry: LayerEntry):
        """The entry's layer, a PendingBase for a pretrained base, or None (an Input entry, or a problem)."""
        if entry.class_name == "Input" or not self.spec.may_read(entry.path):
            return None  # a file it names is refused, and said so already
        if applications.is_base(entry.class_name):
            return check_base(self.context, entry)
        entry = replace(entry, args=adapted_arguments(entry, self.context.adapted))
        cls = self._resolve(entry)
        if cls is None:
            return None
        args = self._arguments(entry, cls)
        if args is None:
            return None
        if "name" not in args:  # an explicit name takes no number from Keras's per-class count
            args["name"] = self._default_name(cls)
        try:
            return self._make(entry, cls, args)
        except ImportError as error:  # a package the layer needs (TensorFlow, on a light backend): not the spec's
            raise self._missing_package(entry, error) from error
        except Exception as error:  # Keras raises ValueError, TypeError, AttributeError... for bad arguments
            self.context.problem(
                entry.path + (entry.class_name,),
                f"Keras rejected {entry.class_name}: {keras_message(entry, error)}",
                "check the arguments against the Keras documentation of this layer",
                key=True,
            )
            return None

    def _missing_package(self, entry: LayerEntry, error: ImportError) -> MissingDependency:
        """The error for a layer Keras cannot make without a package that is not installed, at its entry."""
        where = self.spec.problem(entry.path + (entry.class_name,), "", key=True)
        hint = "pip install tensorflow: Keras makes this layer only with TensorFlow" if running_light() else None
        return MissingDependency(f"{where.location()}: {where.path}: {clean_message(error)}", hint=hint)

    def _make(self, entry: LayerEntry, cls: type, args: dict):
        """``cls(**args)``; the warnings Keras gives for a deprecated argument become notes at that argument."""
        deprecated = [key for key in registry.DEPRECATED_ARGUMENTS.get(entry.class_name, ()) if key in args]
        if not deprecated:
            return cls(**args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer = cls(**args)
        for warning in caught:
            self.context.note(entry.path + (entry.class_name, deprecated[0]), str(warning.message))
        return layer

    def _default_name(self, cls: type) -> str:
        """Keras's own naming counted within this spec, not per process: the n-th unnamed layer of a class
        is ``dense``, ``dense_1``, ... (keras.src.utils.naming.auto_name). Where Keras would give a name the
        spec already uses (and fail on the duplicate), the count moves on to a free one."""
        base = snake_case(cls.__name__)
        while True:
            number = self.counts.get(base, 0)
            self.counts[base] = number + 1
            name = f"{base}_{number}" if number else base
            if name not in self.names:
                self.names.add(name)
                return name

    def _resolve(self, entry: LayerEntry):
        classes = registry.layer_classes()
        if entry.class_name in classes:
            return classes[entry.class_name]
        path = entry.path + (entry.class_name,)
        reason = registry.excluded_reason(entry.class_name)
        if reason:
            self.context.problem(path, f"{entry.class_name} cannot be used in a spec: {reason}", key=True)
        else:
            self.context.problem(
                path,
                f"unknown layer class {entry.class_name!r}",
                did_you_mean(entry.class_name, registry.known_names())
                or "layer classes are spelled as in keras.layers, e.g. Dense, Conv2D",
                key=True,
            )
        return None

    def _arguments(self, entry: LayerEntry, cls: type) -> dict | None:
        accepted, required = registry.accepted_arguments(cls)
        accepted = accepted | frozenset(registry.DEPRECATED_ARGUMENTS.get(entry.class_name, ()))
        path = entry.path + (entry.class_name,)
        args: dict = {}
        ok = True
        for key, value in entry.args.items():
            if key not in accepted:
                self.context.problem(
                    path + (key,),
                    f"unknown argument for {entry.class_name}",
                    did_you_mean(key, accepted) or f"{entry.class_name} accepts: {', '.join(sorted(accepted))}",
                    key=True,
                )
                ok = False
                continue
            converted = self._argument_value(path + (key,), key, value)
            if converted is _INVALID:
                ok = False
            args[key] = converted
        missing = sorted(required - set(entry.args))
        if missing:
            self.context.problem(
                path,
                f"{entry.class_name} needs {', '.join(missing)}",
                f"add {missing[0]}: ... to its arguments",
                key=True,
            )
            ok = False
        late = registry.shape_argument(entry.class_name, args)
        if entry.index > 0 and late and self.spec.layers[0] is not entry:
            self.context.problem(
                path + (late,),
                f"{late} only takes effect on the first layer",
                "remove it, or move the shape to an 'Input' entry at the top",
                key=True,
            )
            ok = False
        return args if ok else None

    def _argument_value(self, path, key: str, value):
        module = registry.object_argument_module(key)
        if key in registry.NESTED_LAYER_ARGUMENTS and isinstance(value, dict):
            return self._nested_layer(path, value)
        if isinstance(value, dict):
            if module is None:
                self.context.problem(
                    path,
                    f"{key} does not take a mapping",
                    "mappings name Keras objects only for *_initializer, *_regularizer, "
                    "*_constraint and layer arguments",
                )
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
            self.context.problem(
                path, f"name one {module[:-1]} class, got {len(value)} keys", "for example {GlorotUniform: {seed: 1}}"
            )
            return _INVALID
        ((name, args),) = value.items()
        if name not in classes:
            self.context.problem(
                path + (name,), f"unknown {module[:-1]} {name!r}", did_you_mean(name, classes), key=True
            )
            return _INVALID
        try:
            return classes[name](**(args or {}))
        except Exception as error:  # whatever the constructor raises is about the arguments given
            self.context.problem(path + (name,), f"Keras rejected {name}: {clean_message(error)}", key=True)
            return _INVALID

    def _nested_layer(self, path, value: dict):
        if len(value) != 1:
            self.context.problem(
                path, "a nested layer names exactly one class", "for example layer: {LSTM: {units: 32}}"
            )
            return _INVALID
        ((name, args),) = value.items()
        nested = LayerEntry(-1, name, dict(args or {}), None, path)
        layer = self.construct(nested)
        return layer if layer is not None else _INVALID


def keras_message(entry: LayerEntry, error: Exception) -> str:
    """Keras's message for a layer that failed; for a layer that reads a file (a vocabulary...) only the
    error's class, since Keras quotes the values it read (``Received: ...``) and they are the file's."""
    files = layer_files(entry.args, ())
    if not files:
        return clean_message(error)
    named = ", ".join(f"{'.'.join(map(str, f.path))} file {f.value!r}" for f in files)
    return (
        f"{type(error).__name__} while using {named} (Keras's message is not shown: it may quote the file's contents)"
    )
