"""Models with weights: a real build of a spec, checked against the memory budget first."""

from __future__ import annotations

from pathlib import Path

from seqcli.errors import SeqError
from seqcli.memory import check_model_memory, spec_optimizer
from seqcli.modelbuild.adapt import AdaptStateMissing, adapted_from_saved, adapting_layers
from seqcli.modelbuild.builder import build_model
from seqcli.modelbuild.result import Shape
from seqcli.models import load_weights
from seqcli.specfile import Spec


def model_from_spec(
    spec: Spec,
    *,
    weights: str | Path | None = None,
    input_shape: Shape | None = None,
    batch_size: int = 0,
    what: str = "this model",
):
    """Build the spec's model for real (bases with their weights, the freeze: section applied), load
    ``weights`` (a .weights.h5 or a .keras file) into it, and return the Keras model. First a weightless build
    estimates the memory to run batches of ``batch_size``: over the budget, a LimitError says so and nothing
    is allocated. Raises SpecError for any problem in the spec, WeightsError for a weights file that does not fit."""
    check_spec_memory(spec, input_shape=input_shape, batch_size=batch_size, what=what)
    built = build_model(spec, input_shape=input_shape, adapted=_saved_state(spec, weights))
    if built.problems:
        raise spec.error(built.problems)
    if not built.built:
        raise SeqError(
            "the spec's model has no input shape, so it cannot hold weights",
            hint="start 'layers' with '- Input: {shape: [...]}'",
        )
    if weights is not None:
        load_weights(built.model, weights)
    return built.model


def _saved_state(spec: Spec, weights: str | Path | None) -> dict:
    """What the spec's adapting layers learned from the data, from the ``.keras`` file given as weights; a
    ``.weights.h5`` file cannot hold it (vocabularies and bin boundaries are no weights): that is refused."""
    if weights is None or not adapting_layers(spec):
        return {}
    entry = adapting_layers(spec)[0].entry
    problem = None
    if Path(weights).suffix == ".keras":
        try:
            return adapted_from_saved(spec, weights)
        except AdaptStateMissing as missing:
            entry = missing.entry
            problem = f"{weights} does not hold the state {entry.class_name} learned from the training data"
    problem = problem or f"a .weights.h5 file cannot hold the state {entry.class_name} learned from the training data"
    raise spec.error(
        [
            spec.problem(
                entry.path + (entry.class_name,),
                problem,
                "give the model.keras of the run that trained this spec as the weights",
                key=True,
            )
        ]
    )


def check_spec_memory(
    spec: Spec, *, input_shape: Shape | None, batch_size: int, what: str, training: bool = False
) -> None:
    """LimitError when the spec's model, on a weightless build, is over the memory budget
    (:func:`~seqcli.memory.check_model_memory`); SpecError for the build's problems."""
    abstract = build_model(spec, abstract=True, input_shape=input_shape)
    if abstract.problems:
        raise spec.error(abstract.problems)
    if abstract.built:
        check_model_memory(
            abstract.model, batch_size=batch_size, what=what, optimizer=spec_optimizer(spec), training=training
        )
