"""What a run learns from its training data before the first step: the state of the layers that adapt
(:mod:`seqcli.modelbuild.adapt`) and the class weights of ``train.class_weight``.

Both are decided once, when a run starts: the adapted state is recorded in every checkpoint and a resumed run
takes it from there, never adapting again; class weights are a pure function of the spec and the data.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from seqcli.errors import Problem, did_you_mean
from seqcli.modelbuild.adapt import AdaptedState, AdaptError, adapt_layers, adapting_layers
from seqcli.specfile import Spec
from seqcli.specfile.fingerprint import fingerprint


def adapt_for_run(spec: Spec, data, input_shape: tuple | None, seed: int) -> tuple[AdaptedState, list[Problem]]:
    """Adapt the spec's layers on the training split (at most ``data.adapt.samples`` of it), the model's
    prefix before each layer run over the batches (the real build reseeds after it, so the model starts from
    the weights it would have had without adapting). Problems are placed at the layer's entry."""
    from seqcli.modelbuild import build_model

    if not adapting_layers(spec):
        return {}, []
    key = _adapt_key(spec, input_shape, seed)
    if key in _ADAPTED:
        return copy.deepcopy(_ADAPTED[key]), []
    samples = spec.data.adapt.samples

    def build_upto(index: int, adapted: AdaptedState):
        return build_model(spec, input_shape=input_shape, upto=index, adapted=adapted).model

    try:
        adapted = adapt_layers(spec, build_upto, lambda: data.adapt_inputs(samples))
    except AdaptError as error:
        entry = error.entry
        return {}, [
            spec.problem(
                entry.path + (entry.class_name,),
                f"{entry.class_name} cannot adapt to data.train as it arrives at this layer "
                f"(Keras raised {error.error_class})",
                "check the layer's arguments against the shape and type of the data reaching it",
                key=True,
            )
        ]
    while len(_ADAPTED) >= ADAPTED_KEPT:
        _ADAPTED.pop(next(iter(_ADAPTED)))
    _ADAPTED[key] = copy.deepcopy(adapted)
    return adapted, []


# What runs in this process learned, by everything that decides it: tune's trials, which vary other keys of
# one spec over the same data, adapt once. Vocabularies can be large: only the latest few are kept.
_ADAPTED: dict[str, AdaptedState] = {}
ADAPTED_KEPT = 4


def _adapt_key(spec: Spec, input_shape: tuple | None, seed: int) -> str:
    """A digest of what decides the adapted state: the layers up to the last one that adapts, the training
    split (sources, validation, batch size, the adapt section, the seed) and the contents of the files read."""
    from seqcli.specfile.paths import absolute_file_fields
    from seqcli.training.resume import input_files

    data = absolute_file_fields(spec.resolved(), spec.base_dir)
    last = adapting_layers(spec)[-1].entry.index
    section = data.get("data") or {}
    record = {
        "layers": data["layers"][: last + 1],
        "data": {key: section.get(key) for key in ("train", "validation", "batch_size", "adapt")},
        "seed": seed,
        "input_shape": input_shape,
        "files": input_files(spec),
    }
    return fingerprint(record)


def describe_adapted(spec: Spec, adapted: AdaptedState | None, data, *, resumed: bool) -> str | None:
    """The adapted layers in words, for the run header."""
    plans = [plan for plan in adapting_layers(spec) if str(plan.entry.index) in (adapted or {})]
    if not plans:
        return None
    layers = "; ".join(f"layers[{plan.entry.index}] {plan.entry.class_name} ({plan.learns})" for plan in plans)
    if resumed:
        return f"{layers}: from the checkpoint"
    count = data.train_count if spec.data.adapt.samples is None else min(spec.data.adapt.samples, data.train_count)
    return f"{layers}: on {count:,} samples of data.train"


def class_weights(spec: Spec, data) -> tuple[dict[int, float] | None, list[Problem]]:
    """``train.class_weight`` as Keras's ``fit(class_weight=...)`` takes it: ``balanced`` counted on the
    training split as scikit-learn's ``compute_class_weight("balanced")`` does, or the spec's mapping with
    class names turned into class ids."""
    setting = spec.train.class_weight
    if setting is None:
        return None, []
    where = ("train", "class_weight")
    if getattr(spec.data.train, "weights", None) is not None:
        return None, [
            spec.problem(
                where,
                "train.class_weight and sample weights (data.train.weights) do not go together: "
                "Keras's fit takes one or the other",
                "multiply each sample's class weight into its sample weight, and remove class_weight",
            )
        ]
    if setting == "balanced":
        classes = _class_ids(data.train_labels)
        if classes is None:
            return None, [
                spec.problem(
                    where,
                    "balanced class weights need class labels, but data.train's labels are not class ids",
                    "class_weight is for classification; remove it for regression targets",
                )
            ]
        return balanced_class_weights(classes), []
    return _mapped_weights(spec, setting, data.class_names, where)


def balanced_class_weights(classes: np.ndarray) -> dict[int, float]:
    """n_samples / (n_classes * count of the class), for each class present (scikit-learn's "balanced")."""
    present, counts = np.unique(classes, return_counts=True)
    weights = len(classes) / (len(present) * counts.astype(np.float64))
    return {int(label): float(weight) for label, weight in zip(present, weights)}


def _class_ids(labels: np.ndarray | None) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim == 2 and labels.shape[-1] > 1:
        return labels.argmax(axis=-1)
    labels = labels.reshape(len(labels), -1)[:, 0] if labels.ndim == 2 else labels
    if np.issubdtype(labels.dtype, np.integer):
        return labels
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
        return labels.astype(np.int64)
    return None


def _mapped_weights(
    spec: Spec, setting: dict[Any, float], class_names: list[str] | None, where: tuple
) -> tuple[dict[int, float] | None, list[Problem]]:
    weights, problems = {}, []
    for key, weight in setting.items():
        if isinstance(key, str) and key.isdigit() and not (class_names and key in class_names):
            key = int(key)  # YAML mapping keys reach the spec as strings
        if isinstance(key, int):
            if key < 0:
                problems.append(spec.problem(where + (key,), "a class id is 0 or more", key=True))
            weights[key] = float(weight)
        elif class_names is None:
            problems.append(
                spec.problem(
                    where + (key,),
                    f"class name {key!r}, but data.train has no class names",
                    "name classes by their ids (0, 1, ...) for data whose labels are numbers",
                    key=True,
                )
            )
        elif key not in class_names:
            problems.append(
                spec.problem(
                    where + (key,),
                    f"data.train has no class {key!r}",
                    did_you_mean(key, class_names) or f"its classes: {', '.join(class_names)}",
                    key=True,
                )
            )
        else:
            weights[class_names.index(key)] = float(weight)
    return (None if problems else weights), problems


def describe_class_weights(spec: Spec, weights: dict[int, float] | None, class_names: list[str] | None) -> str | None:
    """The class weights in words, for the run header: ``0: 0.75, 1: 1.5 (balanced)``."""
    if weights is None:
        return None

    def name(label: int) -> str:
        return f"{label} {class_names[label]}" if class_names and label < len(class_names) else str(label)

    text = ", ".join(f"{name(label)}: {weight:.4g}" for label, weight in sorted(weights.items()))
    return text + (" (balanced)" if spec.train.class_weight == "balanced" else "")
