"""Devices by name, and virtual CPUs (one CPU split into several, to test distribution on one machine)."""

from __future__ import annotations

import os

from seqcli.distribute.settings import DistributeError

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
        return (
            f"{count} virtual CPUs is more than this machine can use ({os.cpu_count()} cores; at most {limit})",
            f"use at most {limit}; virtual CPUs are for testing distribution, not for speed",
        )
    if count > batch_size:
        return (
            f"{count} virtual CPUs cannot share batches of {batch_size} samples: each replica needs at least one",
            f"use at most {batch_size} virtual CPUs, or a data.batch_size of at least {count}",
        )
    return None


def split_cpu(tf, count: int) -> None:
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
        ) from error


def device_names(devices) -> list[str]:
    return [device.name for device in devices]


def known_devices(tf, requested) -> list[str]:
    """Canonical names of the requested devices; DistributeError naming the ones that exist otherwise."""
    available = device_names(tf.config.list_logical_devices())
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
            f"distribute.devices: {', '.join(repeated)} is listed more than once; received: {', '.join(requested)}"
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
