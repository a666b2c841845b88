"""``seq export``: a trained model as a TensorFlow SavedModel (in TF Serving's ``NAME/VERSION/`` layout), a
LiteRT (.tflite) file or an ONNX file.

What each format is, needs and cannot hold is one table, :data:`seqcli.verbs.export_formats.FORMATS`. A model
the format cannot hold is refused before any work. Otherwise the artifact is written into a staging folder
beside the target, loaded back in its own runtime (``tf.saved_model.load``, the LiteRT interpreter,
onnxruntime) and its predictions on real inputs, and on random inputs in their range, are compared with the
Keras model's. Only a verified artifact is renamed into place: a failed or unverified export leaves nothing
behind. Inputs and outputs carry the names :func:`seqcli.verbs.export_formats.serving_names` gives, the same in
every format and after every command.

RUN_OR_MODEL is read by :func:`seqcli.training.rundir.resolve_run_or_model`, the model file loaded by
:func:`seqcli.models.load_model_file` (safe mode) and ``--data`` by :func:`seqcli.data.load_source`, as every
verb that takes a trained model reads them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli.errors import MissingDependency, SeqError
from seqcli.files import temporary_prefix
from seqcli.manifest import Member
from seqcli.verbs.export_formats import FORMATS, ExportError, ExportFormat, ServingNames, Verification, serving_names

TOLERANCE = 1e-5
DEFAULT_SAMPLES = 32
DEFAULT_VERSION = 1
CONSTANT_SPREAD = 1e-6  # relative: outputs that vary less than this across inputs are taken as constant

Stage = Callable[[str], None]


def _no_stage(text: str) -> None:
    """Stages go nowhere unless the caller shows them."""


@dataclass
class ExportResult:
    model: str
    format: str
    output: Path
    artifact: Path  # the SavedModel's version folder inside output; output itself for a file
    size: int  # bytes, all files of a SavedModel together
    samples: int
    random_inputs: int
    data: str
    verification: Verification
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``seq export`` prints: the artifact, its signature, and how it was verified."""
        from seqcli.budget import human_size
        from seqcli.shapes import shape_text

        check = self.verification
        lines = [f"Exported model '{self.model}' as {self.format} to {self.artifact} ({human_size(self.size)})"]
        for role, tensors in (("input", check.inputs), ("output", check.outputs)):
            lines += [f"  {role:<6} {t.name}: {shape_text(t.shape)} {t.dtype}" for t in tensors]
        extra = f" and {self.random_inputs} random inputs in their range" if self.random_inputs else ""
        lines.append(
            f"Verified in {check.runtime} on {self.samples} samples of {self.data}{extra}: "
            f"max difference {check.max_difference:.3g} (tolerance {TOLERANCE:g})"
        )
        return lines

    def as_dict(self) -> dict[str, Any]:
        check = self.verification
        return {
            "model": self.model,
            "format": self.format,
            "output": str(self.output),
            "artifact": str(self.artifact),
            "bytes": self.size,
            "runtime": check.runtime,
            "samples": self.samples,
            "random_inputs": self.random_inputs,
            "data": self.data,
            "max_difference": check.max_difference,
            "tolerance": TOLERANCE,
            "inputs": [t.as_dict() for t in check.inputs],
            "outputs": [t.as_dict() for t in check.outputs],
            "warnings": self.warnings,
        }


def export_format_for(output: str | Path, given: str | None) -> ExportFormat:
    """The format asked for, else the one the output's suffix names (.tflite, .onnx; otherwise a SavedModel)."""
    if given is not None:
        if given not in FORMATS:
            raise ExportError(f"unknown export format {given!r}", hint=f"use one of: {', '.join(FORMATS)}")
        return FORMATS[given]
    suffix = Path(output).suffix.lower()
    return next((row for row in FORMATS.values() if row.suffix == suffix), FORMATS["saved_model"])


def export_model(
    target: str | Path,
    output: str | Path,
    *,
    fmt: str | None = None,
    data: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    overwrite: bool = False,
    version: int = DEFAULT_VERSION,
    stage: Stage = _no_stage,
) -> ExportResult:
    """Export the model of a run folder or .keras file, verify the artifact in its own runtime against the
    Keras model on ``samples`` real inputs (and random ones in their range), and only then put it at
    ``output`` (a SavedModel at ``output/version``). ``stage`` hears each step as it starts."""
    from seqcli.keras_env import import_keras
    from seqcli.training.rundir import resolve_run_or_model, run_or_model_inputs
    from seqcli.verbs.predict import data_paths

    row = export_format_for(output, fmt)
    require_packages(row)
    import_keras()  # before anything imports TensorFlow: its start-up logs turned down
    from seqcli.outputs import claim_output

    output = Path(output)
    resolved = resolve_run_or_model(target)
    inputs = [*run_or_model_inputs(target), *(data_paths(data) if data else [])]
    folder = row.name == "saved_model"
    versions = _served_versions(output) if folder else None
    own_ok = versions is not None
    with claim_output(output, "seq export", folder=folder, inputs=inputs, overwrite=overwrite, own_ok=own_ok):
        _check_version(output, version, overwrite)
        return _export(row, resolved, output, data, samples, version, stage)


def _export(row, resolved, output: Path, data, samples: int, version: int, stage: Stage) -> ExportResult:
    stage(f"loading {resolved.model}")
    model = _exportable_model(resolved.model, row)
    names = serving_names(model)
    real, label = sample_inputs(resolved, data, samples)
    real = _fit_inputs(model, real, label)
    inputs = exercising_inputs(real)
    stage(f"running the Keras model on {len(inputs)} inputs")
    expected = _predict(model, inputs)
    staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(output.name), suffix=".staging", dir=output.parent))
    try:
        artifact = staging / row.staged
        stage(f"converting to {row.name}")
        _write(row, model, names, artifact, staging)
        stage(f"verifying in {row.runtime}")
        verification = verify(row, artifact, names, inputs, expected)
        stage(f"writing {output}")
        placed = _publish(row, artifact, output, staging, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        model.name,
        row.name,
        output,
        placed,
        _size(placed),
        len(real),
        len(inputs) - len(real),
        label,
        verification,
        constant_output_warnings(expected),
    )


def require_packages(row: ExportFormat) -> None:
    """A format that needs packages beyond TensorFlow: say which are missing and how to get them."""
    import importlib.util

    missing = [name for name in row.packages if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(
            f"{row.name} export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            hint=f"pip install 'seqcli[{row.name}]'  (or: pip install {' '.join(row.packages)})",
        )


def _exportable_model(model_path: Path, row: ExportFormat):
    """The model, loaded in safe mode, once it is clear the format can hold every layer of it."""
    from seqcli.models import load_model_file

    model = load_model_file(model_path)
    refused = row.refuse(model)
    if refused is not None:
        reason, hint = refused
        raise ExportError(f"cannot export the model '{model.name}' as {row.name}: {reason}", hint=hint)
    return model


def _predict(model, inputs):
    import numpy as np

    return np.asarray(model(_as_tensor(inputs), training=False))


def _as_tensor(inputs):
    """Inputs as a model call takes them: strings (an object array of bytes) as a tf.string tensor."""
    if inputs.dtype != object:
        return inputs
    from seqcli.keras_env import import_tensorflow

    return import_tensorflow().constant(inputs)


def sample_inputs(target, data: str | None, samples: int) -> tuple[Any, str]:
    """Up to ``samples`` real inputs: from ``data`` (relative to the current folder), else from the run's spec
    (its data.test, else data.train)."""
    import numpy as np

    from seqcli.data import load_source

    if data is not None:
        source, base, label = data, Path.cwd(), data
    else:
        source, base, label = _run_source(target)
    dataset, _ = load_source(source, base, batch_size=samples, labels=False, where="--data" if data else label)
    for batch in dataset.take(1):
        return np.asarray(batch), label
    raise ExportError(f"{label} holds no samples to verify the export with", hint="pass --data SOURCE")


def exercising_inputs(real):
    """The real samples and as many random inputs again (at least 4), each value drawn between the smallest
    and the largest the samples hold at its position: inputs that reach beyond the few samples at hand."""
    import numpy as np

    count = max(4, len(real))
    rng = np.random.default_rng(0)
    low, high = real.min(axis=0), real.max(axis=0)
    drawn: np.ndarray
    if np.issubdtype(real.dtype, np.integer):
        drawn = rng.integers(low, high, size=(count, *real.shape[1:]), endpoint=True)
    elif np.issubdtype(real.dtype, np.floating):
        drawn = rng.uniform(low, high, size=(count, *real.shape[1:]))
    else:
        return real
    return np.concatenate([real, drawn.astype(real.dtype)])


def constant_output_warnings(expected) -> list[str]:
    """A warning when the Keras model gives (nearly) the same output for every verification input: then the
    artifact agreeing with it proves little about the model."""
    import numpy as np

    if len(expected) < 2:
        return []
    spread = float(np.max(np.abs(expected - expected[0])))
    scale = max(1.0, float(np.max(np.abs(expected))))
    if spread > CONSTANT_SPREAD * scale:
        return []
    return [
        f"the model predicts the same output for all {len(expected)} verification inputs, so the match proves "
        "little; a frozen base built with 'weights: null' or dead units do this: check the model's weights"
    ]


def _run_source(target) -> tuple[Any, Path, str]:
    from seqcli.specfile import load_spec

    # The spec.yaml of a run the user named: like --data, the user's own choice, so not confined to its folder.
    spec = load_spec(target.spec, confined=False) if target.spec is not None else None
    data = spec.resolved().get("data") if spec is not None else None
    for key in ("test", "train"):
        if spec is not None and data and data.get(key) is not None:
            return data[key], spec.base_dir, f"data.{key} of {target.spec}"
    raise ExportError(
        f"no inputs to verify the export of {target.model} with",
        hint="pass --data SOURCE (e.g. --data samples.npy): a few inputs like those the model takes",
    )


def _fit_inputs(model, inputs, label: str):
    from seqcli.shapes import check_sample_shape

    check_sample_shape(inputs.shape[1:], model.input_shape[1:], None, label)
    dtype = model.inputs[0].dtype if model.inputs else "float32"
    if (dtype == "string") != (inputs.dtype == object):
        from seqcli.models import check_data_dtype

        check_data_dtype(dtype, "string" if inputs.dtype == object else str(inputs.dtype), label)
    return inputs if dtype == "string" else inputs.astype(dtype, copy=False)


# ----------------------------------------------------------------------------- the output


def _check_version(output: Path, version: int, overwrite: bool) -> None:
    """A SavedModel goes into ``output/VERSION`` (TF Serving's layout): a folder seq exported to takes a new
    version as it is, and replaces one it has only with ``--overwrite`` (the door, :func:`claim_output`, has
    refused any other folder but an empty one, and one of seq's without ``--overwrite``)."""
    versions = _served_versions(output) if output.is_dir() else None
    if versions is not None and str(version) in versions and not overwrite:
        raise ExportError(
            f"{output / str(version)} exists",
            hint=f"add --overwrite to replace version {version}, or give a new --version "
            f"(next: {max(map(int, versions)) + 1})",
        )


def _served_versions(output: Path) -> list[str] | None:
    """The versions of a folder ``seq export`` filled in TF Serving's layout (its manifest's top-level
    members are all numbered folders); None for anything else."""
    from seqcli.manifest import ManifestError, read_manifest

    try:
        manifest = read_manifest(output) if output.is_dir() else None
    except ManifestError:
        return None  # the door refuses it, naming why
    top = {path: member for path, member in (manifest.members if manifest else {}).items() if "/" not in path}
    if not top or not all(path.isdigit() and member.kind == "folder" for path, member in top.items()):
        return None
    return list(top)


def _version_members(folder: Path, version: int) -> dict[str, Member]:
    """The version folder ``folder / version`` and everything in it, exactly, with each file's size."""
    root = folder / str(version)
    members = {str(version): Member("folder")}
    for path in sorted(root.rglob("*")):
        relative = f"{version}/{path.relative_to(root).as_posix()}"
        info = path.lstat()
        members[relative] = Member("folder") if path.is_dir() else Member("file", info.st_size)
    return members


def _write(row: ExportFormat, model, names: ServingNames, artifact: Path, scratch: Path) -> None:
    from seqcli.errors import clean_message

    try:
        row.write(model, names, artifact, scratch)
    except SeqError:
        raise
    except Exception as error:  # converters raise many types for an op they cannot express
        raise ExportError(
            f"the {row.name} converter could not export the model '{model.name}': {clean_message(error)}",
            hint="the export is not kept; try another --to, and report this model to seq",
        ) from error
    if not artifact.exists():
        raise ExportError(f"the {row.name} converter wrote no {artifact.name}", hint="report this as a bug in seq")


def _publish(row: ExportFormat, artifact: Path, output: Path, staging: Path, version: int) -> Path:
    """Rename the verified artifact into place and say where it is. A SavedModel becomes ``output/VERSION``
    beside the versions already there; seq's manifest sits in ``output``, outside any served version, and
    lists every file of every version exactly."""
    from seqcli.manifest import updating
    from seqcli.outputs import replace_folder

    try:
        if row.name != "saved_model":
            os.replace(artifact, output)
            return output
        placed = output / str(version)
        if _served_versions(output) is None:  # a new folder, or one of seq's that --overwrite replaces
            served = staging / "served"
            served.mkdir()
            os.replace(artifact, served / str(version))
            with updating(served, "seq export") as manifest:
                manifest.members = _version_members(served, version)
            replace_folder(served, output)
        else:
            _replace_version(artifact, placed)
            with updating(output, "seq export") as manifest:
                kept = {p: m for p, m in manifest.members.items() if p.split("/")[0] != str(version)}
                manifest.members = {**kept, **_version_members(output, version)}
        return placed
    except OSError as error:
        raise ExportError(
            f"cannot put the export at {output}: {error.strerror or error}",
            hint="choose another --output, or fix the permissions of its folder",
        ) from error


def _replace_version(artifact: Path, placed: Path) -> None:
    """A version folder takes the new SavedModel; the one it held (all seq's, as the door judged it against
    the manifest of the folder above) is moved aside first, then removed."""
    if not placed.exists():
        os.replace(artifact, placed)
        return
    retired = placed.with_name(f".{placed.name}.seq-replaced")
    os.replace(placed, retired)
    os.replace(artifact, placed)
    shutil.rmtree(retired, ignore_errors=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# ----------------------------------------------------------------------------- verification


def verify(row: ExportFormat, artifact: Path, names: ServingNames, inputs, expected) -> Verification:
    """Run the artifact in its own runtime on ``inputs``; its outputs must match ``expected``."""
    import numpy as np

    from seqcli.errors import clean_message

    try:
        actual, signature = row.verify(artifact, names, inputs)
    except SeqError:
        raise
    except Exception as error:  # runtimes raise their own types for a file they cannot run
        raise ExportError(
            f"{row.runtime} cannot run the exported model: {clean_message(error)}",
            hint="the export is not kept; try another --to, and report this model to seq",
        ) from error
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        raise ExportError(
            f"the {signature.runtime} model returned shape {actual.shape}, the Keras model {expected.shape}",
            hint="the export is not kept; report this model to seq",
        )
    difference = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
    if not difference <= TOLERANCE * max(1.0, float(np.max(np.abs(expected), initial=0.0))):
        raise ExportError(
            f"the exported model's predictions differ from the Keras model's by up to {difference:.3g} "
            f"(tolerance {TOLERANCE:g}) in {signature.runtime}",
            hint="the export is not kept; an op may be converted with other numerics, try another --to",
        )
    signature.max_difference = difference
    return signature
