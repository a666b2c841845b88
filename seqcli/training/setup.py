"""Everything a run needs, set up and checked before its first step.

:func:`prepare_training` reads the data, builds and compiles the model under the distribution
strategy, restores a checkpoint when resuming, and returns one complete :class:`TrainingSetup`; every
problem it finds (data that does not fit the model, labels that do not fit the loss, a bad monitor
name...) is reported together as one SpecError before anything trains.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli.errors import Problem, SeqError
from seqcli.specfile import Spec
from seqcli.stages import stage
from seqcli.training.checkpoint import CheckpointError, TrainingState, restore_variables
from seqcli.training.early_stopping import EarlyStopper, monitor_problems
from seqcli.training.events import RunHeader
from seqcli.training.preprocess import adapt_for_run, class_weights, describe_adapted, describe_class_weights
from seqcli.training.resume import comparable_spec, input_files, run_fingerprint
from seqcli.training.rundir import RunDirectory, RunDirectoryError


@dataclass
class TrainingSetup:
    """A run ready to train: its data, compiled model, strategy, seed and state, all checked."""

    spec: Spec
    run: RunDirectory  # the run directory
    out: RunDirectory  # where this process writes: the run directory, or a scratch one on a non-chief worker
    info: Any  # seqcli.distribute.StrategyInfo
    seed: int
    data: Any  # seqcli.data.Datasets
    model: Any
    settings: Any  # seqcli.compile.CompileSettings
    state: TrainingState
    resuming: bool
    early_stopping: EarlyStopper | None = None
    notes: list[str] = field(default_factory=list)
    class_weight: dict[int, float] | None = None  # what fit(class_weight=...) receives

    @property
    def strategy(self):
        return self.info.strategy

    def header(self, spec_label: str) -> RunHeader:
        """What the run is about to do, for the display before the first epoch."""
        state, model, data = self.state, self.model, self.data
        resumed = f"{state.position()} of {self.run.checkpoint}" if self.resuming else None
        return RunHeader(
            spec=spec_label,
            model=model.name,
            params=model.count_params(),
            trainable_params=sum(math.prod(w.shape) for w in model.trainable_weights),
            output=self.run.path,
            epochs=state.epochs,
            steps_per_epoch=data.steps_per_epoch,
            train_count=data.train_count,
            validation_count=data.validation_count,
            seed=self.seed,
            distribution={**self.info.describe(data.batch_size), **({"input": data.sharding} if data.sharding else {})},
            compile=self.settings.descriptions,
            steps_per_execution=self.settings.steps_per_execution,
            jit_compile=model.jit_compile,
            precision=self.spec.train.precision,
            resumed_from=resumed,
            notes=self.notes,
            class_weight=describe_class_weights(self.spec, self.class_weight, data.class_names),
            adapted=describe_adapted(self.spec, state.adapted, data, resumed=self.resuming),
        )


def prepare_training(spec: Spec, run: RunDirectory, state: TrainingState | None) -> TrainingSetup:
    """Set up the run in ``run``: a new one when ``state`` is None, else continue from ``state``."""
    from seqcli.distribute import chief_output_dir, make_strategy
    from seqcli.keras_env import import_keras

    # Every worker writes (saving reads variables with collective operations); only the chief's
    # files land in the run directory, the others' in a temporary folder.
    keras = import_keras()  # a quiet TensorFlow import; devices are not initialized yet
    _check_virtual_cpus(spec)
    with stage("distribution strategy"):
        info = make_strategy(spec.resolved().get("distribute") or None)
    out = RunDirectory(Path(chief_output_dir(run.path, info)))
    seed = state.seed if state else spec.train.seed
    seed = seed if seed is not None else secrets.randbelow(2**31)
    keras.utils.set_random_seed(seed)
    declared = _declared_build(spec)
    with stage("data: open the sources"):
        data, problems = _load_data(spec, seed, (info.workers, info.worker_index), declared)
    with stage("compile: probe the optimizer's arguments"):
        problems += _probe_optimizer(spec)
    compiled, weights = None, None
    if data is not None:
        weights, weight_problems = class_weights(spec, data)
        problems += weight_problems
        adapted = None if state is None else state.adapted or {}  # resuming never adapts again
        with info.strategy.scope():
            compiled, build_problems = _build_and_compile(spec, data, info, adapted, seed, declared)
        problems += build_problems
    if problems:
        raise spec.error(problems)
    assert compiled is not None, "missing data or an unbuilt model comes with problems"
    model, settings, notes, adapted = compiled
    _check_free_space(model, out.path)
    resuming = state is not None
    if state is None:
        state = TrainingState(
            fingerprint=run_fingerprint(spec, seed),
            seed=seed,
            epochs=spec.train.epochs,
            steps_per_epoch=data.steps_per_epoch,
            spec=comparable_spec(spec, seed),
            files=input_files(spec),
            adapted=adapted or None,
        )
    else:
        _restore(model, info.strategy, run.checkpoint)
    return TrainingSetup(
        spec=spec,
        run=run,
        out=out,
        info=info,
        seed=seed,
        data=data,
        model=model,
        settings=settings,
        state=state,
        resuming=resuming,
        notes=notes,
        early_stopping=EarlyStopper.create(spec, state.early_stopping),
        class_weight=weights,
    )


def static_problems(spec: Spec) -> list[Problem]:
    """Layer and compile problems of a spec that already has structural ones, so all are reported at once."""
    from seqcli.compile import resolve_compile
    from seqcli.compile_checks import compile_problems
    from seqcli.modelbuild import build_model

    problems = []
    with contextlib.suppress(SeqError):
        problems += build_model(spec, abstract=True).problems
    if spec.compile is None and "compile" not in spec.document.data:
        problems += resolve_compile(spec)[1]  # training needs the section: the problem that says so
    return problems + compile_problems(spec)


def _probe_optimizer(spec: Spec) -> list[Problem]:
    """Outside the strategy's scope (see :func:`seqcli.compile_checks.probe_optimizer`)."""
    from seqcli.compile_checks import probe_optimizer

    return probe_optimizer(spec)


def _check_virtual_cpus(spec: Spec) -> None:
    from seqcli.distribute import virtual_cpus_problem

    distribute = spec.resolved().get("distribute") or {}
    batch_size = spec.data.batch_size if spec.data is not None else 32
    found = virtual_cpus_problem(distribute.get("virtual_cpus"), batch_size)
    if found:
        raise spec.error([spec.problem(("distribute", "virtual_cpus"), *found)])


def _declared_build(spec: Spec):
    """The weightless build of a spec that declares its input shape (None for one that takes the data's, or
    that cannot be built): its shape is checked against the data's headers, its memory against the budget."""
    from seqcli.modelbuild import build_model

    if not spec.declares_input:
        return None
    with stage("model: weightless build (shapes, memory estimate)"), contextlib.suppress(SeqError):
        return build_model(spec, abstract=True)
    return None


def _load_data(spec: Spec, seed: int, workers: tuple[int, int] = (1, 0), declared=None) -> tuple[Any, list[Problem]]:
    """The datasets, read after the file headers show the samples fit the spec's own input shape (that of
    ``declared``, :func:`_declared_build`'s)."""
    from seqcli.data import DataError, ShapeMismatchError, load_datasets
    from seqcli.datacheck import DataValueError

    if spec.data is None or spec.data.train is None:
        return None, [
            spec.problem(
                ("data",) if spec.data else (),
                "there is no training data",
                "add for example:\ndata:\n  train: data/digits.npz\n  validation: 0.2",
            )
        ]
    try:
        return load_datasets(
            spec.resolved()["data"],
            spec.base_dir,
            seed=seed,
            input_shape=None if declared is None else declared.input_shape,
            parse_once=spec.train.epochs > 1,  # one epoch reads the data once: no parsed copy to keep for another
            workers=workers,
        ), []
    except ShapeMismatchError as error:  # found from the file's header: the spec's other problems still count
        return None, [*_problems_without_data(spec), _input_problem(spec, error.input_shape, error.shape)]
    except (DataError, DataValueError) as error:
        return None, [_data_problem(spec, error)]


def _problems_without_data(spec: Spec) -> list[Problem]:
    """The compile and monitor problems _build_and_compile would report, for a run stopped by its data."""
    from seqcli.compile import resolve_compile

    settings, problems = resolve_compile(spec)
    validation = spec.data is not None and spec.data.validation is not None
    return problems + monitor_problems(spec, settings, validation)


def _data_problem(spec: Spec, error: SeqError) -> Problem:
    message = error.message
    where = message.split(":", 1)[0] if message.startswith("data.") else "data"
    path = tuple(part for part in where.split(".") if part)
    return spec.problem(path, message.removeprefix(f"{where}: "), error.hint)


def _build_and_compile(
    spec: Spec, data, info, adapted: dict | None, seed: int, declared=None
) -> tuple[tuple | None, list[Problem]]:
    """The compiled model, its compile settings, notes for the header and the state its layers learned from
    the data; or the problems that stop it. ``adapted``: that state, from the checkpoint of a resumed run;
    None for a new run, whose layers adapt here. The build applies the spec's ``freeze:`` section and
    reports its problems. Its initial weights are those of a Keras script that calls
    ``keras.utils.set_random_seed(seed)`` and then builds the model. ``declared``: the weightless build
    :func:`_declared_build` already made, when the spec declares its input."""
    from seqcli.compile import resolve_compile, single_step_only
    from seqcli.compile_checks import logits_warning, probe_compile
    from seqcli.distribute import prepare_model
    from seqcli.keras_env import import_keras
    from seqcli.memory import check_model_memory, spec_optimizer
    from seqcli.modelbuild import build_model

    # The data's shape for a spec without one; a spec's own shape is compared with the data's (_check_input),
    # and the memory the model needs with the budget, both on a weightless build before any weight exists.
    input_shape = None if spec.declares_input else data.input_shape
    abstract = declared
    if abstract is None:
        with stage("model: weightless build (shapes, memory estimate)"):
            abstract = build_model(spec, abstract=True, input_shape=input_shape)
    if abstract.model is not None and not abstract.problems:
        input_problems = _check_input(spec, abstract, data)
        if input_problems:
            return None, input_problems
        check_model_memory(
            abstract.model,
            batch_size=data.batch_size,
            what="training this model",
            optimizer=spec_optimizer(spec),
            training=True,
        )
    if adapted is None:
        with stage("adapt: layers learn from the training data"):
            adapted, adapt_problems = adapt_for_run(spec, data, input_shape, seed)
        if adapt_problems:
            return None, adapt_problems
    with _dtype_policy(spec.train.precision):
        # Initializers draw their seeds from Python's random module when made: the data, the weightless
        # builds and adapting above have drawn from it since the seed was set.
        import_keras().utils.set_random_seed(seed)
        with stage("model: build"):
            built = build_model(spec, input_shape=input_shape, adapted=adapted)
    problems = list(built.problems)
    settings, compile_problems = resolve_compile(
        spec, steps_per_epoch=data.steps_per_epoch, single_step=single_step_only(info.strategy)
    )
    problems += compile_problems
    problems += monitor_problems(spec, settings, data.validation is not None)
    if built.model is not None:
        problems += _check_input(spec, built, data)
    if built.model is None or built.output_shape is None or settings is None or problems:
        return None, problems
    problems += _label_problems(spec, data, built.output_shape)
    with stage("compile: probe the loss on a first batch"):
        problems = problems or probe_compile(spec, settings, _first_labels(data), built.output_shape)
    if problems:
        return None, problems
    with stage("compile"):
        settings.compile(built.model)
    prepare_model(built.model, info)
    notes = [note.headline() for note in built.notes]
    notes += [note for note in [logits_warning(spec, built.model)] if note]
    return (built.model, settings, notes, adapted), []


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Layers built inside take the Keras dtype policy ``name`` (and keep it); the global policy is restored
    after, so later builds in the process are unaffected. Under mixed_float16, ``compile`` wraps the
    optimizer in Keras's LossScaleOptimizer."""
    from seqcli.keras_env import import_keras

    config = import_keras().config
    previous = config.dtype_policy()
    config.set_dtype_policy(name)
    try:
        yield
    finally:
        config.set_dtype_policy(previous)


def _check_input(spec: Spec, built, data) -> list[Problem]:
    """The data's samples fit the model's input (:func:`~seqcli.shapes.shape_fits`: a None in the spec's shape
    takes any size there, as evaluate and predict have it: variable-length sequences)."""
    from seqcli.shapes import shape_fits

    data_shape = tuple(data.input_shape)
    if built.input_shape is not None and not shape_fits(tuple(built.input_shape), data_shape):
        return [_input_problem(spec, built.input_shape, data_shape)]
    return _dtype_problems(spec, built, data)


def _dtype_problems(spec: Spec, built, data) -> list[Problem]:
    """Text data feeds a string input only (and numbers a numeric one), reported at the first layer."""
    from seqcli.models import check_data_dtype, model_input_dtype
    from seqcli.shapes import DataShapeError

    if built.model is None:
        return []
    try:
        check_data_dtype(model_input_dtype(built.model), data.input_dtype, "data.train")
    except DataShapeError as error:
        first = spec.layers[0]
        path = first.path + (("Input",) if first.class_name == "Input" else (first.class_name,))
        return [spec.problem(path, error.message.removeprefix("data.train: "), error.hint)]
    return []


def _input_problem(spec: Spec, input_shape: tuple, data_shape: tuple) -> Problem:
    from seqcli import registry
    from seqcli.shapes import shape_text

    first = spec.layers[0]
    key = registry.shape_argument(first.class_name, first.args) or "input_shape"
    path = first.path + (("Input", "shape") if first.class_name == "Input" else (first.class_name, key))
    return spec.problem(
        path,
        f"the model takes inputs of shape {shape_text(input_shape)}, but "
        f"data.train's samples have shape {shape_text(data_shape)}",
        f"make the input shape {list(data_shape)}, or remove it and the model takes the data's shape",
    )


def _label_problems(spec: Spec, data, output_shape: tuple) -> list[Problem]:
    """Every label of the in-memory sources against the loss (a first batch is what probe_compile sees)."""
    from seqcli.datacheck import DataValueError, check_labels

    loss = spec.compile.loss if spec.compile else None
    try:
        for where, labels in data.labels.items():
            check_labels(labels, loss, output_shape[-1], where)
    except DataValueError as error:
        return [_data_problem(spec, error)]
    return []


def _first_labels(data):
    """A batch's worth of training labels, for the loss probe: from memory when the source holds them (no
    pipeline built and run for one batch), else the first batch of the first epoch."""
    if data.train_labels is not None:
        return data.train_labels[: data.batch_size]
    for batch in data.train_for_epoch(0).take(1):
        return batch[1].numpy()  # (x, y) or (x, y, sample weights)
    return None


def _check_free_space(model, directory: Path) -> None:
    """Room for the checkpoints (the last, the one before it, one being written and the best: weights and
    about two optimizer slots each) and the model file."""
    from seqcli.memory import dtype_size

    weights = sum(math.prod(v.shape) * dtype_size(v.dtype) for v in model.variables)
    needed = 4 * 3 * weights + (1 << 20)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise RunDirectoryError(
            f"{directory} has {free:,} bytes free; checkpoints and the model need about {needed:,}",
            hint="free some space or choose another --output",
        )


def _restore(model, strategy, checkpoint: Path) -> None:
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    try:
        restore_variables(checkpoint, model)
    except CheckpointError:
        raise
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"cannot restore {checkpoint}: {error}") from error
