"""``make_strategy``: the ``distribute:`` section to a ``tf.distribute.Strategy`` and its StrategyInfo."""

from __future__ import annotations

from collections.abc import Mapping

from seqcli.distribute.cluster import multi_worker_strategy
from seqcli.distribute.devices import device_names, known_devices, split_cpu
from seqcli.distribute.settings import DistributeError, Settings, StrategyInfo, read_settings
from seqcli.keras_env import import_tensorflow


def make_strategy(config: Mapping | None) -> StrategyInfo:
    """The strategy the ``distribute:`` section asks for. Call it before TensorFlow runs any operation.

    Raises DistributeError for devices that do not exist, a TF_CONFIG or SLURM environment that cannot be
    used, virtual CPUs asked for too late, and peers that do not answer within ``timeout`` seconds.
    """
    settings = read_settings(config)
    if settings.strategy == "multi_worker" and (settings.devices or settings.virtual_cpus):
        raise DistributeError(
            "distribute: multi_worker uses every GPU of each worker, or its CPU; devices and virtual_cpus "
            "do not apply to it",
            hint="remove distribute.devices and distribute.virtual_cpus, or use strategy: mirrored",
        )
    tf = import_tensorflow()

    if settings.virtual_cpus is not None:
        split_cpu(tf, settings.virtual_cpus)
    if settings.strategy == "multi_worker":
        return multi_worker_strategy(tf, settings)
    if settings.strategy == "one_device":
        return _one_device(tf, settings)
    if settings.strategy == "mirrored":
        return _mirrored(tf, _mirrored_devices(tf, settings))
    return _auto(tf, settings)


def _auto(tf, settings: Settings) -> StrategyInfo:
    if settings.devices:
        if len(settings.devices) == 1:
            return _one_device(tf, settings)
        return _mirrored(tf, known_devices(tf, settings.devices))
    if settings.virtual_cpus is not None and settings.virtual_cpus >= 2:
        return _mirrored(tf, device_names(tf.config.list_logical_devices("CPU")))
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        return _mirrored(tf, device_names(gpus))
    device = device_names(gpus or tf.config.list_logical_devices("CPU"))[0]
    return StrategyInfo(tf.distribute.get_strategy(), "default", [device], replicas=1)


def _one_device(tf, settings: Settings) -> StrategyInfo:
    if settings.devices and len(settings.devices) > 1:
        raise DistributeError(
            f"distribute.devices: one_device takes one device; received {len(settings.devices)}: "
            f"{', '.join(settings.devices)}",
            hint="use strategy: mirrored to train on several devices",
        )
    if settings.devices:
        device = known_devices(tf, settings.devices)[0]
    else:
        device = device_names(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0]
    return StrategyInfo(tf.distribute.OneDeviceStrategy(device), "one_device", [device], replicas=1)


def _mirrored_devices(tf, settings: Settings) -> list[str]:
    if settings.devices:
        return known_devices(tf, settings.devices)
    if settings.virtual_cpus is not None:
        return device_names(tf.config.list_logical_devices("CPU"))
    return device_names(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")[:1])


def _mirrored(tf, devices: list[str]) -> StrategyInfo:
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return StrategyInfo(strategy, "mirrored", devices, replicas=strategy.num_replicas_in_sync)
