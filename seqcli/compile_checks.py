"""Checks of a compile section by running it before training: the optimizer applied once to a tiny variable,
the loss and each metric run on one batch of real labels against a model-shaped output, labels against the
output's classes, and a probability loss on logits. Each problem is reported at its spec entry."""

from __future__ import annotations

from seqcli.compile import ADAPTIVE_METRICS, CompileResolver, CompileSettings, resolve_optimizer
from seqcli.errors import Problem, clean_tensorflow_message
from seqcli.keras_env import compiled_loss, import_keras
from seqcli.specfile import Spec


def probe_compile(spec: Spec, settings: CompileSettings, labels, output_shape: tuple) -> list[Problem]:
    """Run the loss and each metric on one batch of real labels against a model-shaped output,
    so a loss or metric that does not fit the model's output is reported before training."""
    import numpy as np

    keras = import_keras()
    assert spec.compile is not None, "settings are resolved from the spec's compile section"
    labels = np.asarray(labels)
    outputs = np.full((labels.shape[0], *output_shape[1:]), 1.0 / max(output_shape[-1] or 1, 1), dtype=np.float32)
    problems = []
    if _is_sparse_categorical(spec.compile.loss) and np.issubdtype(labels.dtype, np.integer):
        problems += _check_label_range(spec, labels, outputs)
    message = None if problems else _probe(compiled_loss(settings.loss, labels, outputs), labels, outputs)
    if message:
        problems.append(
            spec.problem(
                ("compile", "loss"),
                f"the loss does not fit the data and model: labels of "
                f"shape {labels.shape} against model output of shape {outputs.shape}: "
                f"{message}",
                _fit_hint(labels, outputs, spec.compile.loss),
            )
        )
    for index, (metric, name) in enumerate(zip(settings.metrics, settings.metric_names)):
        if isinstance(metric, str) and metric in ADAPTIVE_METRICS:
            continue
        probe = (
            keras.metrics.get(metric) if isinstance(metric, str) else metric.__class__.from_config(metric.get_config())
        )
        message = _probe(probe.update_state, labels, outputs)
        if message:
            problems.append(
                spec.problem(
                    ("compile", "metrics", index),
                    f"metric {name} does not fit labels of "
                    f"shape {labels.shape} against model output of shape {outputs.shape}: "
                    f"{message}",
                    _fit_hint(labels, outputs, None),
                )
            )
    return problems


def _probe(function, labels, outputs) -> str | None:
    try:
        function(labels, outputs)
    except Exception as error:  # TensorFlow raises InvalidArgumentError, Keras ValueError, ...
        return clean_tensorflow_message(str(error))
    return None


def _check_label_range(spec: Spec, labels, outputs) -> list[Problem]:
    classes = outputs.shape[-1]
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        return [
            spec.problem(
                ("compile", "loss"),
                f"labels include {int(labels.min())}, a negative class index (labels must be 0 .. classes-1)",
                "check the labels",
            )
        ]
    if top >= classes:
        return [
            spec.problem(
                ("compile", "loss"),
                f"labels go up to {top}, but the model outputs {classes} class scores (labels must be 0 .. classes-1)",
                f"give the last layer {top + 1} units, or check the labels",
            )
        ]
    return []


def _is_sparse_categorical(loss) -> bool:
    name = loss if isinstance(loss, str) else next(iter(loss)) if isinstance(loss, dict) else ""
    return name in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def _fit_hint(labels, outputs, loss) -> str:
    import numpy as np

    integer_labels = np.issubdtype(labels.dtype, np.integer) and labels.ndim == 1
    if integer_labels and outputs.ndim == 2 and outputs.shape[-1] > 1:
        return "the labels are class indices: use 'sparse_categorical_crossentropy' (and 'accuracy')"
    if labels.ndim == 2 and outputs.ndim == 2 and labels.shape[-1] != outputs.shape[-1]:
        return f"the labels have {labels.shape[-1]} values per sample: give the last layer {labels.shape[-1]} units"
    return "check the last layer's units and the loss against the labels"


def logits_warning(spec: Spec, model) -> str | None:
    """A crossentropy loss expecting probabilities on a model whose last layer has no activation."""
    loss = spec.compile.loss if spec.compile else None
    if not isinstance(loss, str) or "crossentropy" not in loss or not model.layers:
        return None
    activation = getattr(model.layers[-1], "activation", None)
    if activation is None or getattr(activation, "__name__", "") != "linear":
        return None
    cls = "".join(part.capitalize() for part in loss.split("_"))
    return (
        f"the last layer has no activation (it outputs logits), but loss {loss!r} expects probabilities; "
        f"write 'loss: {{{cls}: {{from_logits: true}}}}' or give the last layer activation: softmax"
    )


def compile_problems(spec: Spec) -> list[Problem]:
    """What ``seq train`` would refuse in a spec's ``compile:`` section before it reads any data: unknown
    optimizer, loss and metric names (with "did you mean"), arguments Keras rejects, and an optimizer that
    fails when applied. A spec without the section has none (``seq check`` takes bare architectures)."""
    from seqcli.compile import resolve_compile

    if spec.compile is None or any(p.path.startswith(COMPILE_PATHS) for p in spec.problems):
        return []  # values already refused (beyond 64 bits, not finite...) are not handed to Keras
    return resolve_compile(spec)[1] or probe_optimizer(spec)


COMPILE_PATHS = ("compile", "train.learning_rate_schedule")


def probe_optimizer(spec: Spec) -> list[Problem]:
    """Apply (a fresh copy of) the spec's optimizer once to a zero variable, so that arguments Keras takes
    when constructing it but fails on when training (``{Adam: {beta_1: abc}}``) are reported before training.

    Call it outside any distribution strategy's scope: applying an optimizer there needs a replica context.
    Names and arguments that :func:`resolve_compile` rejects give no problem here (it reports them).
    """
    import numpy as np

    keras = import_keras()
    if spec.compile is None:
        return []
    resolver = CompileResolver(spec, keras, probe=True)
    optimizer = resolve_optimizer(resolver, spec, spec.compile.optimizer)
    if optimizer is None or resolver.problems:
        return []
    variable = keras.Variable(np.zeros(2, np.float32), name="seq_probe")
    try:
        optimizer.apply([keras.ops.zeros((2,))], [variable])
    except Exception as error:  # Keras raises TypeError/ValueError, TensorFlow UnimplementedError, ...
        return [_rejected_optimizer(spec, spec.compile.optimizer, error)]
    return []


def _rejected_optimizer(spec: Spec, value, error: Exception) -> Problem:
    """The problem at compile.optimizer (``value``, as the spec writes it) for Keras's ``error``."""
    mapping = isinstance(value, dict)
    name, args = next(iter(value.items())) if mapping else (value, {})
    received = ", ".join(f"{key}={argument!r}" for key, argument in (args or {}).items())
    schedule = " and train.learning_rate_schedule's" if spec.train.learning_rate_schedule is not None else ""
    return spec.problem(
        ("compile", "optimizer", name) if mapping else ("compile", "optimizer"),
        f"Keras rejected {name} when applying it: {clean_tensorflow_message(str(error))}"
        + (f". Received: {received}" if received else ""),
        f"check the types and values of {name}'s arguments{schedule} against the Keras documentation",
        key=mapping,
    )
