"""``seq evaluate`` and ``seq predict``: a trained run (or a ``.keras`` file) put to work on a data source.

Models load with :func:`seqcli.models.load_model_file`, in Keras's safe mode, always: a ``.keras`` file that
would run code when loaded (a Lambda layer's pickled bytecode) is refused, not trusted.

A run directory (read through :func:`seqcli.training.rundir.resolve_run_or_model`) brings its own context:
``spec.yaml`` (the spec as trained) supplies the default data to evaluate on (``data.test``, else the
validation data, split again with the run's seed) and the batch size; ``metrics.json`` the class names, which a
``.keras`` file written by seq also carries on its own. ``--data`` paths are relative to the current folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqcli.classes import ClassReport, class_report, label_ids, predicted_ids, top_classes
from seqcli.errors import SeqError
from seqcli.files import atomic_path, write_text_atomic
from seqcli.keras_env import import_tensorflow
from seqcli.models import ModelLoadError, check_data_shape, load_model_file
from seqcli.specfile.sections import SourceSection
from seqcli.training.rundir import RunOrModel, resolve_run_or_model, run_or_model_inputs

DEFAULT_BATCH_SIZE = 256  # inference only: no gradients, so larger batches are cheap
OUTPUT_FORMATS = (".npy", ".csv", ".json")


@dataclass
class Evaluation:
    model: str
    source: str
    count: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    classes: ClassReport | None = None  # for a classifier: per-class results and the confusion matrix

    def as_dict(self) -> dict[str, Any]:
        found = {"model": self.model, "data": self.source, "samples": self.count, "metrics": self.metrics}
        return found | ({"classes": self.classes.as_dict()} if self.classes is not None else {})


@dataclass
class Predictions:
    output: Path
    count: int
    shape: tuple  # of one sample's prediction


def evaluate_model(
    target: str | Path, *, data: str | None = None, spec: str | Path | None = None, batch_size: int | None = None
) -> Evaluation:
    """Loss and metrics of a trained model on a data source (default: the run's test or validation data)."""
    resolved = resolve_run_or_model(target)
    run_spec = _load_spec(spec) if spec else None
    if run_spec is None and resolved.spec:
        run_spec = _load_spec(resolved.spec, run_record=True)
    if data is None and run_spec is None:
        raise ModelLoadError(
            "no data to evaluate on",
            hint="pass --data SOURCE (e.g. --data data.npz), or --spec SPEC to use its data.test or validation data",
        )
    batch = batch_size or (run_spec.data.batch_size if run_spec and run_spec.data else DEFAULT_BATCH_SIZE)
    model = load_model_file(resolved.model, compile=True, batch_size=batch)
    if spec is not None or not getattr(model, "compiled", False):
        _compile_from(model, run_spec, resolved.model)
    run_seed = _run_seed(resolved) if spec is not None and data is None else None
    names = resolved.class_names()
    dataset, count, label = _evaluation_data(data, run_spec, batch, run_seed, _model_input(model), names)
    check_data_shape(model, dataset, label)
    try:
        metrics = model.evaluate(dataset, verbose=0, return_dict=True)
        classes = _class_results(model, dataset, names)
    except Exception as error:
        _raise_runtime(error, label)
    return Evaluation(model.name, label, count, {name: float(value) for name, value in metrics.items()}, classes)


def _class_results(model, dataset, names: list[str] | None) -> ClassReport | None:
    """Per-class results of a classifier (a model of one row of outputs per sample, labels that are class
    indices or one-hot rows) in one more pass over the data; None for any other model."""
    shape = getattr(model, "output_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 2 or shape[-1] is None:
        return None
    width = shape[-1]
    label_spec = dataset.element_spec[1]
    if not (label_spec.dtype.is_integer or (width > 1 and label_spec.shape[-1] == width)):
        return None
    true, predicted = [], []
    for x, y in dataset:
        ids = label_ids(y.numpy(), width)
        if ids is None:
            return None
        true.append(ids)
        predicted.append(predicted_ids(model.predict_on_batch(x)))
    if not true:
        return None
    return class_report(np.concatenate(true), np.concatenate(predicted), max(width, 2), names)


def _no_stage(text: str) -> None:
    """Stages go nowhere unless the caller shows them."""


def predict_to_file(
    target: str | Path,
    *,
    data: str,
    output: str | Path,
    batch_size: int | None = None,
    overwrite: bool = False,
    stage=_no_stage,
    top_k: int = 1,
) -> Predictions:
    """Model outputs for every sample of ``data``, written atomically as ``.npy`` (raw outputs), ``.csv`` or
    ``.json`` (for a classifier, its ``top_k`` classes with their names and probabilities first). An
    existing ``output`` is replaced only with ``overwrite``, and never when it is an input. ``stage`` hears
    each step (loading, predicting, writing) as it starts."""
    from seqcli.outputs import claim_output

    output = Path(output)
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise SeqError(f"cannot tell the output format of {output}", hint="end --output with .npy, .csv or .json")
    inputs = [*run_or_model_inputs(target), *data_paths(data)]
    with claim_output(output, "seq predict", folder=False, inputs=inputs, overwrite=overwrite):
        values, class_names = _predict(resolve_run_or_model(target), data, output, batch_size, stage)
        stage(f"writing {output}")
        _write_predictions(output, values, class_names, top_k)
    return Predictions(output, len(values), tuple(values.shape[1:]))


def _predict(
    resolved: RunOrModel, data: str, output: Path, batch_size: int | None, stage
) -> tuple[np.ndarray, list[str] | None]:
    from seqcli.data import load_source

    class_names = resolved.class_names() if output.suffix.lower() != ".npy" else None  # before the slow part
    stage(f"loading {resolved.model}")
    model = load_model_file(resolved.model, compile=True, batch_size=batch_size or DEFAULT_BATCH_SIZE)
    dataset, count = load_source(
        data,
        Path.cwd(),
        batch_size=batch_size or DEFAULT_BATCH_SIZE,
        labels=False,
        where="--data",
        input_shape=_model_input(model),
    )
    check_data_shape(model, dataset, data)
    stage(f"predicting {count:,} samples of {data}" if count is not None else f"predicting on {data}")
    try:
        values = np.asarray(model.predict(dataset, verbose=0))
    except Exception as error:
        _raise_runtime(error, data)
    return values, class_names


def _write_predictions(output: Path, values: np.ndarray, class_names: list[str] | None, top_k: int) -> None:
    try:
        if output.suffix.lower() == ".npy":
            with atomic_path(output, suffix=".npy") as temporary, open(temporary, "wb") as handle:
                np.save(handle, values, allow_pickle=False)
        elif output.suffix.lower() == ".json":
            write_text_atomic(output, predictions_json(values, class_names, top_k))
        else:
            write_text_atomic(output, predictions_csv(values, class_names, top_k))
    except OSError as error:
        raise SeqError(
            f"cannot write {output}: {error.strerror or error}",
            hint="free some space or fix the permissions, or choose another --output",
        ) from error


def is_classifier(values: np.ndarray, class_names: list[str] | None) -> bool:
    """Outputs read as classes: a row of several outputs per sample, or one output of a model whose run
    recorded two class names (a binary classifier)."""
    if values.ndim != 2:
        return False
    return values.shape[1] > 1 or (class_names is not None and len(class_names) == 2)


def _named(values: np.ndarray, class_names: list[str] | None) -> list[str] | None:
    classes = max(values.shape[1], 2)
    return class_names if class_names is not None and len(class_names) == classes else None


def predictions_csv(values: np.ndarray, class_names: list[str] | None = None, top_k: int = 1) -> str:
    """One row per sample: for a classifier its ``top_k`` classes first (index, name when the run recorded
    them, probability: ``class, class_name, probability`` for one, ``class_1, ...`` for more), then every
    output value."""
    flat = values.reshape(len(values), -1)
    width = flat.shape[1]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = ["output"] if width == 1 else [f"output_{i}" for i in range(width)]
    if not is_classifier(values, class_names):
        writer.writerow(columns)
        writer.writerows([f"{v:.7g}" for v in row] for row in flat)
        return buffer.getvalue()
    names = _named(values, class_names)
    ids, probs = top_classes(values, top_k)
    suffixes = [""] if ids.shape[1] == 1 else [f"_{rank + 1}" for rank in range(ids.shape[1])]
    lead = [[f"class{s}"] + ([f"class_name{s}"] if names else []) + [f"probability{s}"] for s in suffixes]
    writer.writerow([cell for group in lead for cell in group] + columns)
    for row, row_ids, row_probs in zip(flat, ids, probs):
        cells = []
        for class_id, probability in zip(row_ids, row_probs):
            cells += [int(class_id)] + ([safe_cell(names[class_id])] if names else []) + [f"{probability:.7g}"]
        writer.writerow(cells + [f"{v:.7g}" for v in row])
    return buffer.getvalue()


def predictions_json(values: np.ndarray, class_names: list[str] | None = None, top_k: int = 1) -> str:
    """``{"class_names": ..., "predictions": [...]}``: per sample, for a classifier its ``top_k`` classes
    (``class``, ``class_name`` when recorded, ``probability``), and its ``outputs``."""
    flat = values.reshape(len(values), -1)
    rows: list[dict[str, list]] = [{"outputs": [float(v) for v in row]} for row in flat]
    names = None
    if is_classifier(values, class_names):
        names = _named(values, class_names)
        ids, probs = top_classes(values, top_k)
        for row, row_ids, row_probs in zip(rows, ids, probs):
            row["top"] = [
                {"class": int(c)} | ({"class_name": names[c]} if names else {}) | {"probability": float(p)}
                for c, p in zip(row_ids, row_probs)
            ]
    return json.dumps({"class_names": names, "predictions": rows}, indent=1) + "\n"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula (``=cmd|...``, ``@SUM``) gets a
    leading apostrophe (OWASP's CSV-injection advice). Numbers are written as numbers, never through here."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# ----------------------------------------------------------------------------- helpers


def _load_spec(path, *, run_record: bool = False):
    """``run_record``: the spec.yaml of a run the user named (seq wrote it with absolute paths); like
    ``--data``, the user's own choice, so the files it names are not confined to its folder."""
    from seqcli.specfile import load_spec

    return load_spec(path, confined=not run_record)


def _compile_from(model, spec, model_path: Path) -> None:
    from seqcli.compile import resolve_compile

    if spec is None:
        raise ModelLoadError(
            f"{model_path} was saved without compile settings, so it has no loss or metrics",
            hint="pass --spec SPEC to evaluate with that spec's compile section",
        )
    settings, problems = resolve_compile(spec)
    if settings is None:
        raise spec.error(problems)
    settings.compile(model)


def _run_seed(target: RunOrModel) -> int | None:
    """The seed the run trained with, as its ``spec.yaml`` records it (None without one)."""
    if target.spec is None:
        return None
    try:
        return _load_spec(target.spec, run_record=True).train.seed
    except SeqError:
        return None


def _model_input(model) -> tuple | None:
    """The model's input shape without the batch dimension; None when unknown."""
    shape = getattr(model, "input_shape", None)
    return tuple(shape[1:]) if isinstance(shape, tuple) else None


def _evaluation_data(
    data: str | None,
    spec,
    batch_size: int,
    run_seed: int | None = None,
    input_shape: tuple | None = None,
    class_names: list[str] | None = None,
):
    """``run_seed``: the trained run's seed, which splits a validation fraction as training did when the
    spec names no seed; ``class_names``: the run's, which a source's class names must match."""
    from seqcli.data import load_datasets, load_source

    if data is not None:
        dataset, count = load_source(
            data,
            Path.cwd(),
            batch_size=batch_size,
            labels=True,
            where="--data",
            input_shape=input_shape,
            class_names=class_names,
        )
        return dataset, count, data
    section = spec.data
    if section is not None and section.test is not None:
        dataset, count = load_source(
            spec.resolved()["data"]["test"],
            spec.base_dir,
            batch_size=batch_size,
            labels=True,
            where="data.test",
            input_shape=input_shape,
            class_names=class_names,
        )
        return dataset, count, "data.test"
    if section is not None and section.validation is not None:
        seed = spec.train.seed if spec.train.seed is not None else run_seed
        if seed is None and not isinstance(section.validation, (str, SourceSection)):
            raise ModelLoadError(
                f"{spec.file} splits its validation data off data.train at random (no train.seed), "
                "and no run records the seed the model was trained with, so any split would mix "
                "in training samples",
                hint="pass --data SOURCE, or set train.seed in the spec to the seed of the run",
            )
        datasets = load_datasets(
            spec.resolved()["data"], spec.base_dir, seed=seed, batch_size=batch_size, decode_once=False
        )
        return datasets.validation, datasets.validation_count, "the validation data"
    raise ModelLoadError(f"{spec.file} names no test or validation data", hint="pass --data SOURCE")


def data_paths(data: str) -> list[Path]:
    """The files and folders ``data`` (a ``--data`` source) names that exist, for the rule that an output is
    never an input (a bundled data set names none)."""
    from seqcli.data import DataError
    from seqcli.data.sources import source_paths

    try:
        paths = source_paths(data)
    except DataError:
        return []  # the data's own error comes when it is read
    return [path for path in paths if path.exists()]


def _raise_runtime(error: Exception, label: str):
    tf = import_tensorflow()

    if isinstance(error, (tf.errors.InvalidArgumentError, ValueError)):
        lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith("\t")]
        raise SeqError(
            f"the model cannot run on {label}: {lines[-1].strip() if lines else error}",
            hint="check that the labels fit the model's output and loss",
        ) from error
    raise error
