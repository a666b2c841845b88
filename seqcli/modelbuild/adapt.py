"""Preprocessing layers that learn their state from the training data (Keras's ``adapt``).

A ``Normalization`` without ``mean``/``variance``, a ``StringLookup``, ``IntegerLookup`` or
``TextVectorization`` without ``vocabulary`` and a ``Discretization`` without ``bin_boundaries`` leave their
state to the data. Before a run's first step, :func:`adapt_layers` calls Keras's own ``layer.adapt`` on
the training split as it arrives at each such layer: the spec's layers before it (already adapted) run
over the batches first, so a ``Normalization`` after a ``Rescaling`` sees rescaled values.

The state it learns is kept as the constructor arguments that give a layer that state
(``{"mean": ..., "variance": ...}``, ``{"vocabulary": ...}``, ``{"bin_boundaries": ...}``), by layer index:
plain JSON data that a checkpoint records and every later build takes (:func:`build_model`'s ``adapted``),
so a resumed run, ``model.keras`` and everything made from it carry the same state without adapting again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seqcli.specfile import LayerEntry, Spec

# Layer class -> (the arguments that give its state, the argument whose absence makes it adapt).
ADAPTABLE: dict[str, tuple[tuple[str, ...], str]] = {
    "Normalization": (("mean", "variance"), "mean"),
    "StringLookup": (("vocabulary", "idf_weights"), "vocabulary"),
    "IntegerLookup": (("vocabulary", "idf_weights"), "vocabulary"),
    "TextVectorization": (("vocabulary", "idf_weights"), "vocabulary"),
    "Discretization": (("bin_boundaries",), "bin_boundaries"),
}
# An adapted Discretization takes bin_boundaries; Keras refuses it together with num_bins.
REPLACED_ARGUMENTS = {"Discretization": ("num_bins",)}

AdaptedState = dict[str, dict[str, Any]]  # str(layer index) -> constructor arguments


class AdaptError(Exception):
    """Keras's adapt failed on the data; the caller places it at the layer's entry. Only the error's class
    is kept: Keras's message may quote the data (a token, a value)."""

    def __init__(self, entry: LayerEntry, error_class: str):
        super().__init__(error_class)
        self.entry = entry
        self.error_class = error_class


@dataclass
class AdaptPlan:
    """A layer that will adapt: its spec entry and what it learns, in words."""

    entry: LayerEntry
    learns: str

    def as_dict(self, source: str | None, samples: int | None) -> dict:
        return {
            "index": self.entry.index,
            "class": self.entry.class_name,
            "learns": self.learns,
            "source": source,
            "samples": samples,
        }


def adapting_layers(spec: Spec) -> list[AdaptPlan]:
    """The spec's layers whose state is left to the training data, in model order."""
    plans = []
    for entry in spec.layers:
        found = ADAPTABLE.get(entry.class_name)
        if found is None or entry.args.get(found[1]) is not None:
            continue
        learns = ", ".join(name for name in found[0] if name != "idf_weights" or _tf_idf(entry.args))
        plans.append(AdaptPlan(entry, learns))
    return plans


def _tf_idf(args: dict) -> bool:
    return args.get("output_mode") == "tf_idf"


def adapting_problems(spec: Spec) -> list:
    """A layer that must adapt in a spec with no training data, reported at the layer's entry."""
    data = spec.document.data.get("data")
    if isinstance(data, dict) and data.get("train") is not None:
        return []  # a data.train the spec has, valid or not (its own problems are reported there)
    return [
        spec.problem(
            plan.entry.path + (plan.entry.class_name,),
            f"{plan.entry.class_name} learns its {plan.learns} from the training data, but the spec has no data.train",
            f"add data.train, or give the layer its {plan.learns}",
            key=True,
        )
        for plan in adapting_layers(spec)
    ]


def adapted_arguments(entry: LayerEntry, adapted: AdaptedState | None) -> dict:
    """The entry's arguments with its learned state in place (unchanged when it learned none)."""
    state = (adapted or {}).get(str(entry.index))
    if not state:
        return entry.args
    args = {key: value for key, value in entry.args.items() if key not in REPLACED_ARGUMENTS.get(entry.class_name, ())}
    return {**args, **state}


def adapt_layers(
    spec: Spec, build_upto: Callable[[int, AdaptedState], Any], batches: Callable[[], Any]
) -> AdaptedState:
    """Adapt each layer of :func:`adapting_layers` in model order, as ``layer.adapt(dataset)`` would.

    ``build_upto(index, adapted)`` builds the model up to and including layer ``index`` with the state
    learned so far; ``batches()`` gives the training inputs as a batched ``tf.data.Dataset``. Raises
    :class:`AdaptError` when Keras's adapt fails.
    """
    adapted: AdaptedState = {}
    for plan in adapting_layers(spec):
        model = build_upto(plan.entry.index, adapted)
        layer, prefix = model.layers[-1], model.layers[:-1]
        try:
            layer.adapt(_through(prefix, batches()))
        except (ValueError, TypeError, RuntimeError) as error:
            raise AdaptError(plan.entry, type(error).__name__) from error
        adapted[str(plan.entry.index)] = layer_state(layer, plan.entry.class_name)
    return adapted


def _through(prefix: list, dataset):
    """The batches as they arrive at the layer after ``prefix`` (in inference mode, as ``predict`` runs)."""
    if not prefix:
        return dataset

    def run(batch):
        for layer in prefix:
            batch = layer(batch, training=False)
        return batch

    return dataset.map(run)


def layer_state(layer, class_name: str) -> dict[str, Any]:
    """The constructor arguments that give a fresh layer the adapted ``layer``'s state, as plain data."""
    import numpy as np

    if class_name == "Normalization":
        return {"mean": np.asarray(layer.adapt_mean).tolist(), "variance": np.asarray(layer.adapt_variance).tolist()}
    if class_name == "Discretization":
        return {"bin_boundaries": [float(value) for value in layer.bin_boundaries]}
    full = layer.get_vocabulary()
    vocabulary = layer.get_vocabulary(include_special_tokens=False)
    state: dict[str, Any] = {"vocabulary": [_plain(token) for token in vocabulary]}
    if getattr(layer, "output_mode", None) == "tf_idf":
        lookup = getattr(layer, "_lookup_layer", layer)
        weights = np.asarray(lookup.idf_weights)
        state["idf_weights"] = weights[len(full) - len(vocabulary) :].tolist()
    return state


def _plain(token):
    if isinstance(token, bytes):
        return token.decode("utf-8")
    return token.item() if hasattr(token, "item") else token


def adapted_from_saved(spec: Spec, path) -> AdaptedState:
    """The learned state of the spec's adapting layers as a ``.keras`` file written by seq holds it (in each
    layer's config; only ``config.json`` is read, as JSON), matched by position among the spec's layers.
    Raises :class:`AdaptStateMissing` for a layer whose state the file does not hold."""
    import json

    from seqcli import archives

    archives.check_model_file(path, "weights")
    with (
        archives.open_archive(path, "weights") as archive,
        archives.open_member(archive, "config.json", path, "weights") as handle,
    ):
        config = json.loads(handle.read())
    saved = [layer for layer in config.get("config", {}).get("layers", []) if layer.get("class_name") != "InputLayer"]
    positions = {
        entry.index: position for position, entry in enumerate(e for e in spec.layers if e.class_name != "Input")
    }
    adapted: AdaptedState = {}
    for plan in adapting_layers(spec):
        position = positions.get(plan.entry.index)
        layer = saved[position] if position is not None and position < len(saved) else {}
        arguments = layer.get("config", {}) if layer.get("class_name") == plan.entry.class_name else {}
        names, required = ADAPTABLE[plan.entry.class_name]
        if arguments.get(required) is None:
            raise AdaptStateMissing(plan.entry, str(path))
        adapted[str(plan.entry.index)] = {name: arguments[name] for name in names if arguments.get(name) is not None}
    return adapted


class AdaptStateMissing(Exception):
    """A weights file that does not hold the state an adapting layer learned from the data."""

    def __init__(self, entry: LayerEntry, path: str):
        super().__init__(path)
        self.entry, self.path = entry, path
