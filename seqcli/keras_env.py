"""The one door to Keras and TensorFlow: import them quietly, once, and reach their private APIs here only.

TensorFlow's start-up chatter is not for our users. Every other seqcli module asks this one for
``keras`` (:func:`import_keras`) or ``tensorflow`` (:func:`import_tensorflow`), inside the functions
that need them, so ``seq --help`` and spec validation never load TensorFlow. Where seq needs something
Keras or TensorFlow keep private (``keras.src...``, ``tensorflow.python...``), a named function below
wraps it, with a comment saying why and which version it was written against (Keras 3.15, TF 2.21):
when an upgrade moves one, this file is the only place to look. ruff's TID251 rule keeps it so.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from seqcli.errors import MissingDependency, SeqError
from seqcli.stages import stage


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: TensorFlow's C++ logs at import ignore TF_CPP_MIN_LOG_LEVEL."""
    if os.environ.get("SEQ_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Backends that build models without TensorFlow: JAX traces shapes without computing (jax.eval_shape); numpy
# (KERAS_BACKEND=numpy) runs each layer on placeholder arrays, and Keras's numpy backend imports JAX too.
LIGHT_BACKENDS = ("jax", "numpy")
TENSORFLOW_HINT = "pip install tensorflow (without it, only 'seq check', 'seq summary' and 'seq schema' run)"

_light_allowed = False


@contextlib.contextmanager
def light_backend_allowed() -> Iterator[None]:
    """Inside, Keras may run on a light backend (:data:`LIGHT_BACKENDS`) when TensorFlow is not installed: for
    commands that only build models abstractly. Outside, a missing TensorFlow is a :class:`MissingDependency`."""
    global _light_allowed
    saved, _light_allowed = _light_allowed, True
    try:
        yield
    finally:
        _light_allowed = saved


def import_keras():
    """Return the ``keras`` module with TensorFlow's C++ and Python logging turned down.

    Keras runs on TensorFlow whenever it is installed, whatever KERAS_BACKEND says: seq's engine is TensorFlow
    (tf.data, tf.distribute). Without it, inside :func:`light_backend_allowed` Keras runs on a light backend;
    elsewhere this raises :class:`MissingDependency`."""
    # The common case first, in plain statements: tf.data's autograph converts the functions pipelines call.
    loaded = sys.modules.get("keras")
    if loaded is not None:
        if loaded.backend.backend() == "tensorflow":
            if "tensorflow" in sys.modules:
                return loaded
        return _imported_keras(loaded)
    wanted = os.environ.get("KERAS_BACKEND")  # import_tensorflow sets it to tensorflow
    try:
        import_tensorflow()
    except MissingDependency:
        if not _light_allowed:
            raise
        return _import_light_keras(wanted)
    _ignore_keras_warnings()
    with _quiet_stderr(), stage("import TensorFlow and Keras"):
        import keras
    return keras


def _import_light_keras(wanted: str | None):
    """``keras`` on a light backend: ``wanted`` (KERAS_BACKEND) when it is one of :data:`LIGHT_BACKENDS`, else
    JAX."""
    os.environ["KERAS_BACKEND"] = wanted if wanted in LIGHT_BACKENDS else LIGHT_BACKENDS[0]
    _ignore_keras_warnings()
    try:
        import keras
    except ModuleNotFoundError as error:
        raise MissingDependency(
            f"Keras's {os.environ['KERAS_BACKEND']} backend needs {error.name}, which is not installed",
            hint="pip install jax (the light install for 'seq check'), or pip install tensorflow",
        ) from error
    return keras


def _ignore_keras_warnings() -> None:
    warnings.filterwarnings("ignore", message=r"Do not pass an `input_shape`", category=UserWarning)
    warnings.filterwarnings("ignore", module=r"keras\.src\..*", category=UserWarning)


def _imported_keras(keras):
    """``keras``, imported before seq asked for it, when its backend is the one seq would choose."""
    backend = keras.backend.backend()
    try:
        import_tensorflow()
    except MissingDependency:
        if not _light_allowed:
            raise
        if backend in LIGHT_BACKENDS:
            return keras
    if backend == "tensorflow":
        return keras
    raise SeqError(
        f"Keras was already imported with the {backend!r} backend",
        hint="seq runs Keras on TensorFlow: import seqcli before keras, or set KERAS_BACKEND=tensorflow",
    )


def running_light() -> bool:
    """Whether Keras is imported on a light backend (TensorFlow is not installed). Imports Keras."""
    return import_keras().backend.backend() != "tensorflow"


def import_tensorflow():
    """Return the ``tensorflow`` module, imported with its C++ and Python logging turned down; a
    :class:`MissingDependency` when it is not installed.

    Does not set Keras up (``seqcli.distribute`` configures devices before Keras is needed), but TensorFlow may
    import it: on the TensorFlow backend, whatever KERAS_BACKEND said."""
    # The common case first, in plain statements: tf.data's autograph converts the functions pipelines call.
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        return tf
    return _first_import_of_tensorflow()


_TENSORFLOW_MISSING: list[bool] = []  # one entry once known: a failed import searches every path again


def _first_import_of_tensorflow():
    if _TENSORFLOW_MISSING:
        raise _no_tensorflow()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Importing TensorFlow imports Keras: a KERAS_BACKEND set for other work must not leak in.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        with _quiet_stderr(), stage("import TensorFlow and Keras"), _jax_hidden():
            import tensorflow as tf
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        _TENSORFLOW_MISSING.append(True)
        raise _no_tensorflow() from error
    import absl.logging  # TensorFlow's own dependency: there whenever TensorFlow is

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf


@contextlib.contextmanager
def _jax_hidden() -> Iterator[None]:
    """JAX unimportable for a while, unless it is already imported. TensorFlow's TFLite module imports JAX when
    it is installed, for a JAX converter seq never uses (it catches the ImportError): that costs start-up time and
    enough address space to abort a run under an address-space limit (``ulimit -v``). JAX is importable again
    afterwards."""
    if "jax" in sys.modules:
        yield
        return
    sys.modules["jax"] = None  # type: ignore[assignment]  # the import system's own "not importable" marker
    try:
        yield
    finally:
        if "jax" in sys.modules and sys.modules["jax"] is None:
            del sys.modules["jax"]


def _no_tensorflow() -> MissingDependency:
    return MissingDependency("this command needs TensorFlow, which is not installed", hint=TENSORFLOW_HINT)


# ----------------------------------------------------------------------------- Keras private APIs


def keras_home() -> Path:
    """The folder ``keras.utils.get_file`` keeps downloads under: datasets in ``datasets/``, application
    weights in ``models/``. It is ``$KERAS_HOME`` (default ``~/.keras``), or ``/tmp/.keras`` when that is
    not writable, as ``get_file`` decides. Imports Keras."""
    # Private: Keras 3 (3.15) has no public keras_home(); get_file reads keras.src.backend.config.keras_home(),
    # and seq must name the same folder in its "copy the file here" hints.
    import_keras()
    from keras.src.backend import config

    home = os.path.expanduser(config.keras_home())
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home)


def snake_case(name: str) -> str:
    """Keras's own snake_case of a class name (``SparseTopKCategoricalAccuracy`` ->
    ``sparse_top_k_categorical_accuracy``): how Keras names layers and metrics by default."""
    # Private: keras.src.utils.naming.to_snake_case (Keras 3.15) is what Layer and Metric use for default names;
    # a copy of the regular expressions could drift from the names Keras really gives.
    import_keras()
    from keras.src.utils.naming import to_snake_case

    return to_snake_case(name)


def compiled_loss(loss, y_true, y_pred):
    """``loss`` (a Loss object, a name, or a loss function) as ``model.compile`` runs it: a function is
    wrapped the way compile wraps it, so labels and outputs are brought to the same rank first (labels of
    shape (n,) against outputs of shape (n, 1) fit, as they do in ``fit``)."""
    # Private: keras.src.trainers.compile_utils.get_loss (Keras 3.15) is what CompileLoss calls on each loss;
    # keras.losses.get() alone returns the bare function, which needs labels and outputs of equal rank.
    import_keras()
    from keras.src.trainers.compile_utils import get_loss

    return get_loss(loss, y_true, y_pred)


@contextlib.contextmanager
def fresh_layer_names() -> Iterator[None]:
    """Name layers made inside as a fresh Keras session does (``global_average_pooling2d``, not
    ``global_average_pooling2d_3``), so that names are the same in every process and build."""
    # Private: Keras 3 (3.15) counts auto-named objects in the global attribute "object_name_uids" of
    # keras.src.backend.common.global_state; keras.backend.clear_session() would reset it, but also drops
    # every model built so far.
    import_keras()
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


@contextlib.contextmanager
def weightless_scope() -> Iterator[None]:
    """``keras.StatelessScope(initialize_variables=False)``: layers built inside get shapes but no weights.
    The variables made inside are then forgotten, so no later Keras call gives them memory."""
    # Private: Keras 3 (3.15) lists every variable made in such a scope in the global attribute
    # "uninitialized_variables" of keras.src.backend.common.global_state, and the next StatelessScope to
    # exit with initialize_variables=True (every symbolic call's compute_output_spec on TensorFlow)
    # initializes them all: after `seq check` of a billion-parameter spec, the next real build in the
    # same process (training, a tune trial) would allocate that model's weights, or fail on one already set.
    keras = import_keras()
    from keras.src.backend.common import global_state

    before = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", before)


@contextlib.contextmanager
def linear_sequential_loading() -> Iterator[None]:
    """Sequential models deserialized inside are built once, after all their layers are added: loading
    costs one pass over the layers instead of one per layer."""
    # Keras 3 (3.15) Sequential.from_config adds each layer with add(layer), whose default rebuild=True
    # traces every layer added so far: n layers cost n**2/2 layer calls (500 ReLU layers took minutes).
    # Layers added with rebuild=False and one _maybe_rebuild() end in the same model.
    keras = import_keras()
    sequential = keras.Sequential
    original = sequential.__dict__["from_config"]

    def from_config(cls, config, custom_objects=None):
        layer_configs = config.get("layers") if isinstance(config, dict) else None
        if "name" not in config or not isinstance(layer_configs, list) or not layer_configs:
            return original.__func__(cls, config, custom_objects)
        if not all(isinstance(entry, dict) and "module" in entry for entry in layer_configs):
            return original.__func__(cls, config, custom_objects)  # the legacy (H5) format: Keras's own path
        model = cls(name=config["name"])
        for entry in layer_configs:
            model.add(keras.saving.deserialize_keras_object(entry, custom_objects=custom_objects), rebuild=False)
        model._maybe_rebuild()
        build_input_shape = config.get("build_input_shape")
        if not model._functional and build_input_shape and isinstance(build_input_shape, (tuple, list)):
            model.build(build_input_shape)
        return model

    sequential.from_config = classmethod(from_config)
    try:
        yield
    finally:
        sequential.from_config = original


# ----------------------------------------------------------------------------- TensorFlow private APIs


def slurm_tasks_per_node(text: str) -> list[int]:
    """SLURM's ``SLURM_STEP_TASKS_PER_NODE`` (``2(x3),1``) as one count per node."""
    # Private: TensorFlow 2.21 parses it in tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver
    # (expand_tasks_per_node), the module SlurmClusterResolver uses; parsing it the same way keeps the two agreed.
    import_tensorflow()
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver

    return slurm_cluster_resolver.expand_tasks_per_node(text)


def tensorflow_started() -> bool:
    """Whether TensorFlow's eager context is initialized (after which devices can no longer be configured)."""
    # Private: TensorFlow 2.21 has no public "is the runtime initialized" query; the eager context's handle is set
    # exactly when it is (tensorflow.python.eager.context).
    import_tensorflow()
    from tensorflow.python.eager import context

    return getattr(context.context(), "_context_handle", None) is not None


def configure_coordination_service(cluster_spec, job_sizes: dict[str, int], timeout_ms: int) -> None:
    """Start TensorFlow's coordination service for ``cluster_spec`` (a ``tf.train.ClusterSpec``), coordinating
    the jobs ``job_sizes`` names (job -> number of tasks), every task failing once ``timeout_ms`` passes
    without all of them registered."""
    # Private: TensorFlow 2.21's MultiWorkerMirroredStrategy sets the coordination service up without a
    # registration deadline; the only way to give it one is the eager context's configure_coordination_service,
    # with CoordinatedJob protos and multi_worker_util.coordination_leader, none of them public.
    import_tensorflow()
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=count) for job, count in job_sizes.items()]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        cluster_register_timeout_in_ms=timeout_ms,
        coordinated_jobs=jobs,
    )
    config = context.context().coordination_service
    if hasattr(config, "cluster_register_with_barrier"):  # TensorFlow 2.21 has it; without it workers wait
        config.cluster_register_with_barrier = True


def scalar_summary_metadata():
    """The metadata that marks an event as a scalar for TensorBoard's Scalars dashboard. ``tf.summary.write``
    needs no TensorBoard installation, but this proto comes from ``tensorflow.core``, which TensorFlow does not
    re-export (needed since seq writes epoch scalars without TensorBoard, TF 2.x)."""
    from tensorflow.core.framework import summary_pb2  # noqa: TID251 (this module is the door)

    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def patch_tf2onnx() -> None:
    """tf2onnx 1.17 still uses numpy names numpy 2 removed (``np.object``, ``np.cast``...); Keras ships the
    patch it applies before its own ONNX export (``keras.src.export.tf2onnx_lib``, Keras 3.15)."""
    from keras.src.export.tf2onnx_lib import patch_tf2onnx as keras_patch

    keras_patch()
