"""A study's results, written into its :class:`seqcli.tune.folder.StudyFolder`: ``trials.csv``, ``study.json``
(its objective, direction and budget), ``trials.png`` (the objective over trials) and ``best.yaml`` (the spec
with the best values in place, as its trial trained it: ``seq train best.yaml`` repeats that trial)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from seqcli.display import figure_text
from seqcli.files import atomic_path, write_text_atomic
from seqcli.specfile.dump import dump_spec
from seqcli.specfile.yamlload import read_spec_file
from seqcli.tune.folder import StudyFolder

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
    folder = StudyFolder(output)
    write_trials_csv(folder.trials, rows)
    result.files.append(folder.trials)
    write_text_atomic(
        folder.description,
        json.dumps({"objective": plan.objective, "direction": plan.direction, "total": plan.total}, indent=1) + "\n",
    )
    result.files.append(folder.description)
    plot_trials(folder.plot, rows, plan.objective, plan.direction)
    result.files.append(folder.plot)
    best_run = folder.trial(result.best["run"]) if result.best is not None else None
    if best_run is not None and best_run.spec.exists():
        write_best_spec(folder.best, best_run.spec, result.best, plan)
        result.files.append(folder.best)
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
    best, line = None, []
    for row in sorted(
        (r for r in rows if r["state"] == "complete" and r["value"] is not None), key=lambda r: r["trial"]
    ):
        better = best is None or (row["value"] < best if direction == "minimize" else row["value"] > best)
        best = row["value"] if better else best
        line.append((row["trial"], best))
    return line
