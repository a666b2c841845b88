"""``seq export``: a trained model as a TensorFlow SavedModel, a LiteRT (.tflite) file or an ONNX file.

Keras's own ``model.export`` writes the artifact into a staging folder beside the target; the artifact is
then loaded back in its own runtime (``tf.saved_model.load``, the LiteRT interpreter, onnxruntime) and
its predictions on a batch of real inputs are compared with the Keras model's. Only a verified artifact
is renamed into place: a failed or unverified export leaves nothing behind.

Integration points (existing functions this module uses, to re-point after refactors):
``seqcli.predict.resolve_target`` (RUN_OR_MODEL -> model file and run folder),
``seqcli.models.load_model_file`` (a .keras file in safe mode) and ``seqcli.data.load_source``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqcli.errors import MissingDependency, SeqError, clean_message
from seqcli.files import temporary_prefix

FORMATS = {"saved_model": "tf_saved_model", "tflite": "litert", "onnx": "onnx"}
STAGED_NAMES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
ONNX_DTYPES = {"float": "float32", "double": "float64", "float16": "float16"}
TOLERANCE = 1e-5
DEFAULT_SAMPLES = 32


class ExportError(SeqError):
    """An export that cannot be made, or whose result does not predict what the Keras model predicts."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple  # None for a dimension of any size
    dtype: str

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Verification:
    runtime: str
    max_difference: float
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)


@dataclass
class ExportResult:
    model: str
    format: str
    output: Path
    size: int  # bytes, all files of a SavedModel folder together
    samples: int
    data: str
    verification: Verification

    def lines(self) -> list[str]:
        """What ``seq export`` prints: the artifact, its signature, and how it was verified."""
        from seqcli.limits import human_size
        from seqcli.shapes import shape_text

        check = self.verification
        lines = [f"Exported model '{self.model}' as {self.format} to {self.output} ({human_size(self.size)})"]
        for role, tensors in (("input", check.inputs), ("output", check.outputs)):
            lines += [f"  {role:<6} {t.name}: {shape_text(t.shape)} {t.dtype}" for t in tensors]
        lines.append(
            f"Verified in {check.runtime} on {self.samples} samples of {self.data}: "
            f"max difference {check.max_difference:.3g} (tolerance {TOLERANCE:g})"
        )
        return lines

    def as_dict(self) -> dict[str, Any]:
        check = self.verification
        return {
            "model": self.model,
            "format": self.format,
            "output": str(self.output),
            "bytes": self.size,
            "runtime": check.runtime,
            "samples": self.samples,
            "data": self.data,
            "max_difference": check.max_difference,
            "tolerance": TOLERANCE,
            "inputs": [t.as_dict() for t in check.inputs],
            "outputs": [t.as_dict() for t in check.outputs],
        }


def export_format_for(output: str | Path, given: str | None) -> str:
    """The format asked for, else the one the output's suffix names (.tflite, .onnx; otherwise a SavedModel)."""
    if given is not None:
        if given not in FORMATS:
            raise ExportError(f"unknown export format {given!r}", hint=f"use one of: {', '.join(FORMATS)}")
        return given
    return SUFFIXES.get(Path(output).suffix.lower(), "saved_model")


def export_model(
    target: str | Path,
    output: str | Path,
    *,
    fmt: str | None = None,
    data: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    overwrite: bool = False,
) -> ExportResult:
    """Export the model of a run folder or .keras file, verify the artifact in its own runtime against the
    Keras model on ``samples`` real inputs, and only then put it at ``output``."""
    from seqcli.keras_env import import_keras
    from seqcli.models import load_model_file
    from seqcli.predict import resolve_target

    fmt = export_format_for(output, fmt)
    resolved = resolve_target(target)
    check_format_holds(resolved.model_path, fmt)
    if fmt == "onnx":
        require_onnx()
    import_keras()  # before anything imports TensorFlow: its start-up logs turned down
    output = Path(output)
    _check_output(output, overwrite, fmt, inputs=[resolved.model_path, *([Path(data)] if data else [])])
    inputs, label = sample_inputs(resolved, data, samples)
    model = load_model_file(resolved.model_path)
    inputs = _fit_inputs(model, inputs, label)
    expected = np.asarray(model(_as_tensor(inputs), training=False))
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(output.name), suffix=".staging", dir=output.parent))
    try:
        artifact = staging / STAGED_NAMES[fmt]  # LiteRT insists on .tflite; the target may be named anything
        _export(model, artifact, fmt)
        verification = VERIFIERS[fmt](artifact, inputs, expected)
        _publish(artifact, output, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(model.name, fmt, output, _size(output), len(inputs), label, verification)


STRING_LAYERS = ("TextVectorization", "StringLookup", "Hashing")  # layers that take strings
STRING_FORMATS = ("saved_model",)  # formats that hold string inputs and the ops on them


def check_format_holds(model_path: Path, fmt: str) -> None:
    """Refuse, from the model's config alone (nothing loaded, nothing exported), a format that cannot hold
    a model taking strings: LiteRT's and ONNX's built-in ops have no strings and no vocabulary tables."""
    from seqcli.limits import read_model_config

    if fmt in STRING_FORMATS or Path(model_path).suffix != ".keras":
        return
    layers = read_model_config(model_path, "the model").get("config", {}).get("layers") or []
    configs = [layer.get("config") or {} for layer in layers if isinstance(layer, dict)]
    if not any(config.get("dtype") == "string" for config in configs):
        return
    named = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") in STRING_LAYERS]
    layer = named[0] if named else layers[min(1, len(layers) - 1)]
    name, class_name = (layer.get("config") or {}).get("name"), layer.get("class_name")
    raise ExportError(
        f"{fmt} cannot hold layer {name!r} ({class_name}): the model takes strings, and {fmt} models "
        "have no string inputs or vocabulary lookups",
        hint="export a SavedModel instead (--format saved_model), which takes strings and keeps the "
        "preprocessing; or train a model that starts after the text layer, on preprocessed inputs",
    )


def _as_tensor(inputs: np.ndarray):
    """Inputs as a model call takes them: strings (an object array of bytes) as a tf.string tensor."""
    if inputs.dtype != object:
        return inputs
    from seqcli.keras_env import import_tensorflow

    return import_tensorflow().constant(inputs)


def require_onnx() -> None:
    """ONNX export needs three packages beyond TensorFlow; say which are missing and how to get them."""
    import importlib.util

    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(
            f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint="pip install 'seqcli[onnx]'  (or: pip install tf2onnx onnx onnxruntime)",
        )


def sample_inputs(target, data: str | None, samples: int) -> tuple[np.ndarray, str]:
    """Up to ``samples`` real inputs: from ``data`` (relative to the current folder), else from the run's spec
    (its data.test, else data.train)."""
    from seqcli.data import load_source

    if data is not None:
        source, base, label = data, Path.cwd(), data
    else:
        source, base, label = _run_source(target)
    dataset, _ = load_source(source, base, batch_size=samples, labels=False, where="--data" if data else label)
    for batch in dataset.take(1):
        return np.asarray(batch), label
    raise ExportError(f"{label} holds no samples to verify the export with", hint="pass --data SOURCE")


def _run_source(target) -> tuple[Any, Path, str]:
    from seqcli.spec import load_spec

    # The spec.yaml of a run the user named: like --data, the user's own choice, so not confined to its folder.
    spec = load_spec(target.spec_path, confined=False) if target.spec_path is not None else None
    data = spec.resolved().get("data") if spec is not None else None
    for key in ("test", "train"):
        if data and data.get(key) is not None:
            return data[key], spec.base_dir, f"data.{key} of {target.spec_path}"
    raise ExportError(
        f"no inputs to verify the export of {target.model_path} with",
        hint="pass --data SOURCE (e.g. --data samples.npy): a few inputs like those the model takes",
    )


def _fit_inputs(model, inputs: np.ndarray, label: str) -> np.ndarray:
    shape = tuple(model.input_shape[1:])
    sample = inputs.shape[1:]
    if len(shape) != len(sample) or any(e is not None and e != s for e, s in zip(shape, sample)):
        raise ExportError(
            f"{label}: samples have shape {tuple(sample)}, but the model takes {shape}",
            hint="give --data with inputs shaped like those the model was trained on",
        )
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    if (dtype == "string") != (inputs.dtype == object):
        from seqcli.models import check_data_dtype

        check_data_dtype(dtype, "string" if inputs.dtype == object else str(inputs.dtype), label)
    return inputs if dtype == "string" else inputs.astype(dtype, copy=False)


def _check_output(output: Path, overwrite: bool, fmt: str, inputs: list[Path]) -> None:
    """Every writing command's rule (:mod:`seqcli.outputs`): a SavedModel is a folder seq fills, and
    ``--overwrite`` replaces only one that seq wrote; a .tflite or .onnx file is replaced only with it."""
    from seqcli.files import check_writable_file
    from seqcli.outputs import check_output_file, check_output_folder

    if fmt == "saved_model":
        check_output_folder(output, inputs=inputs, overwrite=overwrite)
    else:
        check_output_file(output, inputs=inputs, overwrite=overwrite)
    check_writable_file(output, directory_ok=True)


def _export(model, artifact: Path, fmt: str) -> None:
    """``model.export``, its chatter on Python's stdout kept out of seq's output."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(str(artifact), format=FORMATS[fmt], verbose=False)
    except Exception as error:  # converters raise many types for an op they cannot express
        raise ExportError(
            f"Keras could not export the model '{model.name}' as {fmt}: {clean_message(error)}",
            hint="some layers have no equivalent in every format; try another --format",
        ) from None


def _publish(artifact: Path, output: Path, staging: Path) -> None:
    """Rename the verified artifact into place; an existing output is moved aside first, then removed."""
    if not artifact.exists():
        raise ExportError(f"Keras wrote no {artifact.name} while exporting", hint="report this as a bug in seq")
    from seqcli.outputs import record_members, replace_folder

    try:
        if artifact.is_dir():  # a SavedModel: the folder lists what seq wrote, so --overwrite may replace it
            record_members(artifact, sorted(str(p.relative_to(artifact)) for p in artifact.rglob("*")), "seq export")
            replace_folder(artifact, output)
        else:
            os.replace(artifact, output)
    except OSError as error:
        raise ExportError(
            f"cannot put the export at {output}: {error.strerror or error}",
            hint="choose another --output, or fix the permissions of its folder",
        ) from None


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# ----------------------------------------------------------------------------- verification, one per runtime


def _compare(runtime: str, actual, expected: np.ndarray, inputs, outputs) -> Verification:
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        raise ExportError(
            f"the {runtime} model returned shape {actual.shape}, the Keras model {expected.shape}",
            hint="the export is not kept; report this model to seq",
        )
    difference = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
    if not difference <= TOLERANCE * max(1.0, float(np.max(np.abs(expected), initial=0.0))):
        raise ExportError(
            f"the exported model's predictions differ from the Keras model's by up to {difference:.3g} "
            f"(tolerance {TOLERANCE:g}) in {runtime}",
            hint="the export is not kept; an op may be converted with other numerics, try another --format",
        )
    return Verification(runtime, difference, inputs, outputs)


def _dims(shape) -> tuple:
    return tuple(
        None if d is None or (isinstance(d, (int, np.integer)) and d < 0) or isinstance(d, str) else int(d)
        for d in shape
    )


def verify_saved_model(path: Path, inputs: np.ndarray, expected: np.ndarray) -> Verification:
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()

    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    input_specs = function.structured_input_signature[1]
    ((input_name, _),) = input_specs.items()
    results = function(**{input_name: tf.constant(inputs)})
    output_name = sorted(results)[0]
    tensors_in = [TensorInfo(n, _dims(s.shape.as_list()), s.dtype.name) for n, s in input_specs.items()]
    tensors_out = [
        TensorInfo(n, _dims(s.shape.as_list()), s.dtype.name) for n, s in function.structured_outputs.items()
    ]
    return _compare("tf.saved_model", results[output_name].numpy(), expected, tensors_in, tensors_out)


def litert_interpreter(path: Path):
    """LiteRT's interpreter from ai_edge_litert where installed, else TensorFlow's (deprecated) one."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path)), "ai_edge_litert"
    except ImportError:
        from seqcli.keras_env import import_tensorflow

        tf = import_tensorflow()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=str(path)), "tf.lite"


def verify_litert(path: Path, inputs: np.ndarray, expected: np.ndarray) -> Verification:
    interpreter, runtime = litert_interpreter(path)
    (input_detail,) = interpreter.get_input_details()
    # The model's input is [1, ...] with a -1 batch signature: resize it to the batch before allocating.
    interpreter.resize_tensor_input(input_detail["index"], list(inputs.shape), strict=False)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], inputs)
    interpreter.invoke()
    output_detail = interpreter.get_output_details()[0]
    actual = interpreter.get_tensor(output_detail["index"])

    def info(detail) -> TensorInfo:
        return TensorInfo(detail["name"], _dims(detail["shape_signature"]), np.dtype(detail["dtype"]).name)

    return _compare(
        runtime, actual, expected, [info(input_detail)], [info(d) for d in interpreter.get_output_details()]
    )


def verify_onnx(path: Path, inputs: np.ndarray, expected: np.ndarray) -> Verification:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (input_arg,) = session.get_inputs()
    actual = session.run(None, {input_arg.name: inputs})[0]

    def info(arg) -> TensorInfo:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        return TensorInfo(arg.name, _dims(arg.shape), ONNX_DTYPES.get(dtype, dtype))

    return _compare("onnxruntime", actual, expected, [info(input_arg)], [info(a) for a in session.get_outputs()])


VERIFIERS = {"saved_model": verify_saved_model, "tflite": verify_litert, "onnx": verify_onnx}
