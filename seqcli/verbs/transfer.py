"""``seq transfer``: the guide's two transfer-learning blueprints, end to end.

1. A spec without a pretrained base: load pretrained weights into the whole model (``--weights`` or
   ``transfer.weights``), freeze every layer but the last (``for layer in model.layers[:-1]:
   layer.trainable = False``), train: only the last layer moves.
2. A spec that stacks a pretrained base (an application or ``Model: {path: ...}``) and a new head:
   phase one trains the head with the base frozen; an optional phase two (``transfer.fine_tune`` or
   ``--fine-tune-layers N``) unfreezes the top N layers of the base and fine-tunes the model at a low
   learning rate. BatchNormalization layers stay frozen, in inference mode, unless asked otherwise.

A spec's own ``freeze:`` section, when it has one, replaces phase one's default freeze. Each phase is
an ordinary ``seq train`` run, in ``OUTPUT/phase1`` and ``OUTPUT/phase2``, set up with spec overrides
(``transfer.weights``, ``freeze``, ``train.epochs``, ``compile.optimizer``) that its ``spec.yaml``
records; each resumes like training. Phase two starts from phase one's ``model.keras``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from seqcli import applications
from seqcli.errors import SeqError, did_you_mean
from seqcli.files import resolve_path
from seqcli.manifest import record_members, writing
from seqcli.models import check_weights_file
from seqcli.outputs import claim_output
from seqcli.trainable import apply_freeze, is_batchnorm, walk_layers
from seqcli.training import Reporter, RunDirectory, TrainOptions, TrainResult, train_spec

DEFAULT_FINE_TUNE_LR = 1e-5


class TransferError(SeqError):
    """A transfer request that does not fit the spec: no pretrained weights, no base to fine-tune..."""


@dataclass
class TransferOptions:
    """What ``seq transfer`` was asked to do; None means 'as the spec's transfer: section says'."""

    spec: str
    _: KW_ONLY
    output: str
    weights: str | None = None
    epochs: int | None = None
    fine_tune_layers: int | None = None
    fine_tune_epochs: int | None = None
    fine_tune_lr: float | None = None
    overrides: list[str] = field(default_factory=list)
    resume: bool = False
    overwrite: bool = False


@dataclass
class Phase:
    number: int
    title: str
    output: Path
    overrides: list[str]
    freeze_lines: list[str] = field(default_factory=list)


@dataclass
class TransferPlan:
    blueprint: int  # 1: the whole model pretrained, all but the last layer frozen; 2: a pretrained base + head
    base: str | None
    phases: list[Phase]


@dataclass
class TransferResult:
    plan: TransferPlan
    results: list[TrainResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The blueprint and each phase's final metrics, for ``seq transfer --format json``."""
        return {
            "blueprint": self.plan.blueprint,
            "base": self.plan.base,
            "phases": [
                {"phase": phase.number, "title": phase.title, **result.as_dict()}
                for phase, result in zip(self.plan.phases, self.results)
            ],
        }


# ----------------------------------------------------------------------------- planning


def plan_transfer(options: TransferOptions) -> TransferPlan:
    """Check the request against the spec (built abstractly, its compile section resolved) and set out the
    phases and their overrides."""
    from seqcli.compile import resolve_compile
    from seqcli.compile_checks import probe_optimizer
    from seqcli.modelbuild import build_model
    from seqcli.specfile import load_spec

    spec = load_spec(options.spec, options.overrides)
    built = build_model(spec, abstract=True)
    problems = list(built.problems) + (resolve_compile(spec)[1] or probe_optimizer(spec))
    if problems:
        raise spec.error(problems)
    section = spec.transfer
    base = _base_name(spec, built)
    weights = options.weights or (section.weights if section else None)
    if weights is not None and options.weights is None:
        weights = str(resolve_path(weights, spec.base_dir))
    if weights is not None:
        check_weights_file(weights)
    if base is None and weights is None:
        raise TransferError(
            "this spec has no pretrained base, so transfer needs the whole model's pretrained weights",
            hint="pass --weights FILE (a .weights.h5 or .keras from a model built from this spec), "
            "or stack a pretrained base such as '- MobileNetV2: {weights: imagenet, "
            "include_top: false, pooling: avg}'",
        )
    output = Path(options.output)
    unfrozen = build_model(load_spec(options.spec, [*options.overrides, "freeze=null"]), abstract=True).model
    phases = [_phase_one(spec, unfrozen, base, weights, options, RunDirectory(output).phase(1).path)]
    fine_tune = section.fine_tune if section else None
    layers = (
        options.fine_tune_layers if options.fine_tune_layers is not None else (fine_tune.layers if fine_tune else None)
    )
    if layers:
        phases.append(_phase_two(spec, unfrozen, base, layers, fine_tune, options, output))
    return TransferPlan(blueprint=2 if base else 1, base=base, phases=phases)


def _base_name(spec, built) -> str | None:
    bases = [row.name for row in built.rows if applications.is_base(row.class_name)]
    chosen = spec.transfer.base if spec.transfer else None
    if chosen is not None:
        names = [row.name for row in built.rows]
        if chosen not in names:
            raise spec.error(
                [
                    spec.problem(
                        ("transfer", "base"),
                        f"{chosen!r} is not a layer of the model",
                        did_you_mean(chosen, names) or f"layers: {', '.join(names)}",
                    )
                ]
            )
        return chosen
    if len(bases) > 1:
        raise spec.error(
            [
                spec.problem(
                    ("layers",),
                    f"the model stacks {len(bases)} pretrained bases",
                    f"name the one to fine-tune with transfer.base (one of {', '.join(bases)})",
                )
            ]
        )
    return bases[0] if bases else None


def _phase_one(spec, model, base, weights, options: TransferOptions, output: Path) -> Phase:
    overrides = list(options.overrides)
    if weights is not None:
        overrides.append(f"transfer.weights={json.dumps(str(Path(weights).resolve()))}")
    if spec.freeze is None:
        freeze = {"layers": [base]} if base else {"all_but_last": 1}
        overrides += [f"freeze.{key}={json.dumps(value)}" for key, value in freeze.items()]
    else:
        freeze = spec.freeze.model_dump()
    epochs = options.epochs or (spec.transfer.epochs if spec.transfer else None)
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    title = "train the head, the base frozen" if base else "train the last layer, the rest frozen"
    return Phase(1, title, output, overrides, _freeze_lines(model, freeze))


def _phase_two(spec, model, base, layers: int, fine_tune, options: TransferOptions, output: Path) -> Phase:
    if base is None:
        raise TransferError(
            "fine-tuning unfreezes the top layers of a pretrained base, and this spec has none",
            hint="drop --fine-tune-layers / transfer.fine_tune, or stack a pretrained base",
        )
    inner = [layer for layer in model.get_layer(base).layers if type(layer).__name__ != "InputLayer"]
    if layers > len(inner):
        raise TransferError(
            f"cannot unfreeze the top {layers} layers of {base}: it has {len(inner)}",
            hint=f"give --fine-tune-layers between 1 and {len(inner)}",
        )
    keep_batchnorm = (fine_tune.batchnorm if fine_tune else "frozen") == "frozen"
    top = [layer for layer in inner[len(inner) - layers :] if not (keep_batchnorm and is_batchnorm(layer))]
    freeze = {"all_but_last": None, "layers": [base], "unfreeze": [f"{base}/{layer.name}" for layer in top]}
    learning_rate = options.fine_tune_lr or (fine_tune.learning_rate if fine_tune else DEFAULT_FINE_TUNE_LR)
    epochs = options.fine_tune_epochs or (fine_tune.epochs if fine_tune else 1)
    overrides = [
        *options.overrides,
        f"transfer.weights={json.dumps(str(RunDirectory(output).phase(1).model.resolve()))}",
        *(f"freeze.{key}={json.dumps(value)}" for key, value in freeze.items()),
        f"compile.optimizer={json.dumps(fine_tune_optimizer(spec, learning_rate))}",
        "train.learning_rate_schedule=null",
        f"train.epochs={epochs}",
    ]
    title = f"fine-tune the top {layers} layers of {base} at learning rate {learning_rate:g}"
    lines = _freeze_lines(model, freeze)
    if keep_batchnorm and len(top) < layers:
        lines.append(f"{layers - len(top)} BatchNormalization layers among them stay frozen, in inference mode")
    return Phase(2, title, RunDirectory(output).phase(2).path, overrides, lines)


def fine_tune_optimizer(spec, learning_rate: float) -> dict:
    """The spec's optimizer (resolved without problems) as a {Class: {arguments}} mapping, with
    ``learning_rate`` replaced."""
    from seqcli.compile import optimizer_class_name

    optimizer = spec.compile.optimizer
    if isinstance(optimizer, str):
        return {optimizer_class_name(optimizer): {"learning_rate": learning_rate}}
    ((name, args),) = optimizer.items()
    return {name: {**(args or {}), "learning_rate": learning_rate}}


def _freeze_lines(model, freeze: dict) -> list[str]:
    """What a phase's freeze does, worked out on the abstract model (then undone)."""
    states = [(layer, layer.trainable) for layer in [model, *(layer for _, layer in walk_layers(model.layers))]]
    report = apply_freeze(model, freeze, strict=False)
    for layer, trainable in states:
        layer.trainable = trainable
    return report.lines()


# ----------------------------------------------------------------------------- running


def run_transfer(
    options: TransferOptions,
    *,
    reporter_for: Callable[[Phase], Reporter] | None = None,
    plan: TransferPlan | None = None,
) -> TransferResult:
    """Train each phase of the plan in turn with seq train's machinery; a finished phase is not run again
    on resume, an interrupted one continues from its checkpoint."""
    plan = plan or plan_transfer(options)
    output = Path(options.output)
    inputs = [options.spec, *([options.weights] if options.weights else [])]
    rule = {"overwrite": options.overwrite, "own_ok": True, "resume": options.resume}
    with claim_output(output, "seq transfer", folder=True, inputs=inputs, **rule):
        RunDirectory(output).create()
        with writing(output, "seq transfer", [f"{phase.output.name}/" for phase in plan.phases]):
            return _run_phases(options, plan, reporter_for)


def _run_phases(options: TransferOptions, plan: TransferPlan, reporter_for) -> TransferResult:
    result = TransferResult(plan)
    for phase in plan.phases:
        resume = options.resume and (phase.number == 1 or RunDirectory(phase.output).checkpoint.exists())
        phase_options = TrainOptions(
            spec=options.spec,
            output=str(phase.output),
            overrides=phase.overrides,
            resume=resume,
            overwrite=options.overwrite,
        )
        reporter = reporter_for(phase) if reporter_for else None
        result.results.append(train_spec(phase_options, reporter))
    write_transfer_run(Path(options.output), plan)
    return result


def write_transfer_run(output: Path, plan: TransferPlan) -> None:
    """The transfer folder as a run every command reads (export, evaluate, predict, plot): the last phase's
    model, spec and metrics, one history of all the phases (epochs numbered on, a ``phase`` column) and its
    curves with each phase's start marked. metrics.json lists the phases and their first epochs."""
    import shutil

    from seqcli.files import atomic_path, write_text_atomic
    from seqcli.training.results import plot_curves

    run, last = RunDirectory(output), RunDirectory(plan.phases[-1].output)
    record_members(output, list(RunDirectory.FILE_NAMES), "seq transfer")
    rows, firsts = _joined_history(plan)
    write_text_atomic(run.history, _history_csv(rows))
    for source, target in ((last.model, run.model), (last.spec, run.spec)):
        with atomic_path(target, suffix=target.suffix) as temporary:
            shutil.copyfile(source, temporary)
    metrics = last.read_metrics()
    if metrics.get("best_epoch") is not None:
        metrics["best_epoch"] += firsts[-1] - 1
    metrics["phases"] = [
        {"phase": phase.number, "title": phase.title, "folder": phase.output.name, "first_epoch": first}
        for phase, first in zip(plan.phases, firsts)
    ]
    write_text_atomic(run.metrics, json.dumps(metrics, indent=2) + "\n")
    numeric = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows]
    plot_curves(run.curves, numeric, metrics.get("model") or output.name, metrics.get("best_epoch"), firsts[1:])


def _joined_history(plan: TransferPlan) -> tuple[list[dict], list[int]]:
    """Every phase's history.csv rows in order, epochs numbered on across phases; the first epoch of each."""
    rows: list[dict] = []
    firsts = []
    for phase in plan.phases:
        firsts.append(len(rows) + 1)
        for row in RunDirectory(phase.output).read_history():
            rows.append({**row, "epoch": len(rows) + 1, "phase": phase.number})
    return rows, firsts


def _history_csv(rows: list[dict]) -> str:
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
