"""What a run leaves behind besides checkpoints: history.csv, metrics.json, curves.png, the spec as
trained and TensorBoard's epoch scalars. Every file but TensorBoard's append-only logs is written
atomically."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqcli.display import figure_text, shown
from seqcli.files import OutputError, atomic_path, write_text_atomic
from seqcli.specfile import Spec
from seqcli.specfile.dump import dump_spec
from seqcli.specfile.paths import absolute_file_fields
from seqcli.stages import stage
from seqcli.training.events import TrainResult
from seqcli.training.rundir import RunDirectoryError

if TYPE_CHECKING:
    from seqcli.training.setup import TrainingSetup


@stage("results: save the model")
def save_model(model, target: Path, class_names: list[str] | None = None) -> None:
    """The run's model.keras, atomically, with the data's class names (:func:`seqcli.models.save_model`); a
    failure says how to go on."""
    from seqcli.models import save_model as save_atomically

    try:
        save_atomically(model, target, class_names=class_names)
    except OutputError as error:
        raise RunDirectoryError(
            error.message, hint="the previous file is intact; free space or fix permissions, then --resume"
        ) from error


@stage("results: write the spec as trained")
def write_spec_copy(target: Path, spec: Spec, seed: int, spec_label: str) -> None:
    """The spec as trained: overrides applied, file paths made absolute, the seed used."""
    data = absolute_file_fields(spec.resolved(), spec.base_dir)
    if not isinstance(data.get("train"), dict):
        data["train"] = {}
    data["train"]["seed"] = seed
    header = (
        f"# The spec as trained by seq train: {shown(spec_label)} with overrides applied,\n"
        "# file paths made absolute and the seed used. `seq train` on this file repeats the run,\n"
        "# given --allow-path for the folders of the files it names (specs read their own folder only).\n"
    )
    write_text_atomic(target, header + dump_spec(data))


def write_results(setup: TrainingSetup, metrics: dict, spec_label: str) -> None:
    """A run's result files: model.keras, metrics.json (with ``spec_label``, the spec as the user named it),
    history.csv and, with matplotlib, curves.png."""
    from concurrent.futures import ThreadPoolExecutor

    state, out = setup.state, setup.out
    best_epoch = (state.early_stopping or {}).get("best_epoch")
    summary = {
        "model": setup.model.name,
        "spec": str(Path(spec_label).resolve()),
        "epochs_done": state.epoch,
        "epochs": state.epochs,
        "stopped_early": state.stopped_early,
        "best_epoch": best_epoch,
        "seed": setup.seed,
        "elapsed_seconds": round(state.elapsed, 3),
        "metrics": metrics,
        "samples_per_second": throughput(state.history, setup.data.train_count),
        "distribution": setup.info.describe(setup.data.batch_size),
        "class_names": setup.data.class_names,
    }
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq-curves") as plotter:
        # matplotlib draws while the model is saved: half the end-of-run time on two cores
        curves = plotter.submit(_plot_curves, out.curves, state.history, setup.model.name, best_epoch)
        save_model(setup.model, out.model, setup.data.class_names)
        with stage("results: write the metrics"):
            write_text_atomic(out.metrics, json.dumps(summary, indent=2, default=str) + "\n")
        write_history(out.history, state.history)
        curves.result()


@stage("results: draw the curves")
def _plot_curves(target: Path, history: list[dict], title: str, best_epoch: int | None) -> None:
    with contextlib.suppress(ImportError):
        plot_curves(target, history, title, best_epoch=best_epoch)


@stage("results: write the history")
def write_history(target: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: (f"{value:.6g}" if isinstance(value, float) else value) for key, value in row.items()})
    write_text_atomic(target, buffer.getvalue())


@stage("plotting imports (ahead, on the data thread)")
def preload_plotting() -> None:
    """Import what :func:`plot_curves` needs (about a second on two busy cores), when matplotlib is installed."""
    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.figure  # noqa: F401


MAX_PANELS = 12  # quantities drawn in one curves figure (loss and 11 metrics), on a grid of PANEL_COLUMNS
PANEL_COLUMNS = 4
NOT_PLOTTED = ("epoch", "seconds", "phase")


def plotted_quantities(history: list[dict]) -> list[str]:
    """The quantities a history's curves show, one panel each (validation curves share their quantity's)."""
    return [k for k in history[0] if k not in NOT_PLOTTED and not k.startswith("val_")] if history else []


def plot_curves(
    target: Path, history: list[dict], title: str, best_epoch: int | None = None, phases: list[int] | None = None
) -> int:
    """One panel per quantity (loss, each metric), training and validation curves together, at most
    :data:`MAX_PANELS` of them on a grid (the figure's size is bounded whatever the history holds); ``phases``
    are the first epochs of the phases after the first (a transfer run's), each marked by a line before it.
    Returns how many quantities were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = plotted_quantities(history)[:MAX_PANELS]
    columns = min(max(len(names), 1), PANEL_COLUMNS)
    rows = max(math.ceil(len(names) / PANEL_COLUMNS), 1)
    figure = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    epochs = [row["epoch"] for row in history]
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        _plot_quantity(axes, epochs, history, name, best_epoch, phases or [])
    figure.suptitle(figure_text(title))
    save_figure(figure, target, dpi=100)
    return len(names)


def save_figure(figure, target: Path, *, dpi: int) -> None:
    """``figure`` to ``target`` (.png, or .svg), atomically. An SVG keeps its text as text (searchable) and is
    the same bytes for the same figure: no creation date, ids from a fixed salt."""
    import matplotlib

    suffix = target.suffix.lower() if target.suffix.lower() in (".png", ".svg") else ".png"
    settings = matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "seq"})
    with atomic_path(target, suffix=suffix) as temporary, settings:
        metadata = {"Date": None} if suffix == ".svg" else None
        figure.savefig(temporary, format=suffix[1:], dpi=dpi, metadata=metadata)


def _plot_quantity(axes, epochs: list, history: list[dict], name: str, best_epoch: int | None, phases) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.plot(epochs, [row.get(name) for row in history], marker="o", markersize=3, label="train")
    if any(f"val_{name}" in row for row in history):
        axes.plot(epochs, [row.get(f"val_{name}") for row in history], marker="o", markersize=3, label="validation")
    if best_epoch is not None:
        axes.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
    for number, first in enumerate(phases, start=2):
        axes.axvline(first - 0.5, color="black", linestyle=":", linewidth=1, label=f"phase {number}")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    axes.set_title(figure_text(name))
    axes.grid(alpha=0.3)
    axes.legend()


class TensorBoardWriter:
    """Epoch scalars in TensorBoard's event format (``logs/train``, ``logs/validation``), written with
    ``tf.summary.write``, which needs no TensorBoard installation."""

    def __init__(self, directory: Path | None, on_new_file: Callable[[], None] | None = None):
        self.directory = directory
        self.writers: dict[str, Any] = {}
        self.on_new_file = on_new_file  # told when TensorFlow has made an event file (the manifest claims it)

    def write(self, row: dict) -> None:
        self.write_rows([row])

    @stage("TensorBoard scalars")
    def write_rows(self, rows: list[dict]) -> None:
        """The epochs' scalars, then one flush."""
        if self.directory is None:
            return
        for row in rows:
            self._write(row, self.directory)
        for writer in self.writers.values():
            writer.flush()

    def _write(self, row: dict, directory: Path) -> None:
        from seqcli.keras_env import import_tensorflow, scalar_summary_metadata

        tf = import_tensorflow()
        metadata = scalar_summary_metadata()
        for key, value in row.items():
            if key in ("epoch", "seconds") or not isinstance(value, float):
                continue
            split = "validation" if key.startswith("val_") else "train"
            name = key[4:] if split == "validation" else key
            writer = self.writers.get(split)
            if writer is None:
                writer = self.writers[split] = tf.summary.create_file_writer(str(directory / split))
                if self.on_new_file is not None:
                    self.on_new_file()
            with writer.as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(value, tf.float32), step=row["epoch"], metadata=metadata)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def final_metrics(history: list[dict], early_stopping: dict | None) -> dict[str, float]:
    if not history:
        return {}
    row = history[-1]
    best_epoch = (early_stopping or {}).get("best_epoch")
    if (early_stopping or {}).get("restore_best_weights") and best_epoch is not None and best_epoch != row["epoch"]:
        row = next((r for r in history if r["epoch"] == best_epoch), row)
    return {k: v for k, v in row.items() if k not in ("epoch", "seconds")}


def throughput(history: list[dict], train_count: int | None) -> float | None:
    """Training samples per second over the epochs after the first (which pays for tracing)."""
    times = [row["seconds"] for row in history[1:]] or [row["seconds"] for row in history]
    if not times or not train_count:
        return None
    return round(train_count * len(times) / sum(times), 1)


def final_results(setup: TrainingSetup, reporter, spec_label: str) -> TrainResult:
    """The finished run's result: the best epoch's weights restored when early stopping asks for them, the
    result files written (:func:`write_results`)."""
    from seqcli.training.checkpoint import restore_variables

    state, stopper = setup.state, setup.early_stopping
    restore = stopper is not None and stopper.restored_epoch(state.epoch) is not None
    if stopper is not None and restore and setup.out.best.exists():
        restore_variables(setup.out.best, setup.model, groups=("model",))
        reporter.note(f"restored the weights of epoch {stopper.best_epoch}, the best {stopper.monitor}")
    metrics = final_metrics(state.history, state.early_stopping)
    write_results(setup, metrics, spec_label)
    return TrainResult(
        output=setup.run.path,
        history=state.history,
        metrics=metrics,
        epochs_done=state.epoch,
        epochs=state.epochs,
        stopped_early=state.stopped_early,
        best_epoch=(state.early_stopping or {}).get("best_epoch"),
        elapsed=state.elapsed,
        files=setup.out.files(),
    )
