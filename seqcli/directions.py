"""Which way a monitored quantity should go ("up" or "down"), read as Keras reads it: a loss goes down, a
metric the way it declares (Keras 3 keeps a metric's ``_direction``; MonitorCallback reads it for
EarlyStopping's ``mode="auto"``). Early stopping and tune's ``direction: auto`` both ask here."""

from __future__ import annotations

from seqcli.compile import resolve_compile
from seqcli.keras_env import import_keras
from seqcli.specfile import Spec


def metric_direction(spec: Spec, log_name: str) -> str | None:
    """``up`` or ``down``: the direction the compiled metric that logs ``log_name`` declares, as Keras's
    MonitorCallback reads it (a loss goes down); None when Keras could not tell (or compile has problems)."""
    name = log_name.removeprefix("val_")
    if name == "loss":
        return "down"
    settings, problems = resolve_compile(spec)
    if settings is None or problems:
        return None
    found = [metric for metric, metric_name in zip(settings.metrics, settings.metric_names) if metric_name == name]
    return _declared_direction(found[-1]) if found else None


def _declared_direction(metric) -> str | None:
    """How Keras's CompileMetrics compiles a spec's metric, and the direction the result declares."""
    keras = import_keras()
    if isinstance(metric, str):
        if metric in ("accuracy", "acc"):
            return "up"  # one of the accuracy classes, whichever the loss picks
        if metric in ("crossentropy", "ce"):
            return "down"
        metric = keras.metrics.get(metric)
        if not isinstance(metric, keras.metrics.Metric):
            metric = keras.metrics.MeanMetricWrapper(metric)
    direction = getattr(metric, "_direction", None)  # private: Keras 3 (3.15) keeps it on each metric
    return None if direction is None else ("up" if direction == "up" else "down")


def compiled_direction(model, name: str) -> str | None:
    """The direction ("up" or "down") the compiled metric called ``name`` declares, as Keras's
    MonitorCallback reads it; None when no such metric declares one (or the model is not there)."""
    metrics: list = []
    for metric in getattr(model, "metrics", None) or []:
        # Keras's CompileMetrics (and MetricsList) hold the compiled metrics; flatten them as Keras does.
        inner = getattr(metric, "metrics", None)
        metrics.extend(inner if type(metric).__name__ in ("CompileMetrics", "MetricsList") and inner else [])
    direction = None
    for metric in metrics:
        if metric.name == name and getattr(metric, "_direction", None) is not None:
            direction = "up" if metric._direction == "up" else "down"
    return direction
