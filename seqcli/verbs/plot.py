"""``seq plot``: a model's architecture as a diagram, or a run's training curves, drawn with matplotlib.

A Sequential model is a chain, so no graph layout (Graphviz's ``dot``) is needed: one box per layer, top
to bottom, with its name, class, output shape and parameters; frozen layers are grey and say so, and a
pretrained base is one box with the number of layers inside. A spec is drawn from its weightless
(abstract) build; a ``.keras`` file is loaded in safe mode.

A spec's build is :func:`seqcli.verbs.report.inspect_spec`'s, a model file is loaded by
:func:`seqcli.models.load_model_file` (safe mode), a run folder is read through
:class:`seqcli.training.rundir.RunDirectory` and its curves drawn by :func:`seqcli.training.results.plot_curves`
(as the run drew its own), a study folder through :class:`seqcli.tune.folder.StudyFolder`: one reading of each.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqcli.display import NAME_LIMIT, figure_text
from seqcli.errors import MissingDependency, SeqError, clean_message

IMAGE_FORMATS = (".png", ".svg")
BOX_HEIGHT, GAP, WIDTH = 0.62, 0.38, 5.2  # inches
FROZEN_COLOR, TRAINABLE_COLOR, PARTLY_COLOR, INPUT_COLOR = "#d9d9d9", "#dbe9f6", "#fde9c9", "#e8f3e0"


class PlotError(SeqError):
    """A diagram or curves that cannot be drawn from what was given."""


@dataclass
class Box:
    """One layer as the diagram shows it."""

    name: str
    class_name: str
    output_shape: tuple | None
    params: int | None
    trainable: str = "yes"  # "yes", "no" or "partly"
    inner_layers: int | None = None

    def title(self) -> str:
        inner = f", {self.inner_layers} layers" if self.inner_layers is not None else ""
        return f"{self.name}  ({self.class_name}{inner})"

    def detail(self) -> str:
        from seqcli.shapes import shape_text

        params = "?" if self.params is None else f"{self.params:,} params"
        frozen = {"no": "  ·  frozen", "partly": "  ·  partly frozen"}.get(self.trainable, "")
        return f"output {shape_text(self.output_shape)}  ·  {params}{frozen}"


@dataclass
class Diagram:
    title: str
    input_shape: tuple | None
    boxes: list[Box]
    params: int | None
    trainable_params: int | None


@dataclass
class Plotted:
    output: Path
    what: str  # "architecture", "curves" or "objective"
    layers: int | None = None
    trials: int | None = None
    quantities: tuple[int, int] | None = None  # curves: (drawn, in the history)

    def description(self) -> str:
        """What was drawn, in words: 'the architecture (4 layers)', 'the curves', 'the objective over 6 trials'."""
        if self.what == "objective":
            return f"the objective over {self.trials} trials"
        if self.quantities and self.quantities[0] < self.quantities[1]:
            return f"the curves (the first {self.quantities[0]} of {self.quantities[1]} quantities)"
        return f"the {self.what}" + (f" ({self.layers} layers)" if self.layers is not None else "")


def plot(
    source: str | Path,
    output: str | Path,
    *,
    curves: bool = False,
    engine: str = "matplotlib",
    overwrite: bool = False,
    confusion: bool = False,
    data: str | None = None,
) -> Plotted:
    """Draw ``source`` to ``output`` (.png or .svg): a tuning study's objective over trials, a run folder's
    curves, else the architecture of a spec or a .keras file (``curves`` asks for a run's curves explicitly;
    ``confusion`` for a classifier's confusion matrix on ``data``, default the run's evaluation data).
    An existing ``output`` is replaced only with ``overwrite``, and never when it is ``source``."""
    from seqcli.outputs import claim_output

    source, output = Path(source), Path(output)
    if output.suffix.lower() not in IMAGE_FORMATS:
        raise PlotError(f"cannot tell the image format of {output}", hint="end --output with .png or .svg")
    if data is not None and not confusion:
        raise PlotError("--data is for --confusion only", hint="add --confusion, or leave --data out")
    inputs = [source, *([Path(data)] if data else [])]
    with claim_output(output, "seq plot", folder=False, inputs=inputs, overwrite=overwrite):
        if confusion:
            return plot_confusion(source, output, data)
        return _plot(source, output, curves, engine)


def _plot(source: Path, output: Path, curves: bool, engine: str) -> Plotted:
    from seqcli.tune.folder import StudyFolder

    if StudyFolder(source).holds_study() and not curves:
        return plot_study(source, output)
    if curves or source.is_dir() and engine == "matplotlib":
        return plot_run_curves(source, output)
    if engine == "graphviz":
        return plot_with_graphviz(source, output)
    diagram = diagram_for(source)
    draw_diagram(diagram, output)
    return Plotted(output, "architecture", len(diagram.boxes))


def diagram_for(source: Path) -> Diagram:
    """The boxes of a spec (abstract build, no weights) or of a saved model."""
    if source.suffix == ".keras":
        return _model_diagram(_load_model(source))
    from seqcli.verbs.report import inspect_spec

    report = inspect_spec(source)
    if not report.ok:
        raise report.error()
    built = report.built
    if built is None or built.input_shape is None or not built.built:
        raise PlotError(
            f"{source} has no input shape, so its output shapes are unknown",
            hint="start 'layers' with '- Input: {shape: [...]}'",
        )
    boxes = [
        Box(
            row.name,
            row.class_name,
            row.output_shape,
            row.params,
            "partly" if row.partly_trainable else "yes" if row.trainable else "no",
            row.inner_layers,
        )
        for row in built.rows
    ]
    return Diagram(
        report.model_name or "sequential", (None, *built.input_shape), boxes, built.params, built.trainable_params
    )


def _load_model(path: Path):
    from seqcli.models import load_model_file

    return load_model_file(path)


def _model_diagram(model) -> Diagram:
    boxes = []
    for layer in model.layers:
        trainable_count = sum(math.prod(w.shape) for w in layer.trainable_weights)
        count = layer.count_params()
        state = (
            "no"
            if not layer.trainable or (count and not trainable_count)
            else ("partly" if trainable_count < count else "yes")
        )
        inner = len(layer.layers) if hasattr(layer, "layers") and hasattr(layer, "inputs") else None
        boxes.append(Box(layer.name, type(layer).__name__, tuple(layer.output.shape), count, state, inner))
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return Diagram(model.name, tuple(model.input_shape), boxes, model.count_params(), trainable)


TITLE_FONT, DETAIL_FONT, HEADER_FONT = 9.5, 8.5, 11  # points
TEXT_MARGIN = 0.3  # inches between a box's text and its edge


def draw_diagram(diagram: Diagram, output: Path) -> None:
    """The chain of boxes, input at the top, with arrows; written atomically as PNG or SVG. The boxes are
    as wide as the widest text (a long layer or model name) needs, never narrower than :data:`WIDTH`."""
    from matplotlib.patches import FancyArrowPatch

    from seqcli.shapes import shape_text

    rows = [Box("input", "Input", diagram.input_shape, None)] + diagram.boxes
    titles = [f"Input {shape_text(rows[0].output_shape)}"] + [
        figure_text(box.title(), limit=NAME_LIMIT) for box in rows[1:]
    ]
    details = [figure_text(box.detail()) for box in rows[1:]]
    totals = "" if diagram.params is None else (f"{diagram.params:,} params, {diagram.trainable_params:,} trainable")
    header = figure_text(f"{diagram.title}   {totals}", limit=NAME_LIMIT)
    width = max(
        WIDTH,
        _text_width(titles, TITLE_FONT, bold=True) + 2 * TEXT_MARGIN,
        _text_width(details, DETAIL_FONT) + 2 * TEXT_MARGIN,
        _text_width([header], HEADER_FONT, bold=True) + 2 * TEXT_MARGIN,
    )
    height = len(rows) * (BOX_HEIGHT + GAP) - GAP + 0.8
    figure, axes = _figure(width + 0.4, height)
    axes.set_xlim(0, width + 0.4)
    axes.set_ylim(0, height)
    center = 0.2 + width / 2
    for index, box in enumerate(rows):
        top = height - 0.6 - index * (BOX_HEIGHT + GAP)
        is_input = index == 0
        _draw_box(axes, box, top, width, is_input)
        axes.text(
            center,
            top - (BOX_HEIGHT / 2 if is_input else 0.2),
            titles[index],
            ha="center",
            va="center",
            fontsize=TITLE_FONT,
            fontweight="bold",
        )
        if not is_input:
            axes.text(center, top - 0.45, details[index - 1], ha="center", va="center", fontsize=DETAIL_FONT)
        if index:
            axes.add_patch(
                FancyArrowPatch(
                    (center, top + GAP),
                    (center, top),
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color="#333333",
                    shrinkA=0,
                    shrinkB=1,
                )
            )
    axes.text(center, height - 0.25, header, ha="center", va="center", fontsize=HEADER_FONT, fontweight="bold")
    _save(figure, output)


def _draw_box(axes, box: Box, top: float, width: float, is_input: bool) -> None:
    """One layer's box: its color says trainable, frozen or partly; a base's border is thick, a frozen one's
    dashed."""
    from matplotlib.patches import FancyBboxPatch

    color = (
        INPUT_COLOR if is_input else {"no": FROZEN_COLOR, "partly": PARTLY_COLOR}.get(box.trainable, TRAINABLE_COLOR)
    )
    axes.add_patch(
        FancyBboxPatch(
            (0.2, top - BOX_HEIGHT),
            width,
            BOX_HEIGHT,
            boxstyle="round,pad=0.02",
            facecolor=color,
            edgecolor="#333333",
            linewidth=2.2 if box.inner_layers is not None else 1,
            linestyle="--" if box.trainable == "no" and not is_input else "-",
        )
    )


def _text_width(texts: list[str], size: float, *, bold: bool = False) -> float:
    """The width in inches of the widest of ``texts`` as matplotlib draws it at ``size`` points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font = FontProperties(size=size, weight="bold" if bold else "normal")
    measure = TextToPath()
    widths = [measure.get_text_width_height_descent(text, font, ismath=False)[0] for text in texts]
    return max(widths, default=0.0) / 72  # points to inches


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    return figure, axes


def _save(figure, output: Path) -> None:
    from seqcli.training.results import save_figure

    save_figure(figure, output, dpi=110)


# ----------------------------------------------------------------------------- training curves


def plot_run_curves(run: Path, output: Path) -> Plotted:
    """The curves of a run folder's history.csv, drawn like the run's own curves.png."""
    from seqcli.training.results import plot_curves, plotted_quantities
    from seqcli.training.rundir import RunDirectory, RunDirectoryError

    folder = RunDirectory(run)
    if not run.is_dir() or not folder.history.is_file():
        raise PlotError(
            f"{run} is not a run folder with a history.csv",
            hint="give a run directory written by 'seq train', or a spec or .keras file for its architecture",
        )
    history = folder.read_history()
    if not history:
        raise PlotError(f"{folder.history} holds no epochs yet", hint="train at least one epoch")
    try:
        metrics = folder.read_metrics()
    except RunDirectoryError as error:
        raise PlotError(error.message, hint=error.hint) from error

    phases = [phase["first_epoch"] for phase in metrics.get("phases") or []][1:]
    drawn = plot_curves(output, history, metrics.get("model") or run.name, metrics.get("best_epoch"), phases)
    return Plotted(output, "curves", quantities=(drawn, len(plotted_quantities(history))))


# ----------------------------------------------------------------------------- a confusion matrix

MATRIX_LABELS = 30  # classes whose names label the axes (and whose counts are written in the cells)


def plot_confusion(target: Path, output: Path, data: str | None = None) -> Plotted:
    """A classifier's confusion matrix on ``data`` (default: the run's test, else validation data), as
    ``seq evaluate`` counts it: rows the true class, columns the predicted one."""
    from seqcli.verbs.predict import evaluate_model

    evaluation = evaluate_model(target, data=data)
    report = evaluation.classes
    if report is None:
        raise PlotError(
            f"{target} is not a classifier: its outputs and labels are not classes",
            hint="a confusion matrix needs class labels (integers or one-hot rows) and one output per class",
        )
    if report.confusion is None:
        raise PlotError(
            f"{target} has {len(report.names):,} classes, too many for a confusion matrix",
            hint="see the per-class results of 'seq evaluate --format json'",
        )
    draw_confusion(report, output, f"{evaluation.model} on {evaluation.source} ({evaluation.count:,} samples)")
    return Plotted(output, "confusion matrix")


def draw_confusion(report, output: Path, title: str) -> None:
    """The matrix as a heat map, counts written in the cells and class names on the axes (up to
    :data:`MATRIX_LABELS` classes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    count = len(report.names)
    size = min(4 + 0.35 * count, 16)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(report.confusion, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    if count <= MATRIX_LABELS:
        names = [figure_text(name, limit=24) for name in report.names]  # class names come from the data
        axes.set_xticks(range(count), names, rotation=45, ha="right")
        axes.set_yticks(range(count), names)
        darkest = report.confusion.max() or 1
        for (row, column), value in np.ndenumerate(report.confusion):
            color = "white" if value > darkest / 2 else "black"
            axes.text(column, row, f"{value:,}", ha="center", va="center", color=color, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(figure_text(title))
    _save(figure, output)


# ----------------------------------------------------------------------------- a tuning study


def plot_study(folder: Path, output: Path) -> Plotted:
    """A ``seq tune`` study folder's objective over trials and the best so far, drawn like its trials.png."""
    from seqcli.tune.folder import StudyFolder, StudyFolderError
    from seqcli.tune.outputs import plot_trials

    study = StudyFolder(folder)
    try:
        rows, objective, direction = study.read()
    except StudyFolderError as error:
        raise PlotError(error.message, hint=error.hint) from error
    if not any(row["value"] is not None for row in rows):
        raise PlotError(
            f"{study.trials} holds no trial with a value yet",
            hint="let at least one trial finish (rerun the study with --resume)",
        )
    plot_trials(output, rows, objective, direction)
    return Plotted(output, "objective", trials=len(rows))


# ----------------------------------------------------------------------------- Graphviz, where installed


def plot_with_graphviz(source: Path, output: Path) -> Plotted:
    """keras.utils.plot_model, which needs Graphviz's ``dot`` program (and pydot)."""
    if shutil.which("dot") is None:
        raise MissingDependency(
            "--engine graphviz needs Graphviz's 'dot' program, which is not on PATH",
            hint="install Graphviz (e.g. apt-get install graphviz) and pydot, or leave out --engine: "
            "the default matplotlib engine needs neither",
        )
    from seqcli.files import atomic_path
    from seqcli.keras_env import import_keras

    keras = import_keras()
    if source.is_dir():
        from seqcli.training.rundir import resolve_run_or_model

        source = resolve_run_or_model(source).model
    if source.suffix == ".keras":
        model = _load_model(source)
    else:
        from seqcli.modelbuild import model_from_spec
        from seqcli.specfile import load_spec

        model = model_from_spec(load_spec(source))
    try:
        with atomic_path(output, suffix=output.suffix) as temporary:
            keras.utils.plot_model(
                model,
                to_file=str(temporary),
                show_shapes=True,
                show_layer_names=True,
                show_trainable=True,
                expand_nested=False,
            )
    except ImportError as error:
        raise MissingDependency(f"--engine graphviz: {clean_message(error)}", hint="pip install pydot") from error
    return Plotted(output, "architecture", len(model.layers))
