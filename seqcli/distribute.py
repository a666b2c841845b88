"""Distribution strategies from the spec's ``distribute:`` section.

``make_strategy`` turns the plain section into a ``tf.distribute.Strategy`` and a :class:`StrategyInfo`
that says what was chosen; ``prepare_model`` makes a compiled model train under it; ``chief_output_dir``
tells a worker where to write. TensorFlow is imported inside the functions, never at module import.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqcli.errors import SeqError
from seqcli.keras_env import (
    configure_coordination_service,
    import_tensorflow,
    slurm_tasks_per_node,
    tensorflow_started,
)

COORDINATED_JOBS = ("chief", "worker")


class DistributeError(SeqError):
    """The distribute section asks for something this machine or cluster cannot do."""


@dataclass
class StrategyInfo:
    """The strategy chosen for a run and where this process stands in it."""

    strategy: Any  # tf.distribute.Strategy
    kind: str  # "one_device" | "mirrored" | "multi_worker" | "default"
    devices: list[str]
    replicas: int
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    def describe(self, global_batch: int) -> dict:
        """Rows for the run header: strategy, devices, replicas, workers, global and per-replica batch."""
        return {
            "strategy": self.kind,
            "devices": ", ".join(self.devices),
            "replicas": self.replicas,
            "workers": self.workers,
            "global batch": global_batch,
            "per-replica batch": per_replica_batch(global_batch, self.replicas),
        }


@dataclass(frozen=True)
class _Settings:
    strategy: str = "auto"
    devices: tuple[str, ...] | None = None
    virtual_cpus: int | None = None
    timeout: float = 120.0


def per_replica_batch(global_batch: int, replicas: int) -> int | str:
    """The batch each replica sees: an int, or "LOW-HIGH" when the global batch does not divide evenly."""
    low, extra = divmod(global_batch, max(replicas, 1))
    return low if extra == 0 else f"{low}-{low + 1}"


# ----------------------------------------------------------------------------- make_strategy


def make_strategy(config: Mapping | None) -> StrategyInfo:
    """The strategy the ``distribute:`` section asks for. Call it before TensorFlow runs any operation.

    Raises DistributeError for devices that do not exist, a TF_CONFIG or SLURM environment that cannot be
    used, virtual CPUs asked for too late, and peers that do not answer within ``timeout`` seconds.
    """
    settings = _settings(config)
    if settings.strategy == "multi_worker" and (settings.devices or settings.virtual_cpus):
        raise DistributeError(
            "distribute: multi_worker uses every GPU of each worker, or its CPU; devices and virtual_cpus "
            "do not apply to it",
            hint="remove distribute.devices and distribute.virtual_cpus, or use strategy: mirrored",
        )
    tf = import_tensorflow()

    if settings.virtual_cpus is not None:
        _split_cpu(tf, settings.virtual_cpus)
    if settings.strategy == "multi_worker":
        return _multi_worker(tf, settings)
    if settings.strategy == "one_device":
        return _one_device(tf, settings)
    if settings.strategy == "mirrored":
        return _mirrored(tf, _mirrored_devices(tf, settings))
    return _auto(tf, settings)


def _settings(config: Mapping | None) -> _Settings:
    from pydantic import ValidationError

    from seqcli.spec.sections import DistributeSection

    try:
        section = DistributeSection.model_validate(dict(config or {}))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"distribute.{where}: {first['msg']} (received: {first.get('input')!r})"
        raise DistributeError(message) from None
    devices = tuple(section.devices) if section.devices is not None else None
    return _Settings(section.strategy, devices, section.virtual_cpus, float(section.timeout))


MAX_VIRTUAL_CPUS = 64


def virtual_cpus_limit() -> int:
    """The most virtual CPUs seq makes: four per core, at least 8, at most :data:`MAX_VIRTUAL_CPUS` (each is a
    TensorFlow device with its own threads and buffers: 1000 of them grew to 7 GB and never trained)."""
    return min(MAX_VIRTUAL_CPUS, max(8, 4 * (os.cpu_count() or 1)))


def virtual_cpus_problem(count: int | None, batch_size: int) -> tuple[str, str] | None:
    """``(message, hint)`` when ``count`` virtual CPUs cannot train batches of ``batch_size``; None when they can."""
    if count is None:
        return None
    limit = virtual_cpus_limit()
    if count > limit:
        return (f"{count} virtual CPUs is more than this machine can use ({os.cpu_count()} cores; at most {limit})",
                f"use at most {limit}; virtual CPUs are for testing distribution, not for speed")
    if count > batch_size:
        return (f"{count} virtual CPUs cannot share batches of {batch_size} samples: each replica needs at least one",
                f"use at most {batch_size} virtual CPUs, or a data.batch_size of at least {count}")
    return None


def _split_cpu(tf, count: int) -> None:
    """Split the first CPU into ``count`` logical devices; only possible before TensorFlow initializes."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        have = len(tf.config.list_logical_devices("CPU"))
        raise DistributeError(
            f"distribute.virtual_cpus: cannot split the CPU into {count} devices: TensorFlow has already "
            f"initialized its devices ({have} CPU device{'s' if have != 1 else ''}; {error})",
            hint="make_strategy must run before any TensorFlow operation, once per process",
        ) from None


def _auto(tf, settings: _Settings) -> StrategyInfo:
    if settings.devices:
        if len(settings.devices) == 1:
            return _one_device(tf, settings)
        return _mirrored(tf, _known_devices(tf, settings.devices))
    if settings.virtual_cpus is not None and settings.virtual_cpus >= 2:
        return _mirrored(tf, _names(tf.config.list_logical_devices("CPU")))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        return _mirrored(tf, _names(gpus))
    device = _names(gpus or tf.config.list_logical_devices("CPU"))[0]
    return StrategyInfo(tf.distribute.get_strategy(), "default", [device], replicas=1)


def _one_device(tf, settings: _Settings) -> StrategyInfo:
    if settings.devices and len(settings.devices) > 1:
        raise DistributeError(
            f"distribute.devices: one_device takes one device; received {len(settings.devices)}: "
            f"{', '.join(settings.devices)}",
            hint="use strategy: mirrored to train on several devices",
        )
    if settings.devices:
        device = _known_devices(tf, settings.devices)[0]
    else:
        device = _names(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0]
    return StrategyInfo(tf.distribute.OneDeviceStrategy(device), "one_device", [device], replicas=1)


def _mirrored_devices(tf, settings: _Settings) -> list[str]:
    if settings.devices:
        return _known_devices(tf, settings.devices)
    if settings.virtual_cpus is not None:
        return _names(tf.config.list_logical_devices("CPU"))
    return _names(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")[:1])


def _mirrored(tf, devices: list[str]) -> StrategyInfo:
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return StrategyInfo(strategy, "mirrored", devices, replicas=strategy.num_replicas_in_sync)


def _names(devices) -> list[str]:
    return [device.name for device in devices]


def _known_devices(tf, requested) -> list[str]:
    """Canonical names of the requested devices; DistributeError naming the ones that exist otherwise."""
    available = _names(tf.config.list_logical_devices())
    by_key = {_device_key(tf, name): name for name in available}
    found, missing = [], []
    for name in requested:
        key = _device_key(tf, name)
        if key in by_key:
            found.append(by_key[key])
        else:
            missing.append(name)
    if missing:
        raise DistributeError(
            f"distribute.devices: no device {', '.join(repr(m) for m in missing)} on this machine; "
            f"available: {', '.join(_short(name) for name in available)}",
            hint="name devices like GPU:0 or CPU:1; distribute.virtual_cpus: N makes CPU:0..CPU:N-1",
        )
    repeated = sorted({_short(name) for name in found if found.count(name) > 1})
    if repeated:
        raise DistributeError(
            f"distribute.devices: {', '.join(repeated)} is listed more than once; "
            f"received: {', '.join(requested)}"
        )
    return found


def _device_key(tf, name: str) -> tuple[str, int] | None:
    try:
        spec = tf.DeviceSpec.from_string(name if name.startswith("/") else "/" + name)
    except (ValueError, TypeError):
        return None
    if spec.device_type is None:
        return None
    return spec.device_type.upper(), spec.device_index or 0


def _short(name: str) -> str:
    return name.split("device:")[-1]


# ----------------------------------------------------------------------------- multi_worker


@dataclass(frozen=True)
class Cluster:
    """A multi-worker cluster and this process's task in it."""

    resolver: Any  # tf.distribute.cluster_resolver.ClusterResolver
    jobs: dict[str, list[str]]
    task_type: str
    task_index: int
    source: str  # "TF_CONFIG" or "SLURM"

    @property
    def workers(self) -> int:
        return sum(len(self.jobs.get(job, [])) for job in COORDINATED_JOBS)

    @property
    def worker_index(self) -> int:
        before = len(self.jobs.get("chief", [])) if self.task_type == "worker" else 0
        return before + self.task_index

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0


def _multi_worker(tf, settings: _Settings) -> StrategyInfo:
    cluster = resolve_cluster()
    if tensorflow_started():
        raise DistributeError(
            "distribute: multi_worker must be set up before TensorFlow runs any operation, and TensorFlow "
            "has already started in this process",
            hint="call make_strategy first",
        )
    _configure_coordination(tf, cluster, settings.timeout)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=settings.timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=cluster.resolver, communication_options=options
        )
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        raise DistributeError(
            f"distribute: worker {cluster.worker_index} of {cluster.workers} could not reach its peers "
            f"within {settings.timeout:g} s ({cluster.source}: {_peers(cluster)}); "
            f"TensorFlow said: {_first_line(error.message)}",
            hint="start every worker with the same cluster, check the addresses and ports, or raise "
            "distribute.timeout",
        ) from None
    devices = list(strategy.extended.worker_devices)
    return StrategyInfo(
        strategy,
        "multi_worker",
        devices,
        replicas=strategy.num_replicas_in_sync,
        workers=cluster.workers,
        worker_index=cluster.worker_index,
        is_chief=cluster.is_chief,
    )


def resolve_cluster() -> Cluster:
    """The cluster from TF_CONFIG, or from SLURM when SLURM_JOB_ID and SLURM_PROCID are set and TF_CONFIG
    is not (SlurmClusterResolver reads os.environ)."""
    environ = os.environ
    if environ.get("TF_CONFIG", "").strip():
        return _tf_config_cluster(environ["TF_CONFIG"])
    if "SLURM_JOB_ID" in environ and "SLURM_PROCID" in environ:
        return _slurm_cluster(environ)
    raise DistributeError(
        "distribute: multi_worker needs a cluster, and neither TF_CONFIG nor SLURM_JOB_ID/SLURM_PROCID "
        "is set",
        hint='set TF_CONFIG on every worker, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}, or start the workers with srun',
    )


def _tf_config_cluster(text: str) -> Cluster:
    tf = import_tensorflow()

    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistributeError(
            f"TF_CONFIG is not valid JSON: {error.msg} at line {error.lineno} column {error.colno} "
            f"(char {error.pos}): {_excerpt(text, error.pos)}",
            hint="TF_CONFIG needs double-quoted keys and strings",
        ) from None
    jobs, task_type, index = _check_tf_config(config)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return Cluster(resolver, jobs, task_type, index, "TF_CONFIG")


_TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
)


def _check_tf_config(config) -> tuple[dict[str, list[str]], str, int]:
    example = _TF_CONFIG_EXAMPLE
    if not isinstance(config, dict):
        raise DistributeError(
            f"TF_CONFIG must be a JSON object; received {type(config).__name__}",
            hint=f"for example {example}",
        )
    cluster, task = config.get("cluster"), config.get("task")
    missing = [key for key, value in (("cluster", cluster), ("task", task)) if not value]
    if missing:
        raise DistributeError(
            f"TF_CONFIG has no {' and no '.join(missing)}; it has: {', '.join(config) or 'nothing'}",
            hint=f"for example {example}",
        )
    if not isinstance(cluster, dict) or not all(
        isinstance(tasks, list) and all(isinstance(t, str) for t in tasks) for tasks in cluster.values()
    ):
        raise DistributeError(
            f"TF_CONFIG: cluster must map job names to lists of 'host:port'; received {json.dumps(cluster)}",
            hint=f"for example {example}",
        )
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise DistributeError(
            f"TF_CONFIG: task needs a type and an index; received {json.dumps(task)}",
            hint=f"for example {example}",
        )
    task_type, index = task["type"], task["index"]
    if task_type not in COORDINATED_JOBS:
        raise DistributeError(
            f"TF_CONFIG: task type {task_type!r} cannot train with multi_worker; expected 'chief' or 'worker'"
        )
    tasks = cluster.get(task_type) or []
    if not tasks:
        raise DistributeError(
            f"TF_CONFIG: task type {task_type!r} has no addresses in the cluster; the "
            f"cluster has: {', '.join(cluster)}",
            hint=f"for example {example}",
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(tasks):
        plural = "s" if len(tasks) != 1 else ""
        raise DistributeError(
            f"TF_CONFIG: task index {index!r} is out of range: the cluster has "
            f"{len(tasks)} {task_type!r} task{plural} (indices 0..{len(tasks) - 1})"
        )
    return {job: list(addresses) for job, addresses in cluster.items()}, task_type, index


def _slurm_cluster(environ: Mapping[str, str]) -> Cluster:
    """The cluster SlurmClusterResolver finds, with TensorFlow's CPU-only corner worked around."""
    tf = import_tensorflow()
    resolvers = tf.distribute.cluster_resolver
    try:
        gpus = _gpus_per_node(environ)
        if gpus:
            resolver = resolvers.SlurmClusterResolver(gpus_per_node=gpus)
        else:
            # With no GPU, SlurmClusterResolver divides the node's GPUs into range(0, 0, 0) and fails; give it
            # one placeholder GPU per task, and tell the strategy the truth below.
            busiest = max(slurm_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1")))
            resolver = resolvers.SlurmClusterResolver(
                gpus_per_node=busiest, gpus_per_task=1, auto_set_gpu=False
            )
        spec = resolver.cluster_spec()
    except (RuntimeError, ValueError, KeyError) as error:
        raise DistributeError(
            f"SLURM: cannot find the cluster of this job step: {error}",
            hint="start the workers with srun inside the allocation",
        ) from None
    jobs = spec.as_dict()
    task_type, index = resolver.task_type, resolver.task_id
    if not gpus:
        resolver = resolvers.SimpleClusterResolver(
            spec, task_type=task_type, task_id=index, num_accelerators={}, rpc_layer="grpc"
        )
    return Cluster(resolver, {job: list(tasks) for job, tasks in jobs.items()}, task_type, index, "SLURM")


def _gpus_per_node(environ: Mapping[str, str]) -> int:
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def _configure_coordination(tf, cluster: Cluster, timeout: float) -> None:
    """Start TensorFlow's coordination service with a registration deadline instead of its default wait.

    MultiWorkerMirroredStrategy configures the service itself only when nobody has; its configuration has
    no deadline for peers that never come (the leader waits in TFE_EnableCollectiveOps forever). With
    ``cluster_register_with_barrier`` every task, the leader included, fails with DeadlineExceededError
    once ``timeout`` passes without all tasks registered.
    """
    spec = tf.train.ClusterSpec(cluster.jobs)
    jobs = {job: len(cluster.jobs[job]) for job in COORDINATED_JOBS if cluster.jobs.get(job)}
    configure_coordination_service(spec, jobs, max(int(timeout * 1000), 1))


def _peers(cluster: Cluster) -> str:
    return "; ".join(f"{job}: {', '.join(tasks)}" for job, tasks in cluster.jobs.items())


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "(no message)"


def _excerpt(text: str, position: int, width: int = 20) -> str:
    start = max(position - width, 0)
    return f"...{text[start:position]}<here>{text[position : position + width]}..."


# ----------------------------------------------------------------------------- prepare_model


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
    return all(layer.built for layer in layers) and all(
        part is None or getattr(part, "built", False) for part in parts
    )


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
    keras_reduce = strategy.reduce
    if getattr(keras_reduce, "drops_axis_for_scalars", False):
        return

    def reduce(reduce_op, value, axis=None):
        # keras-team/keras#20585: see prepare_model.
        if axis is not None and _all_scalars(value, strategy):
            axis = None
            reduce.dropped_axes += 1
        return keras_reduce(reduce_op, value, axis=axis)

    reduce.drops_axis_for_scalars = True
    reduce.dropped_axes = 0
    strategy.reduce = reduce


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


# ----------------------------------------------------------------------------- output directories


_WORKER_DIRS: dict[Path, Path] = {}


def chief_output_dir(output_dir: Path, info: StrategyInfo) -> Path:
    """Where this process writes: ``output_dir`` on the chief, a private temporary folder on other workers.

    Every multi-worker process must save (saving runs collective operations), but only the chief's files
    count; the others' folders are removed when the process exits (the ``write_filepath`` pattern of
    TensorFlow's multi-worker guide).
    """
    output_dir = Path(output_dir)
    if info.is_chief:
        return output_dir
    key = output_dir.resolve()
    if key not in _WORKER_DIRS:
        folder = Path(tempfile.mkdtemp(prefix=f"seq-worker{info.worker_index}-{output_dir.name}-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _WORKER_DIRS[key] = folder
    return _WORKER_DIRS[key]
