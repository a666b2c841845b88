"""A study's results: ``trials.csv``, ``study.json`` (its objective, direction and budget), ``trials.png`` (the
objective over trials) and ``best.yaml`` (the spec with the best values in place, as its trial trained it:
``seq train best.yaml`` repeats that trial). :func:`read_study_folder` reads a study folder back for
``seq plot``."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from seqcli.display import figure_text
from seqcli.errors import SeqError
from seqcli.files import atomic_path, write_text_atomic
from seqcli.records import INTEGER, NUMBER, TEXT, Column, RecordError, read_csv, read_json
from seqcli.specfile.dump import dump_spec
from seqcli.specfile.yamlload import read_spec_file

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


@dataclass
class TuneResult:
    output: Path
    objective: str
    direction: str
    total: int
    rows: list[dict] = field(default_factory=list)
    best: dict | None = None
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The study's outcome for ``seq tune --format json``: every trial's row, the best one, the files."""
        return {
            "output": str(self.output),
            "objective": self.objective,
            "direction": self.direction,
            "total": self.total,
            "best": self.best,
            "trials": self.rows,
            "files": [str(f) for f in self.files],
        }


class StudyFolderError(SeqError):
    """A folder that does not hold a study ``seq tune`` wrote."""


def trial_rows(study, parameters) -> list[dict]:
    """One row per trial in number order; trials that stepped back from a full budget are left out."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = []
    for trial in trials:
        state = STATES.get(trial.state.name, trial.state.name.lower())
        note = trial.user_attrs.get("error")
        if trial.number in retried:
            state, note = "retried", f"cut off; trained again as trial {retried[trial.number]}"
        steps = trial.intermediate_values
        value = trial.value if trial.value is not None else (steps[max(steps)] if steps else None)
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if (trial.datetime_complete and trial.datetime_start)
            else None
        )
        rows.append(
            {
                "trial": trial.number,
                "state": state,
                "value": value,
                **{p.name: trial.params.get(p.name) for p in parameters},
                "epochs": max(steps) if steps else None,
                "seconds": round(seconds, 2) if seconds else None,
                "run": trial.user_attrs.get("run"),
                "note": note or "",
            }
        )
    return rows


def ranked(rows: list[dict], direction: str) -> list[dict]:
    """Complete trials, best first (the earlier trial first among equal values)."""
    complete = [row for row in rows if row["state"] == "complete"]
    return sorted(complete, key=lambda row: row["value"], reverse=direction == "maximize")


def best_row(rows: list[dict], direction: str) -> dict | None:
    best = ranked(rows, direction)
    return best[0] if best else None


def write_outputs(plan, study):
    rows = trial_rows(study, plan.parameters)
    output = plan.output
    result = TuneResult(
        output=output,
        objective=plan.objective,
        direction=plan.direction,
        total=plan.total,
        rows=rows,
        best=best_row(rows, plan.direction),
    )
    write_trials_csv(output / "trials.csv", rows)
    result.files.append(output / "trials.csv")
    write_text_atomic(
        output / "study.json",
        json.dumps({"objective": plan.objective, "direction": plan.direction, "total": plan.total}, indent=1) + "\n",
    )
    result.files.append(output / "study.json")
    plot_trials(output / "trials.png", rows, plan.objective, plan.direction)
    result.files.append(output / "trials.png")
    if result.best is not None and (output / result.best["run"] / "spec.yaml").exists():
        write_best_spec(output / "best.yaml", output / result.best["run"] / "spec.yaml", result.best, plan)
        result.files.append(output / "best.yaml")
    return result


def write_trials_csv(target: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(target, buffer.getvalue())


def write_best_spec(target: Path, trained_spec: Path, best: dict, plan) -> None:
    """The best trial's own spec.yaml (its values, epochs and seed in place, paths absolute), less ``tune``."""
    data = read_spec_file(trained_spec).data
    data.pop("tune", None)
    values = ", ".join(f"{p.name}={best[p.name]!r}" for p in plan.parameters)
    header = (
        f"# The best of seq tune's study of {plan.spec_path}: trial {best['trial']} "
        f"({plan.objective} {best['value']!r}).\n# Values: {values}\n"
        "# `seq train` on this file repeats that trial (same values, epochs and seed), given --allow-path\n"
        "# for the folders of the files it names (specs read their own folder only).\n"
    )
    write_text_atomic(target, header + dump_spec(data))


def plot_trials(target: Path, rows: list[dict], objective: str, direction: str) -> None:
    """Each trial's objective (pruned trials at their last reported value) and the best so far, as PNG or
    SVG (from ``target``'s suffix), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
        shown = [row for row in rows if row["state"] == state and row["value"] is not None]
        axes.scatter([r["trial"] for r in shown], [r["value"] for r in shown], marker=marker, color=color, label=state)
    line = best_so_far(rows, direction)
    if line:
        axes.step([t for t, _ in line], [v for _, v in line], where="post", color="tab:green", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(figure_text(objective))
    axes.set_title(figure_text(f"{objective} over trials ({direction})"))
    axes.grid(alpha=0.3)
    axes.legend()
    suffix = target.suffix.lower() or ".png"
    # SVG text stays text (searchable, selectable) instead of glyph outlines.
    with atomic_path(target, suffix=suffix) as temporary, matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(temporary, format=suffix[1:], dpi=100)


def best_so_far(rows: list[dict], direction: str) -> list[tuple[int, float]]:
    """``(trial, best value up to it)`` at each complete trial, in trial order."""
    best: float | None = None
    line: list[tuple[int, float]] = []
    for row in sorted(
        (r for r in rows if r["state"] == "complete" and r["value"] is not None), key=lambda r: r["trial"]
    ):
        if best is None or (row["value"] < best if direction == "minimize" else row["value"] > best):
            best = row["value"]
        line.append((row["trial"], best))
    return line


REWRITE_HINT = "rerun the study with --resume to write its results again"


# trials.csv's typed columns (a tuned parameter's column holds text: its values may be of any type).
TRIALS_COLUMNS = {
    "trial": Column(INTEGER.parse, INTEGER.kind, required=True),
    "state": Column(TEXT.parse, TEXT.kind, required=True),
    "value": NUMBER,
    "epochs": INTEGER,
    "seconds": NUMBER,
}


def read_study_folder(folder: Path) -> tuple[list[dict], str, str]:
    """A study folder's trials (``trial`` an int, ``value`` a float or None), objective and direction, from its
    trials.csv and study.json."""
    trials, description = folder / "trials.csv", folder / "study.json"
    if not trials.is_file() or not description.is_file():
        missing = "trials.csv" if not trials.is_file() else "study.json"
        raise StudyFolderError(
            f"{folder} is not a study folder: it has no {missing}",
            hint="give the --output folder of 'seq tune' (rerun the study with --resume to write its results again)",
        )
    try:
        study = read_json(description, "a study.json as seq tune writes it")
        rows = read_csv(trials, "a trials.csv as seq tune writes it", TRIALS_COLUMNS)
    except RecordError as error:
        raise StudyFolderError(error.message, hint=REWRITE_HINT) from error
    objective = study.get("objective") if isinstance(study, dict) else None
    direction = study.get("direction") if isinstance(study, dict) else None
    if not isinstance(objective, str) or len(objective) > 256 or direction not in ("minimize", "maximize"):
        raise StudyFolderError(
            f"{description} is not a study.json as seq tune writes it: it needs an 'objective' (a metric's name) and a "
            "'direction' (minimize or maximize)",
            hint=REWRITE_HINT,
        )
    return rows, objective, direction
