"""Explicit registry of what a spec may name: Keras layers, ``Input``, and nested Keras objects.

Names resolve through tables built from Keras's public namespaces, never through
``keras.layers.deserialize`` or ``getattr`` on user text, so a spec cannot reach code that
runs arbitrary functions (Lambda and the like are excluded).
"""

from __future__ import annotations

import functools
import inspect

from seqcli.keras_env import import_keras

# Layers that run user code, wrap foreign frameworks, or need several inputs: none fits a spec'd Sequential stack.
EXCLUDED_LAYERS = {
    "Lambda": "it runs arbitrary Python code",
    "TFSMLayer": "it loads a TensorFlow SavedModel; use 'Model: {path: ...}' with a .keras file",
    "JaxLayer": "it wraps JAX code",
    "FlaxLayer": "it wraps Flax code",
    "TorchModuleWrapper": "it wraps PyTorch code",
    "Layer": "it is the abstract base class",
    "InputLayer": "use 'Input: {shape: [...]}'",
    "InputSpec": "it is not a layer",
    "Wrapper": "it is an abstract base class",
    "RNN": "it needs a cell object; use LSTM, GRU or SimpleRNN",
    "StackedRNNCells": "it needs cell objects; stack LSTM/GRU layers instead",
    "Add": "it takes several inputs, which a Sequential model cannot give it",
    "Subtract": "it takes several inputs, which a Sequential model cannot give it",
    "Multiply": "it takes several inputs, which a Sequential model cannot give it",
    "Average": "it takes several inputs, which a Sequential model cannot give it",
    "Maximum": "it takes several inputs, which a Sequential model cannot give it",
    "Minimum": "it takes several inputs, which a Sequential model cannot give it",
    "Concatenate": "it takes several inputs, which a Sequential model cannot give it",
    "Dot": "it takes several inputs, which a Sequential model cannot give it",
    "Attention": "it takes several inputs, which a Sequential model cannot give it",
    "AdditiveAttention": "it takes several inputs, which a Sequential model cannot give it",
    "MultiHeadAttention": "it takes several inputs, which a Sequential model cannot give it",
    "GroupedQueryAttention": "it takes several inputs, which a Sequential model cannot give it",
}

# Arguments that accept a nested Keras object, written like a layer: {GlorotUniform: {seed: 1}} or a string.
OBJECT_ARGUMENT_SUFFIXES = {
    "_initializer": "initializers",
    "_regularizer": "regularizers",
    "_constraint": "constraints",
}
NESTED_LAYER_ARGUMENTS = {"layer", "backward_layer"}
# Arguments Keras 3 still takes through **kwargs for older code, warning (or silently) that they are deprecated:
# not in the signature, so listed here. keras.io examples still use some (LeakyReLU(alpha=0.2) in the DCGAN).
DEPRECATED_ARGUMENTS = {
    "LeakyReLU": ("alpha",),
    "Embedding": ("input_length",),
    "LSTM": ("implementation",),
    "GRU": ("implementation",),
    "LayerNormalization": ("rms_scaling",),
}
# Accepted by every layer through **kwargs (keras.layers.Layer and its input-shape shortcuts).
BASE_LAYER_ARGUMENTS = {
    "activity_regularizer",
    "trainable",
    "dtype",
    "autocast",
    "name",
    "input_shape",
    "input_dim",
    "batch_size",
}
INPUT_ARGUMENTS = ("shape", "batch_size", "dtype", "sparse", "ragged", "batch_shape", "name", "optional")


def _is_cell(name: str) -> bool:
    return name.endswith("Cell") or name.endswith("Cells")


def public_classes(namespace, base: type = object) -> dict[str, type]:
    """The classes a public Keras namespace exports under capitalised names, subclasses of ``base``."""
    table = {}
    for name in dir(namespace):
        value = getattr(namespace, name)
        if name[:1].isupper() and isinstance(value, type) and issubclass(value, base):
            table[name] = value
    return table


@functools.cache
def layer_classes() -> dict[str, type]:
    """Every built-in ``keras.layers`` class a spec may use, by its public name."""
    keras = import_keras()

    return {
        name: cls
        for name, cls in public_classes(keras.layers, keras.layers.Layer).items()
        if name not in EXCLUDED_LAYERS and not _is_cell(name)
    }


@functools.cache
def object_classes(module: str) -> dict[str, type]:
    """Public classes of keras.initializers / regularizers / constraints, by name."""
    keras = import_keras()

    return public_classes(getattr(keras, module))


def known_names() -> list[str]:
    return ["Input", *layer_classes()]


def excluded_reason(name: str) -> str | None:
    if name in EXCLUDED_LAYERS:
        return EXCLUDED_LAYERS[name]
    if _is_cell(name):
        return "cells are used inside RNN layers; use LSTM, GRU or SimpleRNN"
    return None


@functools.cache
def accepted_arguments(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(all accepted keyword arguments, required ones) of a layer class, read from its signature."""
    accepted, required = signature_arguments(cls)
    return frozenset(accepted | BASE_LAYER_ARGUMENTS), required


def input_dim_is_shape(class_name: str) -> bool:
    """Whether ``input_dim`` on a layer of this class is keras.layers.Layer's input shape ``(input_dim,)``,
    not an argument of its own (Embedding's vocabulary size)."""
    cls = layer_classes().get(class_name)
    return cls is not None and "input_dim" not in signature_arguments(cls)[0]


def shape_argument(class_name: str, args: dict) -> str | None:
    """The argument that gives a first layer of this class the model's input shape: ``input_dim`` (Keras
    prefers it), ``input_shape``, or None."""
    if "input_dim" in args and input_dim_is_shape(class_name):
        return "input_dim"
    return "input_shape" if "input_shape" in args else None


@functools.cache
def signature_arguments(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(keyword arguments, required ones) named in the signatures of a layer class and the classes its
    ``**kwargs`` reach, up to the first that takes none."""
    accepted, required = set(), set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        init = vars(klass)["__init__"]  # the class's own, not an inherited one
        parameters = inspect.signature(init).parameters.values()
        for parameter in list(parameters)[1:]:
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            accepted.add(parameter.name)
            if klass is cls and parameter.default is parameter.empty:
                required.add(parameter.name)
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            break
    return frozenset(accepted), frozenset(required)


def object_argument_module(argument: str) -> str | None:
    for suffix, module in OBJECT_ARGUMENT_SUFFIXES.items():
        if argument.endswith(suffix):
            return module
    return None
