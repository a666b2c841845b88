"""The spec's ``compile:`` section -> a Keras optimizer, loss and metrics, every name checked.

Names resolve like layers do: through tables built from Keras's public namespaces
(``keras.optimizers``, ``keras.optimizers.schedules``, ``keras.losses``, ``keras.metrics``) and their
``get()`` functions for plain strings, never through ``deserialize`` on user mappings. A string is
a Keras identifier (``adam``, ``sparse_categorical_crossentropy``, ``accuracy``); a single-key
mapping is a class and its keyword arguments (``{Adam: {learning_rate: 1e-3}}``), checked against
the class's signature, with Keras's own ``ValueError`` attributed to its position in the spec.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

from seqcli.errors import Problem, clean_message, did_you_mean
from seqcli.keras_env import import_keras, import_tensorflow, snake_case
from seqcli.registry import public_classes
from seqcli.specfile import Spec
from seqcli.specfile.yamlload import PathKey

DEFAULT_STEPS_PER_EXECUTION = 32
# Metric strings Keras itself adapts to the loss and output shape when compiling.
ADAPTIVE_METRICS = ("accuracy", "acc", "crossentropy", "ce")
# Optimizer classes that wrap other optimizers: not nameable from a spec.
WRAPPER_OPTIMIZERS = {"LossScaleOptimizer", "MultiOptimizer", "OptimizerMap", "Optimizer"}
# Metric arguments that size what the constructor allocates, and about how many bytes it takes for a value:
# AUC & co. list their thresholds in Python and keep four counters per threshold; the IoU metrics a
# num_classes x num_classes confusion matrix. Checked against the memory budget before constructing.
METRIC_SIZE_ARGUMENTS = {"num_thresholds": lambda n: 64 * n, "num_classes": lambda n: 8 * n * n}


@dataclass
class CompileSettings:
    """What ``model.compile`` receives, plus the names training logs will carry."""

    optimizer: Any
    loss: Any
    metrics: list = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)
    steps_per_execution: int = 1
    jit_compile: bool | str = "auto"
    descriptions: dict[str, str] = field(default_factory=dict)

    def compile(self, model) -> None:
        model.compile(
            optimizer=self.optimizer,
            loss=self.loss,
            metrics=list(self.metrics),
            steps_per_execution=self.steps_per_execution,
            jit_compile=self.jit_compile,
        )

    def log_names(self, validation: bool) -> list[str]:
        """The keys of each epoch's logs: loss, metrics, and their ``val_`` twins."""
        names = ["loss", *self.metric_names]
        return names + [f"val_{name}" for name in names] if validation else names


def resolve_compile(
    spec: Spec, *, steps_per_epoch: int | None = None, single_step: bool = False
) -> tuple[CompileSettings | None, list[Problem]]:
    """Build the optimizer, loss and metrics a spec names; every problem is returned with its position.

    ``single_step``: the strategy cannot run several steps per execution (see :func:`single_step_only`).
    """
    keras = import_keras()
    resolver = CompileResolver(spec, keras)
    section = spec.compile
    if section is None:
        return None, [
            spec.problem(
                (),
                "the spec has no 'compile' section, so there is no loss to train with",
                "add for example:\ncompile:\n  optimizer: adam\n"
                "  loss: sparse_categorical_crossentropy\n  metrics: [accuracy]",
            )
        ]
    if section.loss is None:
        resolver.problem(
            ("compile",),
            "compile.loss is missing",
            "name a Keras loss, e.g. 'loss: sparse_categorical_crossentropy'",
            key=True,
        )
    optimizer = resolve_optimizer(resolver, spec)
    loss = resolver.loss(("compile", "loss"), section.loss) if section.loss is not None else None
    metrics = [resolver.metric(("compile", "metrics", index), value) for index, value in enumerate(section.metrics)]
    if single_step and section.steps_per_execution not in ("auto", 1):
        resolver.problem(
            ("compile", "steps_per_execution"),
            "this distribution strategy runs one step per execution: "
            "TensorFlow's collective all-reduce fails inside Keras's multi-step loop",
            "remove steps_per_execution (auto chooses 1 here), or set it to 1",
        )
    if resolver.problems:
        return None, resolver.problems
    settings = CompileSettings(
        optimizer=optimizer,
        loss=loss,
        metrics=[m for m, _ in metrics],
        metric_names=[name for _, name in metrics],
        steps_per_execution=1
        if single_step
        else choose_steps_per_execution(section.steps_per_execution, steps_per_epoch, spec.train.checkpoint_every),
        jit_compile=section.jit_compile,
        descriptions={
            "optimizer": _describe(section.optimizer),
            "loss": _describe(section.loss),
            "metrics": ", ".join(_describe(m) for m in section.metrics) or "none",
            "schedule": _describe(spec.train.learning_rate_schedule)
            if spec.train.learning_rate_schedule is not None
            else "",
        },
    )
    return settings, []


def resolve_optimizer(resolver: CompileResolver, spec: Spec):
    schedule = None
    if spec.train.learning_rate_schedule is not None:
        schedule = resolver.schedule(("train", "learning_rate_schedule"), spec.train.learning_rate_schedule)
    return resolver.optimizer(("compile", "optimizer"), spec.compile.optimizer, schedule)


def optimizer_class_name(identifier: str) -> str | None:
    """The optimizer class a spec's string names, as resolve_compile reads it ('adam' -> 'Adam'); None if none."""
    return _class_for_identifier(identifier, optimizer_classes())


def choose_steps_per_execution(setting: int | str, steps_per_epoch: int | None, checkpoint_every: int | None) -> int:
    """``auto``: about 32 steps per call into TensorFlow (measured on 2 CPU cores for a small CNN: 1.5-2x
    the throughput of 1 step), never more than ``checkpoint_every``, and a divisor of the epoch where one
    lies between half and twice that (the nearest, preferring one that divides ``checkpoint_every``), so
    that executions never straddle two epochs and training runs as one ``fit`` (see seqcli.training.loop):
    one ``fit`` an epoch pays a fit setup and a pipeline build each epoch (an epoch of 141 steps runs 47 at a
    time, not 32). An epoch shorter than the target runs as one execution."""
    if setting != "auto":
        return int(setting)
    limit = min(DEFAULT_STEPS_PER_EXECUTION, checkpoint_every or DEFAULT_STEPS_PER_EXECUTION)
    if not steps_per_epoch:
        return limit
    if steps_per_epoch <= limit:
        return steps_per_epoch
    highest = checkpoint_every or 2 * limit
    divisors = [d for d in range(1, highest + 1) if steps_per_epoch % d == 0 and 2 * d >= limit]
    both = [d for d in divisors if checkpoint_every and checkpoint_every % d == 0]
    for candidates in (both, divisors):
        if candidates:
            return min(candidates, key=lambda d: max(d / limit, limit / d))
    return limit


def single_step_only(strategy) -> bool:
    """True for strategies whose gradient all-reduce uses collective ops across several replicas
    (MultiWorkerMirroredStrategy; MirroredStrategy on CPUs): inside the ``tf.while_loop`` Keras runs for
    ``steps_per_execution`` > 1 they fail with "You must feed a value for placeholder tensor
    'while/cond/Placeholder'" (TensorFlow 2.21, Keras 3.15)."""
    tf = import_tensorflow()

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    if strategy is None or strategy.num_replicas_in_sync < 2:
        return False
    cross_device = getattr(strategy.extended, "_cross_device_ops", None)
    return type(cross_device).__name__ == "CollectiveAllReduce"


# ----------------------------------------------------------------------------- registries


@functools.cache
def optimizer_classes() -> dict[str, type]:
    keras = import_keras()

    return {
        name: cls
        for name, cls in public_classes(keras.optimizers, keras.optimizers.Optimizer).items()
        if name not in WRAPPER_OPTIMIZERS
    }


@functools.cache
def schedule_classes() -> dict[str, type]:
    keras = import_keras()

    schedules = keras.optimizers.schedules
    return {
        name: cls
        for name, cls in public_classes(schedules, schedules.LearningRateSchedule).items()
        if name != "LearningRateSchedule"
    }


@functools.cache
def loss_classes() -> dict[str, type]:
    keras = import_keras()

    return {name: cls for name, cls in public_classes(keras.losses, keras.losses.Loss).items() if name != "Loss"}


@functools.cache
def metric_classes() -> dict[str, type]:
    keras = import_keras()

    excluded = {"Metric", "MeanMetricWrapper", "Mean", "Sum"}  # abstract, or need a function / values to average
    return {
        name: cls for name, cls in public_classes(keras.metrics, keras.metrics.Metric).items() if name not in excluded
    }


def _public_functions(namespace) -> list[str]:
    return [
        name
        for name in dir(namespace)
        if name[:1].islower()
        and not name.startswith("_")
        and name not in ("get", "serialize", "deserialize")
        and callable(getattr(namespace, name))
    ]


@functools.cache
def accepted_arguments(cls: type) -> frozenset[str]:
    """Keyword arguments a Keras class accepts, read from its signature (following ``**kwargs`` up the bases)."""
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        named = [p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        accepted.update(named)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(accepted)


# ----------------------------------------------------------------------------- resolution


class CompileResolver:
    def __init__(self, spec: Spec, keras, *, probe: bool = False):
        self.spec = spec
        self.keras = keras
        self.problems: list[Problem] = []
        self.probe = probe  # name probe optimizers, so they take no name ('adam', 'adam_1'...) from the real one

    def problem(self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.problems.append(self.spec.problem(path, message, hint, key=key))

    def optimizer(self, path: PathKey, value, schedule):
        classes = optimizer_classes()
        if isinstance(value, str):
            name = _class_for_identifier(value, classes)
            if name is None:
                self.problem(
                    path,
                    f"unknown optimizer {value!r}",
                    did_you_mean(value, [*classes, *(n.lower() for n in classes)])
                    or f"optimizers: {', '.join(sorted(classes))}",
                )
                return None
            value = {name: {}}
        name, args = self._single(path, value, "optimizer", "{Adam: {learning_rate: 0.001}}")
        if name is None:
            return None
        if name not in classes:
            self.problem(
                path + (name,),
                f"unknown optimizer class {name!r}",
                did_you_mean(name, classes) or f"optimizers: {', '.join(sorted(classes))}",
                key=True,
            )
            return None
        args = dict(args)
        if isinstance(args.get("learning_rate"), dict):
            args["learning_rate"] = self.schedule(path + (name, "learning_rate"), args["learning_rate"])
            if args["learning_rate"] is None:
                return None
        if schedule is not None:
            if "learning_rate" in args:
                self.problem(
                    ("train", "learning_rate_schedule"),
                    f"train.learning_rate_schedule conflicts with {name}'s learning_rate",
                    "give the learning rate in one place only",
                )
                return None
            args["learning_rate"] = schedule
        return self._instantiate(path, name, classes[name], args, "optimizer")

    def schedule(self, path: PathKey, value):
        classes = schedule_classes()
        name, args = self._single(
            path,
            value,
            "learning-rate schedule",
            "{ExponentialDecay: {initial_learning_rate: 0.001, decay_steps: 1000, decay_rate: 0.9}}",
        )
        if name is None:
            return None
        if name not in classes:
            mapping = isinstance(value, dict)
            self.problem(
                path + (name,) if mapping else path,
                f"unknown learning-rate schedule {name!r}",
                did_you_mean(name, classes) or f"schedules: {', '.join(sorted(classes))}",
                key=mapping,
            )
            return None
        return self._instantiate(path, name, classes[name], args, "schedule")

    def loss(self, path: PathKey, value):
        classes = loss_classes()
        if isinstance(value, str):
            if value in classes:
                return self._instantiate(path, value, classes[value], {}, "loss")
            return self._identifier(
                path, value, self.keras.losses.get, "loss", [*_public_functions(self.keras.losses), *classes]
            )
        name, args = self._single(path, value, "loss", "{SparseCategoricalCrossentropy: {from_logits: true}}")
        if name is None:
            return None
        if name not in classes:
            self.problem(
                path + (name,),
                f"unknown loss class {name!r}",
                did_you_mean(name, classes) or f"loss classes: {', '.join(sorted(classes))}",
                key=True,
            )
            return None
        return self._instantiate(path, name, classes[name], args, "loss")

    def metric(self, path: PathKey, value) -> tuple[Any, str]:
        """(what compile receives, the name its logs carry)."""
        classes = metric_classes()
        if isinstance(value, str):
            if value in ADAPTIVE_METRICS:
                return value, value
            if value in classes:
                metric = self._instantiate(path, value, classes[value], {}, "metric")
                return metric, getattr(metric, "name", value)
            metric = self._identifier(
                path,
                value,
                self.keras.metrics.get,
                "metric",
                [*_public_functions(self.keras.metrics), *classes, *ADAPTIVE_METRICS],
            )
            return (value if metric is not None else None), value
        name, args = self._single(path, value, "metric", "{SparseTopKCategoricalAccuracy: {k: 3}}")
        if name is None:
            return None, ""
        if name not in classes:
            self.problem(
                path + (name,),
                f"unknown metric class {name!r}",
                did_you_mean(name, classes) or f"metric classes: {', '.join(sorted(classes))}",
                key=True,
            )
            return None, ""
        metric = self._instantiate(path, name, classes[name], args, "metric")
        return metric, getattr(metric, "name", name)

    def _identifier(self, path: PathKey, value: str, getter, kind: str, choices: list[str]):
        try:
            return getter(value)
        except (ValueError, TypeError):
            namespace = "losses" if kind == "loss" else f"{kind}s"
            self.problem(
                path,
                f"unknown {kind} {value!r}",
                did_you_mean(value, choices) or f"name a function or class of keras.{namespace}",
            )
            return None

    def _single(self, path: PathKey, value, kind: str, example: str) -> tuple[str | None, dict]:
        if isinstance(value, str):
            return value, {}
        if not isinstance(value, dict) or len(value) != 1:
            count = len(value) if isinstance(value, dict) else 0
            self.problem(
                path, f"a {kind} is a name or a mapping with one class name, got {count} keys", f"for example {example}"
            )
            return None, {}
        ((name, args),) = value.items()
        if args is not None and not isinstance(args, dict):
            self.problem(
                path + (name,), f"arguments of {name} must be a mapping, got {args!r}", f"for example {example}"
            )
            return None, {}
        return name, dict(args or {})

    def _instantiate(self, path: PathKey, name: str, cls: type, args: dict, kind: str):
        accepted = accepted_arguments(cls)
        ok = True
        for key, value in args.items():
            if key not in accepted:
                self.problem(
                    path + (name, key),
                    f"unknown argument for {name}",
                    did_you_mean(key, accepted) or f"{name} accepts: {', '.join(sorted(accepted))}",
                    key=True,
                )
                ok = False
            elif isinstance(value, dict) and not (kind == "optimizer" and key == "learning_rate"):
                self.problem(
                    path + (name, key),
                    f"{name}.{key} does not take a mapping",
                    "only an optimizer's learning_rate takes a mapping (a schedule)",
                )
                ok = False
        if not ok:
            return None
        if self.probe and kind == "optimizer":
            args = {"name": "seq_probe", **args}
        too_large = metric_size_problem(name, args) if kind == "metric" else None
        if too_large:
            self.problem(path + (name, too_large[0]), *too_large[1:])
            return None
        try:
            return cls(**args)
        except (ValueError, TypeError, KeyError, OverflowError) as error:
            self.problem(
                path + (name,),
                f"Keras rejected {name}: {clean_message(error)}",
                f"check the arguments against the Keras documentation of {name}",
                key=True,
            )
            return None


def metric_size_problem(name: str, args: dict) -> tuple[str, str, str] | None:
    """``(argument, message, hint)`` when an argument of metric ``name`` would make its constructor allocate
    more than the memory budget (:data:`METRIC_SIZE_ARGUMENTS`); None otherwise."""
    from seqcli.budget import human_size, max_memory, over_budget_hint

    for key, cost in METRIC_SIZE_ARGUMENTS.items():
        value = args.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and cost(value) > max_memory():
            return (
                key,
                f"{key}={value:,} would take about {human_size(cost(value))} to make {name}, over the memory limit",
                over_budget_hint(),
            )
    return None


def _class_for_identifier(value: str, classes: dict[str, type]) -> str | None:
    """'adam' -> 'Adam', 'rmsprop' -> 'RMSprop': a class name or its lowercase spelling."""
    if value in classes:
        return value
    lowered = {name.lower(): name for name in classes}
    return lowered.get(value.lower().replace("_", ""))


def _describe(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    ((name, args),) = value.items()
    if not args:
        return name
    inner = ", ".join(f"{k}={_describe(v) if isinstance(v, dict) else v!r}" for k, v in args.items())
    return f"{name}({inner})"


# ----------------------------------------------------------------------------- fit with the data


def metric_log_name(value) -> str:
    """The key a compile metric has in Keras's logs: a string as written, a class by its ``name`` argument
    or its snake_case name (``SparseTopKCategoricalAccuracy`` -> ``sparse_top_k_categorical_accuracy``)."""
    if isinstance(value, str):
        return value
    ((name, args),) = value.items()
    if isinstance(args, dict) and isinstance(args.get("name"), str):
        return args["name"]
    return snake_case(name)
