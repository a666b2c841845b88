"""Distribution strategies from the spec's ``distribute:`` section.

``make_strategy`` turns the plain section into a ``tf.distribute.Strategy`` and a :class:`StrategyInfo`
that says what was chosen; ``prepare_model`` makes a compiled model train under it; ``chief_output_dir``
tells a worker where to write. TensorFlow is imported inside the functions, never at module import.

The package: ``settings`` (the section, StrategyInfo, DistributeError), ``devices`` (device names, virtual
CPUs), ``strategy`` (make_strategy), ``cluster`` (multi-worker clusters from TF_CONFIG or SLURM, the peers'
deadline, chief_output_dir), ``keras_workarounds`` (prepare_model and the keras-team/keras#20585 workarounds).
"""

from seqcli.distribute.cluster import Cluster, chief_output_dir, resolve_cluster
from seqcli.distribute.devices import MAX_VIRTUAL_CPUS, virtual_cpus_limit, virtual_cpus_problem
from seqcli.distribute.keras_workarounds import prepare_model
from seqcli.distribute.settings import DistributeError, StrategyInfo, per_replica_batch
from seqcli.distribute.strategy import make_strategy

__all__ = [
    "MAX_VIRTUAL_CPUS",
    "Cluster",
    "DistributeError",
    "StrategyInfo",
    "chief_output_dir",
    "make_strategy",
    "per_replica_batch",
    "prepare_model",
    "resolve_cluster",
    "virtual_cpus_limit",
    "virtual_cpus_problem",
]
