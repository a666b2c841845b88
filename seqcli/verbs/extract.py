"""Feature extraction: the guide's ``keras.Model(inputs, outputs=[layer.output ...])``, streamed to disk.

Outputs are named by layer path: ``conv2d`` for a top-level layer, ``xception/block14_sepconv2_act``
for a layer inside a base. Taking a layer out of a base nested in a Sequential model the obvious way,
``keras.Model(model.inputs, base.get_layer(name).output)``, fails with "Graph disconnected" (the
inner layer's output belongs to the base's own graph; keras-team/keras#16355, #16123).
:func:`feature_extractor` instead calls every layer again on a fresh input and, where an inner output
is wanted, calls the base's own graph (re-run with the same layers, hence the same weights) so that
the inner outputs are connected to the outer input.

Features are written batch by batch: one ``.npy`` file per layer (header first, then rows appended),
so memory does not grow with the number of samples. An ``.npz`` output is assembled from those files
member by member into a ZIP64 archive. Outputs appear atomically when complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqcli.errors import SeqError, did_you_mean
from seqcli.files import OutputError, atomic_path, check_writable_file, temporary_prefix
from seqcli.keras_env import import_keras, import_tensorflow
from seqcli.manifest import record_members, seal
from seqcli.models import check_data_shape, sample_shape
from seqcli.outputs import claim_output, replace_folder
from seqcli.trainable import walk_layers

COPY_CHUNK = 1 << 22
QUEUE_BATCHES = 4  # batches in flight between the model and the writer thread


class ExtractError(SeqError):
    """A layer name that does not exist, data that does not fit the model, an output of the wrong kind."""


@dataclass
class Extraction:
    """What ``seq extract`` wrote."""

    output: Path
    format: str  # "npz" or "npy" (a directory of .npy files)
    count: int
    shapes: dict[str, tuple] = field(default_factory=dict)  # layer path -> array shape, samples first
    dtypes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "output": str(self.output),
            "format": self.format,
            "count": self.count,
            "arrays": {k: {"shape": list(v), "dtype": self.dtypes[k]} for k, v in self.shapes.items()},
        }


# ----------------------------------------------------------------------------- the extractor model


def feature_extractor(model, names: list[str]):
    """A functional model from the Sequential ``model``'s input to the outputs of the layers ``names``
    (paths such as ``dense`` or ``xception/block14_sepconv2_act``), sharing ``model``'s weights."""
    keras = import_keras()

    known = [path for path, _ in walk_layers(model.layers)]
    missing = [name for name in names if name not in known]
    if missing:
        raise ExtractError(
            f"--layer {missing[0]!r}: the model has no such layer",
            hint=did_you_mean(missing[0], known) or _naming_hint(model),
        )
    found: dict = {}
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
    tensor = inputs
    for layer in model.layers:
        tensor = _call_recording(layer, tensor, layer.name, set(names), found)
    return keras.Model(inputs, [found[name] for name in names], name=f"{model.name}_features")


def _call_recording(layer, tensor, path: str, wanted: set[str], found: dict):
    """``layer(tensor)``, recording the symbolic outputs of the wanted paths at or below ``path``."""
    below = {name for name in wanted if name.startswith(path + "/")}
    if not below:
        output = layer(tensor)
    elif isinstance(layer, import_keras().Sequential):
        output = tensor
        for child in layer.layers:
            output = _call_recording(child, output, f"{path}/{child.name}", wanted, found)
    else:
        exposed, keys = _exposed(layer, path, below)
        outputs = exposed(tensor)
        output = outputs[0]
        found.update(zip(keys, outputs[1:]))
    if path in wanted:
        found[path] = output
    return output


def _exposed(model, path: str, wanted: set[str]):
    """A functional model from ``model``'s inputs to ``[model output, *wanted inner outputs]``: the
    model's graph run again through its own layers, so the inner outputs are connected."""
    keras = import_keras()

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExtractError(f"cannot reach inside {path!r}: it has several inputs or outputs")
    found: dict = {}

    def call(layer, *args, **kwargs):
        child = f"{path}/{layer.name}"
        if len(args) == 1 and not kwargs and any(w.startswith(child + "/") for w in wanted):
            return _call_recording(layer, args[0], child, wanted, found)
        output = layer(*args, **kwargs)
        if child in wanted:
            found[child] = output
        return output

    rerun = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    keys = [name for name in sorted(wanted) if name in found]
    return keras.Model(rerun.inputs, [rerun.outputs[0], *(found[k] for k in keys)]), keys


def _naming_hint(model) -> str:
    bases = [layer.name for layer in model.layers if _is_model(layer)]
    text = f"top-level layers: {', '.join(layer.name for layer in model.layers)}"
    if bases:
        text += f"; reach inside a base with '{bases[0]}/LAYER'"
    return text


def _is_model(layer) -> bool:
    return isinstance(layer, import_keras().Model)


# ----------------------------------------------------------------------------- streaming


def extract_features(
    extractor,
    names: list[str],
    dataset,
    count: int,
    output: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> Extraction:
    """Run ``extractor`` over ``dataset`` (batches of inputs) and stream each output to disk.

    ``output`` ending in ``.npz`` gets one archive (arrays keyed by layer path); any other path a
    directory with one ``.npy`` per layer (``base/inner`` in a subfolder). ``progress`` is called with
    the number of samples done after each batch. Nothing appears at ``output`` unless all went well.
    """
    output = Path(output)
    shapes = {name: (count, *tuple(t.shape[1:])) for name, t in zip(names, extractor.outputs)}
    dtypes = {name: np.dtype(t.dtype) for name, t in zip(names, extractor.outputs)}
    for name, shape in shapes.items():
        if None in shape:
            raise ExtractError(
                f"layer {name!r} has output shape {shape[1:]} with an unknown size",
                hint="give the model a fixed input shape",
            )
    try:
        workdir = Path(tempfile.mkdtemp(prefix=temporary_prefix(output.name), dir=_parent(output)))
        try:
            if output.suffix == ".npz":
                _extract_npz(extractor, names, dataset, output, workdir, shapes, dtypes, progress)
            else:
                files = [f"{name}.npy" for name in names]
                record_members(workdir, files, "seq extract")  # their folders with them
                streams = {
                    name: _NpyStream.create(workdir / f"{name}.npy", shapes[name], dtypes[name]) for name in names
                }
                _run(extractor, names, dataset, streams, count, progress, sync=True)
                seal(workdir, "seq extract")
                _publish_directory(workdir, output)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(
            f"cannot write {output}: {error.strerror or error}",
            cause=error,
            hint="nothing was changed at --output; free some space, or choose another --output",
        ) from None
    return Extraction(
        output, "npz" if output.suffix == ".npz" else "npy", count, shapes, {k: v.name for k, v in dtypes.items()}
    )


def _extract_npz(extractor, names, dataset, output: Path, workdir: Path, shapes, dtypes, progress) -> None:
    """The first layer streams straight into its archive member; the others into .npy files that are
    copied in after it (ZIP members are written one at a time)."""
    first, rest = names[0], names[1:]
    with atomic_path(output, suffix=".npz") as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            member = archive.open(f"{first}.npy", "w", force_zip64=True)
            try:
                streams = {first: _NpyStream(member, shapes[first], dtypes[first], first)}
                streams.update(
                    {name: _NpyStream.create(workdir / f"{name}.npy", shapes[name], dtypes[name]) for name in rest}
                )
                _run(extractor, names, dataset, streams, shapes[first][0], progress, sync=False)
            finally:
                member.close()
            for name in rest:
                with (
                    open(workdir / f"{name}.npy", "rb") as source,
                    archive.open(f"{name}.npy", "w", force_zip64=True) as target,
                ):
                    shutil.copyfileobj(source, target, COPY_CHUNK)
                (workdir / f"{name}.npy").unlink()


def _run(extractor, names, dataset, streams: dict[str, _NpyStream], count: int, progress, *, sync: bool) -> None:
    """The extraction loop: a compiled forward pass per batch; a writer thread appends the results."""
    tf = import_tensorflow()

    @tf.function(reduce_retracing=True)
    def step(batch):
        outputs = extractor(batch, training=False)
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    done = 0
    with _Writer(streams, sync=sync) as writer:
        for batch in dataset:
            # np.asarray shares the output tensor's buffer (and keeps it alive); Tensor.numpy() would copy
            # every batch into freshly allocated memory, which costs as much as writing it to disk.
            arrays = [np.asarray(o) for o in step(batch)]
            writer.put(dict(zip(names, arrays)))
            done += len(arrays[0])
            if progress is not None:
                progress(done)
    if done != count:
        raise ExtractError(f"the data source yielded {done} samples, but said it holds {count}")


class _NpyStream:
    """An .npy written as a header for the final shape, then rows appended batch by batch."""

    def __init__(self, file, shape: tuple, dtype: np.dtype, name: str):
        self.file, self.shape, self.dtype, self.name = file, shape, np.dtype(dtype), name
        self.rows = 0
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)

    @classmethod
    def create(cls, path: Path, shape: tuple, dtype: np.dtype) -> _NpyStream:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(open(path, "wb"), shape, dtype, path.stem)

    def append(self, array: np.ndarray) -> None:
        if array.shape[1:] != self.shape[1:] or self.rows + len(array) > self.shape[0]:
            raise ExtractError(f"{self.name}: batch of shape {array.shape} does not fit {self.shape}")
        self.file.write(np.ascontiguousarray(array, dtype=self.dtype).data)
        self.rows += len(array)

    def close(self, sync: bool) -> None:
        if self.file.closed:
            return
        if sync:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()


class _Writer:
    """Appends batches on a background thread, so that disk writes overlap the next batch's compute.
    At most QUEUE_BATCHES batches wait in memory."""

    def __init__(self, streams: dict[str, _NpyStream], *, sync: bool):
        self.streams, self.sync = streams, sync
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="seq-extract-writer", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def put(self, arrays: dict[str, np.ndarray]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(arrays)

    def _run(self) -> None:
        while True:
            arrays = self.queue.get()
            if arrays is None:
                return
            if self.error is None:
                try:
                    for name, array in arrays.items():
                        self.streams[name].append(array)
                except BaseException as error:  # reported on the main thread
                    self.error = error

    def __exit__(self, *exc_info):
        self.queue.put(None)
        self.thread.join()
        for stream in self.streams.values():
            stream.close(self.sync)
        if self.error is not None and exc_info[0] is None:
            raise self.error
        return False


def _publish_directory(workdir: Path, output: Path) -> None:
    """Move the finished folder into place; an existing output folder (of seq's own files only) is replaced
    once the new one is done."""
    if output.exists() and not output.is_dir():
        raise ExtractError(f"{output} exists and is not a directory", hint="end --output in .npz for one archive")
    staged = Path(tempfile.mkdtemp(prefix=temporary_prefix(output.name), dir=_parent(output)))
    staged.rmdir()
    os.replace(workdir, staged)
    try:
        replace_folder(staged, output)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _parent(output: Path) -> Path:
    parent = output.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


# ----------------------------------------------------------------------------- the command


def run_extract(
    spec_path: str | Path,
    *,
    data: str,
    output: str | Path,
    layers: list[str] | None = None,
    weights: str | Path | None = None,
    batch_size: int | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    progress_factory: Callable[[int], contextlib.AbstractContextManager] | None = None,
) -> Extraction:
    """``seq extract``: build the spec's model, load ``weights``, extract ``layers`` (all top-level layers
    when None) for every sample of ``data`` (a source as ``data:`` names one, relative to the current
    folder) into ``output``. ``progress_factory(total)`` gives a context whose value is called with the
    samples done. An existing ``output`` is replaced only with ``overwrite`` (see :mod:`seqcli.outputs`)."""
    from seqcli.specfile import load_spec

    spec = load_spec(spec_path, overrides)
    inputs = [spec_path, *(path for path in (weights, data) if path is not None and Path(path).exists())]
    folder = Path(output).suffix != ".npz"
    with claim_output(output, "seq extract", folder=folder, inputs=inputs, overwrite=overwrite):
        check_writable_file(Path(output) / "probe" if folder else output)
        return _extract(spec, data, output, layers, weights, batch_size, progress_factory)


def _extract(spec, data, output, layers, weights, batch_size, progress_factory) -> Extraction:
    import_keras()  # TensorFlow quietly, before the data pipeline imports it
    from seqcli.data import load_source
    from seqcli.modelbuild import model_from_spec

    batch = batch_size or (spec.data.batch_size if spec.data is not None else 32)
    declared = _declared_shape(spec)
    dataset, count = load_source(data, Path.cwd(), batch_size=batch, labels=False, where="--data", input_shape=declared)
    if count is None:
        raise ExtractError("--data: the source does not say how many samples it holds")
    model = model_from_spec(
        spec,
        weights=weights,
        batch_size=batch,
        what="extracting with this model",
        input_shape=None if declared is not None else sample_shape(dataset),
    )
    names = list(dict.fromkeys(layers)) if layers else [layer.name for layer in model.layers]
    check_data_shape(model, dataset, "--data")
    extractor = feature_extractor(model, names)
    with progress_factory(count) if progress_factory else contextlib.nullcontext(None) as progress:
        return extract_features(extractor, names, dataset, count, output, progress=progress)


def _declared_shape(spec) -> tuple | None:
    """The spec's own input shape from a weightless build; None when it takes the data's."""
    from seqcli.modelbuild import build_model

    if not spec.declares_input:
        return None
    built = build_model(spec, abstract=True)
    if built.problems:
        raise spec.error(built.problems)
    return built.input_shape
