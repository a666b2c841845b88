"""A spec's ``tune:`` search space: parameters keyed by ``--set`` paths, checked before the first trial.

Every path must exist in the spec (or name an argument the spec may add), every range must give the
type the spec's value has, and the spec must validate and build (abstractly, as ``seq check`` does)
at each choice and at each bound; problems point at the ``tune:`` entry that causes them. No Optuna
here unless it is installed (its samplers' and pruners' arguments are checked when it is).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from seqcli.errors import Problem, SpecError, did_you_mean
from seqcli.specfile import Spec, format_path, spec_from_document
from seqcli.specfile.overrides import parse_override_path
from seqcli.specfile.sections import SECTIONS, TuneSection
from seqcli.specfile.yamlload import PathKey

GRID_LIMIT = 1000  # the most values an int range may give a grid search
BOUND_NAMES = ("low", "high")


@dataclass(frozen=True)
class Parameter:
    """One searched value: the key as written, its parsed path, the range kind and its values."""

    name: str
    path: PathKey
    kind: str  # choice | uniform | loguniform | int
    values: tuple  # the choices, or (low, high)

    @property
    def where(self) -> PathKey:
        return ("tune", "parameters", self.name)

    def points(self) -> list[tuple[int, Any]]:
        """The values to check the spec at: every choice, both bounds."""
        return list(enumerate(self.values))

    def point_name(self, index: int) -> str:
        return (
            f"choice {self.values[index]!r}"
            if self.kind == "choice"
            else f"{BOUND_NAMES[index]} bound {self.values[index]!r}"
        )

    def override(self, value: Any) -> str:
        """``--set`` text for ``value`` (JSON is YAML 1.2, so 1e-05 stays a float)."""
        return f"{self.name}={json.dumps(value)}"

    def grid_values(self) -> list | None:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(self.values[0], self.values[1] + 1))
        return None

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        low, high = (self.values + (None, None))[:2]
        if self.kind == "choice":
            return CategoricalDistribution(list(self.values))
        if self.kind == "int":
            return IntDistribution(low, high)
        return FloatDistribution(float(low), float(high), log=self.kind == "loguniform")


def tune_section(spec: Spec) -> TuneSection:
    """The spec's tune: section, for the steps of a search (seq tune refuses a spec without one first)."""
    assert spec.tune is not None, "seq tune refuses a spec without a tune: section before it searches"
    return spec.tune


def search_grid(parameters: list[Parameter]) -> dict[str, list]:
    """Each parameter's values for a grid search (check_tune refuses a grid over a float range)."""
    grid = {}
    for parameter in parameters:
        values = parameter.grid_values()
        assert values is not None, "check_tune refuses a grid over a float range"
        grid[parameter.name] = values
    return grid


def parameters_of(section: TuneSection) -> list[Parameter]:
    """The section's parameters in the order written; keys that are not paths are left to :func:`check_tune`."""
    parameters = []
    for name, model in section.parameters.items():
        try:
            path = parse_override_path(name)
        except ValueError:
            continue
        (kind,) = model.model_dump(by_alias=True)
        parameters.append(Parameter(name, path, kind, tuple(model.model_dump(by_alias=True)[kind])))
    return parameters


def direction_of(spec: Spec) -> str:
    """``minimize`` or ``maximize``: as set, else the way the objective's compiled metric goes in Keras (as
    EarlyStopping's ``mode: auto`` reads it); where Keras cannot tell, minimize names ending in 'loss' and
    maximize the others."""
    from seqcli.directions import metric_direction

    section = tune_section(spec)
    if section.direction != "auto":
        return section.direction
    direction = metric_direction(spec, section.objective)
    if direction is not None:
        return "maximize" if direction == "up" else "minimize"
    return "minimize" if section.objective.endswith("loss") else "maximize"


def epochs_of(spec: Spec) -> int:
    return tune_section(spec).epochs or spec.train.epochs


def seed_of(spec: Spec) -> int:
    """The seed every trial trains with and the sampler starts from: tune.seed, else train.seed, else 0."""
    seed = tune_section(spec).seed
    if seed is not None:
        return seed
    return spec.train.seed if spec.train.seed is not None else 0


def named(section: Any) -> tuple[str, dict]:
    """``tpe`` or ``{tpe: {...}}`` -> ("tpe", {...})."""
    if isinstance(section, str):
        return section, {}
    ((name, arguments),) = section.items()
    return name, dict(arguments or {})


# ----------------------------------------------------------------------------- checks


def check_tune(spec: Spec, *, base_ok: bool = True) -> list[Problem]:
    """Every problem of the spec's ``tune:`` section, positioned in the file. ``base_ok``: the spec itself
    validates and builds, so each choice and bound is built too (otherwise its own problems come first)."""
    section = spec.tune
    if section is None:
        return []
    problems = _key_problems(spec, section) + _objective_problems(spec, section)
    sound = []
    for parameter in parameters_of(section):
        found = _range_problems(spec, parameter) or _path_problems(spec, parameter) or _type_problems(spec, parameter)
        problems += found
        if not found:
            sound.append(parameter)
    problems += _engine_problems(spec, section, parameters_of(section))
    if base_ok:
        for parameter in sound:
            problems += _point_problems(spec, parameter)
    return problems


def _key_problems(spec: Spec, section: TuneSection) -> list[Problem]:
    problems = []
    for name in section.parameters:
        try:
            parse_override_path(name)
        except ValueError as error:
            problems.append(
                spec.problem(
                    ("tune", "parameters", name),
                    f"{name!r} is not a spec path: {error}",
                    "write paths as --set takes them, e.g. layers[1].Dense.units",
                    key=True,
                )
            )
    return problems


def _objective_problems(spec: Spec, section: TuneSection) -> list[Problem]:
    from seqcli.compile import CompileSettings, metric_log_name

    metrics = spec.compile.metrics if spec.compile else []
    validation = spec.data is not None and spec.data.validation is not None
    names = CompileSettings(None, None, metric_names=[metric_log_name(m) for m in metrics]).log_names(validation)
    if section.objective in names:
        return []
    hint = did_you_mean(section.objective, names) or f"training logs: {', '.join(names)}"
    if section.objective.startswith("val_") and not validation:
        hint = "there is no validation data: set data.validation (e.g. 0.2), or tune a training metric"
    return [spec.problem(("tune", "objective"), f"training logs no {section.objective!r}", hint)]


def _range_problems(spec: Spec, parameter: Parameter) -> list[Problem]:
    if parameter.kind == "choice":
        return []
    low, high = parameter.values
    where = parameter.where + (parameter.kind,)
    if parameter.kind == "loguniform" and low <= 0:
        return [
            spec.problem(
                where + (0,),
                f"a loguniform range needs low > 0; received {low!r}",
                "use a small positive bound such as 1e-5, or a uniform range",
            )
        ]
    if low >= high:
        return [
            spec.problem(
                where,
                f"low must be below high; received [{low!r}, {high!r}]",
                f"write [{high!r}, {low!r}]" if low > high else "use {choice: [value]} for one value",
            )
        ]
    return []


def _path_problems(spec: Spec, parameter: Parameter) -> list[Problem]:
    """The path exists in the spec, or is an argument the spec may add (a layer's, a section's field)."""
    path, target = parameter.path, spec.document.data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if target is None and depth == 3 and path[0] == "layers":
            target = {}  # a layer written without arguments: '- Flatten:'
        if isinstance(target, list):
            if not isinstance(part, int) or not 0 <= part < len(target):
                return [
                    _no_path(
                        spec,
                        parameter,
                        depth,
                        f"{format_path(path[:depth])} has {len(target)} entries",
                        f"indices go from 0 to {len(target) - 1}" if target else None,
                    )
                ]
        elif isinstance(target, dict):
            if part not in target:
                if _may_add(path) and (last or (depth == 0 and path[0] in SECTIONS)):
                    return []  # an argument or field the spec leaves at its default, or a section it leaves out
                hint = did_you_mean(str(part), [str(k) for k in target]) or (
                    f"it has: {', '.join(map(str, target))}" if target else None
                )
                return [
                    _no_path(spec, parameter, depth, f"{format_path(path[:depth]) or 'the spec'} has no {part!r}", hint)
                ]
        else:
            return [
                spec.problem(
                    parameter.where,
                    f"{parameter.name}: {format_path(path[:depth])} is {target!r}, not a mapping or list",
                    "point at a value inside the spec, written out in full "
                    "(e.g. optimizer: {Adam: {learning_rate: 0.001}})",
                    key=True,
                )
            ]
        target = target[part]
    return []


def _may_add(path: PathKey) -> bool:
    """Paths the spec may leave out: a layer's argument (Keras checks the name) or a section's field."""
    if path[0] == "layers":
        return len(path) == 4 and isinstance(path[1], int) and isinstance(path[3], str)
    model = SECTIONS.get(path[0]) if isinstance(path[0], str) else None
    return model is not None and len(path) == 2 and path[1] in model.model_fields


def _no_path(spec: Spec, parameter: Parameter, depth: int, detail: str, hint: str | None) -> Problem:
    return spec.problem(parameter.where, f"no such value in the spec: {detail}", hint, key=True)


_TYPE_WORDS = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_ACCEPTS = {bool: (bool,), int: (int,), float: (float, int), str: (str,)}


def _type_problems(spec: Spec, parameter: Parameter) -> list[Problem]:
    """A range gives the type of the value the spec has there (any number where the spec has a float)."""
    current = _value_at(spec.document.data, parameter.path)
    expected = type(current) if type(current) in _ACCEPTS else None
    if expected is None:
        return []
    word = f"{parameter.name} is {_TYPE_WORDS[expected]} in the spec ({current!r})"
    where = parameter.where + (parameter.kind,)
    if parameter.kind in ("uniform", "loguniform") and expected is not float:
        hint = "use {int: [low, high]} or {choice: [...]}" if expected is int else "use {choice: [...]}"
        return [spec.problem(where, f"{word}; a {parameter.kind} range gives floats", hint)]
    if parameter.kind == "int" and expected not in (int, float):
        return [spec.problem(where, f"{word}; an int range gives integers", "use {choice: [...]}")]
    problems = []
    if parameter.kind == "choice":
        for index, value in enumerate(parameter.values):
            if value is not None and type(value) not in _ACCEPTS[expected]:
                problems.append(
                    spec.problem(
                        where + (index,),
                        f"{word}; choice {value!r} is {_TYPE_WORDS.get(type(value), type(value).__name__)}",
                        f"give {_TYPE_WORDS[expected]} like {current!r}",
                    )
                )
    return problems


def _value_at(data: Any, path: PathKey) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _engine_problems(spec: Spec, section: TuneSection, parameters: list[Parameter]) -> list[Problem]:
    """The grid needs discrete values; samplers' and pruners' arguments are Optuna's (checked when installed)."""
    problems = []
    sampler, _ = named(section.sampler)
    if sampler == "grid":
        for parameter in parameters:
            values = parameter.grid_values()
            if values is None or len(values) > GRID_LIMIT:
                detail = f"a {parameter.kind} range" if values is None else f"{len(values):,} values"
                problems.append(
                    spec.problem(
                        ("tune", "sampler"),
                        f"a grid search needs few discrete values; {parameter.name} has {detail}",
                        "use {choice: [...]} or a small {int: [low, high]}, or sampler: tpe",
                    )
                )
    try:
        import optuna  # noqa: F401  (seq check without the tune extra checks all but Optuna's arguments)
    except ImportError:
        return problems
    for key, make in (
        ("sampler", lambda: make_sampler(section, parameters, seed=0)),
        ("pruner", lambda: make_pruner(section, epochs=epochs_of(spec))),
    ):
        if key == "sampler" and problems:
            continue
        try:
            make()
        except (TypeError, ValueError) as error:
            name, arguments = named(getattr(section, key))
            problems.append(
                spec.problem(
                    ("tune", key),
                    f"Optuna rejected the {name} {key}'s arguments: {error}. Received: {arguments}",
                    f"see Optuna's documentation of this {key} for its arguments",
                )
            )
    return problems


def _point_problems(spec: Spec, parameter: Parameter) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for index, value in parameter.points():
        where = parameter.where + (parameter.kind, index)
        for found in spec_problems_with(spec, parameter.path, value):
            problem = spec.problem(
                where, f"at {parameter.point_name(index)}, {found.path or 'the spec'}: {found.message}", found.hint
            )
            problems.setdefault(problem.message, problem)
    return list(problems.values())


def spec_problems_with(spec: Spec, path: PathKey, value: Any) -> list[Problem]:
    """The problems of ``spec`` with ``value`` at ``path``: validation, then an abstract build (and the
    compile section's names and arguments when the value is in compile or train)."""
    from seqcli.modelbuild import build_model

    document = spec.document
    changed = dataclasses.replace(document, data=copy.deepcopy(document.data), overridden=dict(document.overridden))
    _assign(changed.data, path, value)
    try:
        trial = spec_from_document(changed)
    except SpecError as error:
        return error.problems
    if trial.problems:
        return trial.problems
    problems = build_model(trial, abstract=True).problems
    if not problems and path[0] in ("compile", "train") and trial.compile is not None:
        from seqcli.compile import resolve_compile
        from seqcli.compile_checks import probe_optimizer

        problems = resolve_compile(trial)[1] or probe_optimizer(trial)
    return problems


def _assign(data: Any, path: PathKey, value: Any) -> None:
    for part in path[:-1]:
        child = data[part] if isinstance(data, list) or part in data else None
        if child is None:
            child = data[part] = {}
        data = child
    data[path[-1]] = value


def make_sampler(section, parameters: list[Parameter], *, seed: int):
    import optuna

    name, arguments = named(section.sampler)
    arguments.setdefault("seed", seed)
    if name == "grid":
        return _ask_tell_grid(optuna)(search_grid(parameters), **arguments)
    if name == "random":
        return optuna.samplers.RandomSampler(**arguments)
    return optuna.samplers.TPESampler(**arguments)


def _ask_tell_grid(optuna):
    """Optuna's GridSampler without its stop. Its ``after_trial`` calls ``study.stop()`` once the grid is used
    up, which raises outside ``study.optimize``; seq asks and tells trials itself and never asks for more trials
    than the grid holds (the runner caps the total at the grid's size)."""

    grid_sampler: Any = optuna.samplers.GridSampler  # Optuna is imported lazily: its classes are values here

    class AskTellGridSampler(grid_sampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return AskTellGridSampler


def make_pruner(section, *, epochs: int):
    import optuna

    name, arguments = named(section.pruner)
    if name == "none":
        return optuna.pruners.NopPruner(**arguments)
    if name == "hyperband":
        arguments.setdefault("min_resource", 1)
        arguments.setdefault("max_resource", epochs)
        return optuna.pruners.HyperbandPruner(**arguments)
    return optuna.pruners.MedianPruner(**arguments)
