"""Read, validate and abstractly build specs: what ``seq summary`` and ``seq check`` report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seqcli.compile_checks import compile_problems
from seqcli.errors import MissingDependency, Problem, SpecError, clean_message
from seqcli.modelbuild import BuiltModel, build_model
from seqcli.modelbuild.adapt import adapting_layers, adapting_problems
from seqcli.shapes import shape_text
from seqcli.specfile import Spec, read_spec
from seqcli.specfile.paths import file_fields


@dataclass
class Report:
    """Everything known about one spec after validating and building it without weights."""

    path: str
    spec: Spec | None = None
    built: BuiltModel | None = None
    problems: list[Problem] = field(default_factory=list)
    source: str | None = None
    cause: Exception | None = None  # what stopped the reading or the build, for SEQ_DEBUG's traceback

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def model_name(self) -> str | None:
        if self.built is not None and self.built.model is not None:
            return self.built.model.name
        return self.spec.name if self.spec else None

    @property
    def adapting(self) -> list[dict]:
        """The layers that will learn their state from the training data before training, and from where."""
        if self.spec is None:
            return []
        samples = self.spec.data.adapt.samples if self.spec.data is not None else None
        has_train = self.spec.data is not None and self.spec.data.train is not None
        source = "data.train" if has_train else None
        return [plan.as_dict(source, samples) for plan in adapting_layers(self.spec)]

    def as_dict(self) -> dict:
        built = self.built
        return {
            "path": self.path,
            "ok": self.ok,
            "model": self.model_name,
            "params": built.params if built else None,
            "trainable_params": built.trainable_params if built else None,
            "output_shape": list(built.output_shape) if built and built.output_shape else None,
            "memory": built.memory.as_dict() if built and built.memory is not None else None,
            "layers": [row.as_dict() for row in built.rows] if built else [],
            **({"freeze": built.freeze.as_dict()} if built and built.freeze is not None else {}),
            "adapt": self.adapting,
            "problems": [p.as_dict() for p in self.problems],
            "notes": [note.as_dict() for note in self.notes],
        }

    @property
    def notes(self) -> list[Problem]:
        """What Keras warned of while building (a deprecated argument...), at the entries concerned."""
        return self.built.notes if self.built is not None else []

    def error(self) -> SpecError:
        error = SpecError(self.problems, self.source)
        error.__cause__ = self.cause
        return error


def _reading_order(problem: Problem) -> tuple:
    """Problems without a line (command-line overrides, the whole file) first, then top to bottom."""
    return (problem.line is not None, problem.line or 0, problem.column or 0)


def inspect_spec(
    path: str | Path,
    *,
    input_shape: tuple | None = None,
    upto: str | int | None = None,
    overrides: list[str] | None = None,
) -> Report:
    """Validate and build a spec abstractly (no weight memory); every problem lands on the report."""
    report = Report(str(path))
    try:
        spec = read_spec(path, overrides)
    except SpecError as error:
        report.problems, report.source, report.cause = error.problems, error.source, error
        return report
    report.spec, report.source = spec, spec.document.source
    try:
        report.built = build_model(spec, abstract=True, input_shape=input_shape, upto=upto)
    except MissingDependency:
        raise  # the machine, not this spec: no verdict is better than a wrong one
    except Exception as error:  # a bug or an unchecked input: this spec fails, the others are still checked
        # Keras quotes values it read; a spec whose layers read files gets only the error's class.
        text = "" if file_fields(spec.document.data) else f": {clean_message(error)}"
        report.problems = [
            *spec.problems,
            Problem(
                f"building the model failed: {type(error).__name__}{text}",
                "",
                None,
                None,
                "this is an input seq does not check yet; please report it",
                spec.file,
            ),
        ]
        report.cause = error
        return report
    problems = spec.problems + report.built.problems + compile_problems(spec) + adapting_problems(spec)
    if spec.tune is not None:
        from seqcli.tune.space import check_tune

        problems += check_tune(spec, base_ok=not problems)
    report.problems = sorted(problems, key=_reading_order)
    own_shape = report.built.input_shape if report.built.input_source != "--input-shape" else None
    if input_shape is not None and own_shape is not None and tuple(input_shape) != tuple(own_shape):
        message = (
            f"--input-shape {shape_text(input_shape)} conflicts with the spec's input shape {shape_text(own_shape)}"
        )
        hint = "--input-shape is for specs without one; change the spec, or drop it"
        report.problems.insert(0, spec.problem(("layers", 0), message, hint))
    return report
