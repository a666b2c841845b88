"""Rich renderables and machine formats from reports. Returns things; never prints."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

from rich.console import Group
from rich.table import Table
from rich.text import Text

from seqcli.budget import human_size
from seqcli.display import VALUE_LIMIT, shown
from seqcli.errors import format_problem, terminal_safe
from seqcli.shapes import shape_text


def literal(value, style: str | None = None, *, limit: int | None = VALUE_LIMIT) -> Text:
    """What rich is given of any text seq did not write itself: a ``Text`` through the text door
    (:func:`seqcli.display.shown`), never markup, so brackets in a name are shown as typed."""
    return Text(shown(value, limit=limit), style=style or "")


def summary_table(report) -> Group:
    """The model as a table: like ``model.summary()`` plus index, class, trainable and expectations."""
    built = report.built
    title = literal(f"Model: {report.model_name or '(unnamed)'}")
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("Layer")
    table.add_column("Class")
    table.add_column("Output shape")
    table.add_column("Params", justify="right")
    table.add_column("Trainable")
    table.add_column("Expect")
    for row in built.rows:
        expect = ""
        style = None
        if row.expect is not None:
            expect = "ok" if row.expect_ok else f"want {shape_text(row.expect)}"
            style = None if row.expect_ok or row.expect_ok is None else "bold red"
        table.add_row(
            str(row.index),
            literal(row.name),
            literal(_class_text(row)),
            Text(shape_text(row.output_shape), style=style),
            "?" if row.params is None else f"{row.params:,}",
            trainable_text(row),
            Text(expect, style=style),
        )
    parts = [table]
    if report.notes:
        parts.append(Text(notes_text(report), style="yellow"))
    if built.built:
        parts.append(Text(terminal_safe(totals_text(built))))
    else:
        parts.append(
            Text(
                "The model is unbuilt: it has no input shape, so output shapes and weights are unknown.\n"
                "  hint: start 'layers' with '- Input: {shape: [...]}', give the first layer 'input_shape', "
                "or pass --input-shape 250,250,3",
                style="yellow",
            )
        )
    if report.adapting:
        parts.append(Text(adapting_text(report.adapting)))
    return Group(*parts)


def adapting_text(adapting: list[dict]) -> str:
    """The layers that learn their state from the data before training: where, what, on how many samples."""
    lines = []
    for layer in adapting:
        samples = f"at most {layer['samples']:,} samples of " if layer["samples"] else ""
        source = f"{samples}{layer['source']}" if layer["source"] else "no training data (see the problem below)"
        where = f"layers[{layer['index']}] {layer['class']}"
        lines.append(f"Adapts before training: {where} learns its {layer['learns']} from {source}")
    return "\n".join(lines)


def _class_text(row) -> str:
    """A pretrained base is one row; its class says how many layers it holds."""
    return row.class_name if row.inner_layers is None else f"{row.class_name} ({row.inner_layers} layers)"


def trainable_text(row) -> str:
    """'yes' / 'no' / 'partly'; with a freeze: section, 'before → after' where freezing changed it."""
    after = "partly" if row.partly_trainable else "yes" if row.trainable else "no"
    if row.trainable_before is None:
        return after
    before = "yes" if row.trainable_before else "no"
    return after if before == after else f"{before} → {after}"


def totals_text(built) -> str:
    total, trainable = built.params, built.trainable_params
    weight_bytes = built.weight_bytes or 0
    if built.freeze is None:
        trainable_lines = f"Trainable params: {trainable:,}\nNon-trainable params: {total - trainable:,}\n"
    else:
        before = built.trainable_params_before
        trainable_lines = (
            f"Trainable params: {before:,} → {trainable:,} after freeze:\n"
            f"Non-trainable params: {total - before:,} → {total - trainable:,} after freeze:\n"
        )
    text = (
        f"Total params: {total:,} ({human_size(weight_bytes)})\n"
        f"{trainable_lines}"
        f"Input shape: {shape_text((None, *built.input_shape))} (from {built.input_source})"
    )
    if built.freeze is not None:
        text += "\n" + "\n".join(built.freeze.lines())
    if built.memory is not None:
        text += "\n" + built.memory.text()
    return text


def notes_text(report) -> str:
    """One ``note:`` line per thing Keras warned of while building the spec's model (with its hint)."""
    return "\n".join(
        f"note: {note.headline()}" + (f"\n  hint: {terminal_safe(note.hint)}" if note.hint else "")
        for note in report.notes
    )


def problems_text(report) -> str:
    lines = (report.source or "").splitlines()
    return "\n".join(format_problem(p, lines) for p in report.problems)


def check_table(reports) -> Table:
    table = Table(title="seq check", title_justify="left")
    table.add_column("Spec", overflow="fold")
    table.add_column("Model", overflow="fold")
    table.add_column("Params", justify="right")
    table.add_column("Output")
    table.add_column("Result")
    for report in reports:
        built = report.built
        params = built.params if built else None
        result = Text("pass", style="green") if report.ok else Text(f"FAIL ({len(report.problems)})", style="bold red")
        table.add_row(
            literal(report.path),
            literal(report.model_name or ""),
            "?" if params is None else f"{params:,}",
            shape_text(built.output_shape) if built and built.output_shape else "?",
            result,
        )
    return table


def check_json(reports) -> str:
    return json.dumps({"specs": [r.as_dict() for r in reports]}, indent=2)


def check_github(reports) -> str:
    """GitHub Actions workflow commands: one ``::error`` annotation per problem."""
    lines = []
    for report in reports:
        for problem in report.problems:
            props = [f"file={_gh_property(shown(problem.file or report.path))}"]
            if problem.line is not None:
                props.append(f"line={problem.line}")
            if problem.column is not None:
                props.append(f"col={problem.column}")
            message = f"{problem.path}: {problem.message}" if problem.path else problem.message
            if problem.hint:
                message += f" ({problem.hint})"
            lines.append(f"::error {','.join(props)}::{_gh_data(terminal_safe(message))}")
    return "\n".join(lines)


def _gh_data(text: str) -> str:
    """A workflow command's message: GitHub reads %, CR and LF there."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """A workflow command's property value (file=...): GitHub also reads : and , there."""
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def check_junit(reports) -> str:
    failures = sum(1 for r in reports if not r.ok)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name="seq check" tests="{len(reports)}" failures="{failures}" errors="0">',
    ]
    for report in reports:
        out.append(f'  <testcase classname="seq.check" name={quoteattr(shown(report.path))}>')
        if not report.ok:
            first = report.problems[0]
            out.append(f"    <failure message={quoteattr(first.headline())}>{escape(problems_text(report))}</failure>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out)


def tune_table(result, limit: int = 5) -> Table:
    """The best complete trials of a study, best first: value, parameters, run directory."""
    from seqcli.tune.folder import StudyFolder
    from seqcli.tune.outputs import ranked

    names = [
        key
        for key in (result.rows[0] if result.rows else {})
        if key not in ("trial", "state", "value", "epochs", "seconds", "run", "note")
    ]
    table = Table(title=literal(f"Best trials ({result.objective}, {result.direction})"), title_justify="left")
    table.add_column("Trial", justify="right")
    table.add_column(literal(result.objective), justify="right")
    for name in names:
        table.add_column(literal(name), overflow="fold")
    table.add_column("Run", overflow="fold")
    for row in ranked(result.rows, result.direction)[:limit]:
        table.add_row(
            str(row["trial"]),
            f"{row['value']:.6g}",
            *[literal(_param_text(row[name])) for name in names],
            literal(StudyFolder(result.output).trial(row["run"]).path),
        )
    return table


def _param_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
