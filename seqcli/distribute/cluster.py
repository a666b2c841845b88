"""Multi-worker clusters (TF_CONFIG or SLURM), the strategy over them with a deadline for peers, and where
each worker writes."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqcli.distribute.settings import DistributeError, Settings, StrategyInfo
from seqcli.keras_env import (
    configure_coordination_service,
    import_tensorflow,
    slurm_tasks_per_node,
    tensorflow_started,
)

COORDINATED_JOBS = ("chief", "worker")


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


def multi_worker_strategy(tf, settings: Settings) -> StrategyInfo:
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
            hint="start every worker with the same cluster, check the addresses and ports, or raise distribute.timeout",
        ) from error
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
        "distribute: multi_worker needs a cluster, and neither TF_CONFIG nor SLURM_JOB_ID/SLURM_PROCID is set",
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
        ) from error
    jobs, task_type, index = _check_tf_config(config)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return Cluster(resolver, jobs, task_type, index, "TF_CONFIG")


_TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


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
            resolver = resolvers.SlurmClusterResolver(gpus_per_node=busiest, gpus_per_task=1, auto_set_gpu=False)
        spec = resolver.cluster_spec()
    except (RuntimeError, ValueError, KeyError) as error:
        raise DistributeError(
            f"SLURM: cannot find the cluster of this job step: {error}",
            hint="start the workers with srun inside the allocation",
        ) from error
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
