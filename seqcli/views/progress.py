"""What training looks like: a run header, a live bar per epoch on a terminal (ETA, live metrics),
plain lines otherwise, and result tables. Rendering only; the training itself is in :mod:`seqcli.training`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from seqcli.display import shown
from seqcli.training import Reporter, RunHeader, TrainResult
from seqcli.tune.runner import TuneReporter
from seqcli.views.render import literal

if TYPE_CHECKING:  # rich.progress is imported when a live bar starts
    from rich.progress import Progress, TaskID

HIDDEN_COLUMNS = ("epoch", "seconds")


def make_reporter(console: Console, *, quiet: bool = False) -> Reporter:
    """A live display on a terminal, plain lines elsewhere, nothing with ``quiet``."""
    if quiet:
        return Reporter()
    return LiveReporter(console) if console.is_terminal else LineReporter(console)


def format_logs(logs: dict[str, Any]) -> str:
    return "  ".join(f"{name} {_number(value)}" for name, value in logs.items() if name not in HIDDEN_COLUMNS)


class LineReporter(Reporter):
    """One line per epoch, for logs and pipes."""

    def __init__(self, console: Console):
        self.console = console

    def run_started(self, header: RunHeader) -> None:
        self.console.print(header_table(header), soft_wrap=True)

    def epoch_started(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.epochs, self.steps = epochs, steps

    def epoch_finished(self, row: dict[str, Any]) -> None:
        self.console.print(literal(self.epoch_line(row), limit=None))

    def epoch_line(self, row: dict[str, Any]) -> str:
        """A finished epoch on one line: its number, steps, seconds and metrics."""
        width = len(str(self.epochs))
        return (
            f"epoch {row['epoch']:>{width}}/{self.epochs}  {self.steps}/{self.steps} steps  "
            f"{row['seconds']:.1f}s  {format_logs(row)}"
        )

    def note(self, text: str) -> None:
        self.console.print(literal(f"note: {text}", limit=None))


class LiveReporter(LineReporter):
    """A rich progress bar per epoch: steps, ETA and the running metrics, kept as a line when done."""

    wants_step_logs = True

    def __init__(self, console: Console):
        super().__init__(console)
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def run_started(self, header: RunHeader) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        super().run_started(header)
        self.progress = Progress(
            TextColumn("epoch {task.fields[label]}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeRemainingColumn(elapsed_when_finished=True),
            TextColumn("{task.fields[logs]}", markup=False),
            console=self.console,
            transient=False,
        )
        self.progress.start()

    def epoch_started(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        super().epoch_started(epoch, epochs, steps, done)
        label = f"{epoch + 1:>{len(str(epochs))}}/{epochs}"
        assert self.progress is not None, "a reporter is told of epochs after run_started"
        self.task = self.progress.add_task("", total=steps, completed=done, label=label, logs="")

    def steps_done(self, done: int, logs: dict[str, float]) -> None:
        progress, task = self._epoch_bar()
        progress.update(task, completed=done, logs=shown(format_logs(logs), limit=None))

    def epoch_finished(self, row: dict[str, Any]) -> None:
        """The finished epoch becomes a plain line above the live bar, like Keras's progress bar."""
        progress, task = self._epoch_bar()
        progress.remove_task(task)
        progress.console.print(literal(self.epoch_line(row), limit=None))

    def _epoch_bar(self) -> tuple[Progress, TaskID]:
        """The live display and the running epoch's bar."""
        assert self.progress is not None and self.task is not None, "steps are told between epoch_started and its end"
        return self.progress, self.task

    def note(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(literal(f"note: {text}", limit=None))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def header_table(header: RunHeader) -> Group:
    """The run header: what is trained, on what data, where, how. Long values are not wrapped (print it
    with ``soft_wrap=True``), so that a log keeps each row on one line."""
    rows = header_rows(header)
    width = max(len(key) for key, _ in rows) + 2
    lines: list = [Text.assemble((key.ljust(width), "bold"), literal(value, limit=None)) for key, value in rows]
    lines += [literal(f"warning: {note}", "yellow", limit=None) for note in header.notes]
    return Group(*lines)


def header_rows(header: RunHeader) -> list[tuple[str, str]]:
    validation = f", {header.validation_count:,} validation" if header.validation_count else ", no validation"
    compile_text = (
        f"{header.compile.get('optimizer')}, loss {header.compile.get('loss')}, metrics {header.compile.get('metrics')}"
    )
    if header.compile.get("schedule"):
        compile_text += f", learning rate {header.compile['schedule']}"
    steps = "1 step" if header.steps_per_execution == 1 else f"{header.steps_per_execution} steps"
    resumed = f" (resuming at {header.resumed_from})" if header.resumed_from else ""
    extra = [("Adapted", header.adapted)] if header.adapted else []
    extra += [("Class weights", header.class_weight)] if header.class_weight else []
    return [
        ("Training", f"{header.model} from {header.spec} → {header.output}"),
        ("Model", f"{header.params:,} params ({header.trainable_params:,} trainable)"),
        (
            "Data",
            f"{header.train_count:,} training samples{validation}; {header.steps_per_epoch:,} steps per "
            f"epoch; seed {header.seed}",
        ),
        ("Distribution", distribution_text(header.distribution)),
        ("Compile", compile_text),
        ("Execution", f"{steps} per execution, jit_compile {header.jit_compile}, {header.precision}"),
        *extra,
        ("Epochs", f"{header.epochs}{resumed}"),
    ]


def distribution_text(described: dict[str, Any]) -> str:
    """StrategyInfo.describe() as one line: strategy, devices, replicas and batch sizes."""
    described = dict(described or {})
    parts = []
    strategy = described.pop("strategy", None) or described.pop("kind", None)
    if strategy:
        parts.append(str(strategy))
    devices = described.pop("devices", None)
    if devices:
        parts.append("on " + ", ".join(map(str, devices)) if isinstance(devices, (list, tuple)) else f"on {devices}")
    for key, value in described.items():
        parts.append(f"{key.replace('_', ' ')} {value}")
    return "; ".join(parts)


def result_table(result: TrainResult) -> Group:
    """The final metrics and the files of a run."""
    if result.already_complete:
        title = f"{result.output} is already complete ({result.epochs_done} epochs)"
    else:
        stopped = f", stopped early (best epoch {result.best_epoch})" if result.stopped_early else ""
        title = f"Trained {result.epochs_done}/{result.epochs} epochs in {result.elapsed:.1f}s{stopped}"
    written = literal(f"Wrote {', '.join(path.name for path in result.files)} to {result.output}", limit=None)
    return Group(literal(title, "bold"), metrics_table(result.metrics), written if result.files else Text(""))


def evaluation_view(evaluation) -> Group:
    """``seq evaluate``'s answer: what was evaluated on what, then the metrics."""
    count = f"{evaluation.count:,} samples" if evaluation.count is not None else "all samples"
    parts: list[RenderableType] = [
        literal(f"{evaluation.model} on {evaluation.source} ({count})"),
        metrics_table(evaluation.metrics),
    ]
    if evaluation.classes is not None:
        parts += class_views(evaluation.classes)
    return Group(*parts)


TABLE_CLASSES = 50  # classes shown in the per-class table; more are in --format json
MATRIX_CLASSES = 20  # classes shown in the confusion matrix's text table


def class_views(report) -> list[RenderableType]:
    """A classifier's per-class precision and recall, and its confusion matrix, when they fit a terminal."""
    count = len(report.names)
    if count > TABLE_CLASSES:
        return [Text(f"{count} classes: per-class results and the confusion matrix are in --format json")]
    table = Table(title="Per class", title_justify="left")
    for column in ("Class", "Precision", "Recall", "Support"):
        table.add_column(column, justify="left" if column == "Class" else "right")
    for name, precision, recall, support in zip(report.names, report.precision, report.recall, report.support):
        table.add_row(literal(name), _share(precision), _share(recall), f"{int(support):,}")
    views: list[RenderableType] = [table]
    if report.confusion is not None and count <= MATRIX_CLASSES:
        views += [Text("Confusion matrix (rows: true class, columns: predicted class)"), confusion_table(report)]
    else:
        views.append(Text("the confusion matrix is in --format json"))
    return views


def confusion_table(report) -> Table:
    """Rows: the true class; columns: the predicted class (by index; the row labels name them)."""
    table = Table()
    table.add_column("True \\ predicted")
    for index in range(len(report.names)):
        table.add_column(str(index), justify="right")
    for index, (name, row) in enumerate(zip(report.names, report.confusion)):
        table.add_row(literal(f"{index} {name}"), *(f"{int(v):,}" for v in row))
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def metrics_table(metrics: dict[str, float], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for name, value in metrics.items():
        table.add_row(literal(name), _number(value))
    return table


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


class TuneLines(TuneReporter):
    """One line per trial started and ended, for terminals and logs alike."""

    def __init__(self, console: Console, prefix: str = ""):
        self.console, self.prefix = console, prefix

    def study_started(self, plan, done: int) -> None:
        self.line(
            f"Tuning {plan.spec_path} → {plan.output}: {plan.total} trials of {plan.epochs} epochs, "
            f"{plan.direction} {plan.objective} ({done} finished)"
        )

    def trial_started(self, event) -> None:
        values = ", ".join(f"{name}={value!r}" for name, value in event.params.items())
        self.line(f"{self.prefix}trial {event.number} ({event.run}): {values}")

    def trial_finished(self, event) -> None:
        value = f" {event.value:.6g}" if isinstance(event.value, float) else ""
        note = f" ({event.note})" if event.note else ""
        self.line(f"{self.prefix}trial {event.number} {event.state}{value} in {event.seconds:.1f}s{note}")

    def note(self, text: str) -> None:
        self.line(f"{self.prefix}note: {text}")

    def line(self, text: str) -> None:
        """One line of the study's log, never wrapped, through the text door."""
        self.console.print(literal(text, limit=None), soft_wrap=True)


def sample_progress(total: int, console: Console):
    """A rich progress bar on ``console`` (stderr) when it is a terminal; nothing otherwise (logs stay clean).
    The context manager yields a function that takes the samples done so far, or None without a bar."""
    import contextlib
    import sys

    if not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("samples", total=total)
            yield lambda done: progress.update(task, completed=done)

    return bar()


def stage_display(console: Console, command: str):
    """What a long command is doing, on ``console`` (stderr): a spinner with the current stage and the time
    spent on a terminal, one plain line per stage elsewhere. The context manager yields the function that
    announces a stage."""
    import contextlib
    import time

    from seqcli.errors import terminal_safe

    if not console.is_terminal:

        def plain(text: str) -> None:  # paths in the text are the user's: shown, never interpreted
            console.print(terminal_safe(f"{command}: {text}"), highlight=False, markup=False, soft_wrap=True)

        return contextlib.nullcontext(plain)

    @contextlib.contextmanager
    def spinner():
        started = time.monotonic()
        with console.status("", spinner="dots") as status:

            def show(text: str) -> None:
                status.update(Text(terminal_safe(f"{command}: {text} ({time.monotonic() - started:.0f}s so far)")))

            yield show

    return spinner()
