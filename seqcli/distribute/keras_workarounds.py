"""``prepare_model``: a compiled model made to train under a strategy, with the workarounds for
keras-team/keras#20585 (see its docstring)."""

from __future__ import annotations

import types

from seqcli.distribute.settings import StrategyInfo
from seqcli.keras_env import import_tensorflow


def prepare_model(model, info: StrategyInfo) -> None:
    """Make ``model.fit``/``evaluate``/``predict`` work under ``info``'s strategy, and see the data in the
    same order as on one device. Call it after ``model.compile``, inside ``info.strategy.scope()``.

    Two changes, both on this model and its strategy object only, never on Keras's files or module
    functions (the code in question is ``keras/src/backend/tensorflow/trainer.py``):

    1. A model created under a strategy runs ``TensorFlowTrainer._maybe_symbolic_build`` at the start of
       every ``fit``/``evaluate``: it opens the data for one batch, only for its shapes, and calls
       ``strategy.reduce("MEAN", (x, y), axis=None)`` on that tuple. Under MultiWorkerMirroredStrategy
       with two or more workers TensorFlow rejects the tuple (keras-team/keras#20585: "Attempt to convert
       a value (PerReplica...)"); under every strategy, opening the data advances a reshuffling
       ``tf.data`` pipeline by one epoch, so a mirrored run sees another order than one device does.
       This model's ``_maybe_symbolic_build`` (a bound method) does nothing once the model, its compiled
       metrics and loss and its optimizer are built (Keras would only build them), and otherwise hands
       Keras the data's ``element_spec`` (shapes and dtypes, no data read) as ``data_batch``, which takes
       Keras's own path that builds without a reduce.
    2. With two or more workers, ``reduce_per_replica(logs, strategy, "auto")`` calls
       ``strategy.reduce("MEAN", value, axis=0)`` on every log value; the logs are scalars and axis 0 of
       a scalar does not exist ("Invalid reduction dimension 0 for input with 0 dimensions",
       keras-team/keras#20585). This strategy object's ``reduce``, given an axis and only scalar values,
       drops the axis: the mean over replicas, which is what Keras computes on one worker
       (``tf.reduce_mean(local_results, axis=0)``).

    The second acts only on calls TensorFlow would reject, so it turns inert by itself once Keras stops
    making them; ``info.strategy.reduce.dropped_axes`` counts the calls it repaired (0 after a
    multi-worker fit means Keras is fixed). The first is right with or without the bug.
    """
    if getattr(model, "_distribute_strategy", None) is not None:
        _build_without_reading_data(model)
    if _in_multi_worker_mode(info.strategy):
        _reduce_scalars_without_axis(info.strategy)


def _in_multi_worker_mode(strategy) -> bool:
    tf = import_tensorflow()

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    in_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return bool(in_mode()) if in_mode is not None else True


def _build_without_reading_data(model) -> None:
    if isinstance(model.__dict__.get("_maybe_symbolic_build"), types.MethodType):
        return
    keras_method = type(model)._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # keras-team/keras#20585, and data order: see prepare_model.
        if _fully_built(self):
            return None
        if iterator is not None and data_batch is None:
            data_batch = _batch_spec(iterator)
            if data_batch is None:
                return keras_method(self, iterator=iterator)
        return keras_method(self, data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)


def _fully_built(model) -> bool:
    """Whether Keras's symbolic build would find nothing to build (the checks of Trainer._symbolic_build)."""
    flatten = getattr(model, "_flatten_layers", None)
    layers = list(flatten()) if flatten is not None else [model]
    parts = [getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None), model.optimizer]
    return all(layer.built for layer in layers) and all(part is None or getattr(part, "built", False) for part in parts)


def _batch_spec(epoch_iterator):
    """Shapes and dtypes of a Keras epoch iterator's batches, read from its dataset without opening it;
    None when they are not all known."""
    tf = import_tensorflow()

    try:
        spec = epoch_iterator.data_adapter.get_tf_dataset().element_spec
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None
    ranks = [getattr(getattr(leaf, "shape", None), "rank", None) for leaf in tf.nest.flatten(spec)]
    return spec if all(rank is not None for rank in ranks) else None


def _reduce_scalars_without_axis(strategy) -> None:
    if not getattr(strategy.reduce, "drops_axis_for_scalars", False):
        strategy.reduce = _ScalarReduce(strategy, strategy.reduce)


class _ScalarReduce:
    """``strategy.reduce`` without ``axis`` for values that are all scalars; counts how often it dropped one."""

    drops_axis_for_scalars = True

    def __init__(self, strategy, keras_reduce):
        self.strategy, self.keras_reduce, self.dropped_axes = strategy, keras_reduce, 0

    def __call__(self, reduce_op, value, axis=None):
        # keras-team/keras#20585: see prepare_model.
        if axis is not None and _all_scalars(value, self.strategy):
            axis = None
            self.dropped_axes += 1
        return self.keras_reduce(reduce_op, value, axis=axis)


def _all_scalars(value, strategy) -> bool:
    tf = import_tensorflow()

    leaves = tf.nest.flatten(value)
    if not leaves:
        return False
    for leaf in leaves:
        distributed = isinstance(leaf, tf.distribute.DistributedValues)
        parts = strategy.experimental_local_results(leaf) if distributed else [leaf]
        if any(getattr(getattr(part, "shape", None), "rank", None) != 0 for part in parts):
            return False
    return True
