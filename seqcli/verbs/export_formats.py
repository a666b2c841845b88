"""The export formats, one table: for each, how it is chosen (``--to``, the output's suffix), what it
needs installed, which layers it cannot hold (refused before any work), how the artifact is written and
how it is loaded back and run in its own runtime.

Every format serves the same function: the Keras model in inference mode (augmentation layers are
identity, dropout is off, BatchNormalization uses its moving statistics) behind one input and one output
whose names a client can rely on (:class:`ServingNames`), the same after every run and command.

This module imports nothing heavy at import time: the command line reads :data:`FORMATS` for its choices
and help without loading TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqcli.errors import SeqError

DEFAULT_INPUT_NAME = "inputs"
DEFAULT_OUTPUT_NAME = "outputs"
SIGNATURE_KEY = "serving_default"  # what TF Serving and the LiteRT signature runner call by default
AUTOMATIC_INPUT_NAME = re.compile(r"input_layer(_\d+)?")  # Keras's names for an Input the spec did not name
SERVING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")  # valid as a TF signature key and an ONNX name alike
MAX_UNROLLED_STEPS = 256  # a LiteRT recurrent layer is unrolled step by step; more steps make a huge graph
STRING_LAYERS = ("StringLookup", "TextVectorization", "Hashing")
ONNX_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "int32": "int32", "int64": "int64"}


class ExportError(SeqError):
    """An export that cannot be made, or whose result does not predict what the Keras model predicts."""


@dataclass(frozen=True)
class ServingNames:
    """The input and output names every format's artifact uses."""

    input: str = DEFAULT_INPUT_NAME
    output: str = DEFAULT_OUTPUT_NAME


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


@dataclass(frozen=True)
class ExportFormat:
    """One row of the table: everything seq knows about a format."""

    name: str  # --to
    keras_name: str  # what Keras's model.export calls it
    suffix: str | None  # an --output ending in it picks this format
    staged: str  # the artifact's name in the staging folder (LiteRT insists on .tflite)
    runtime: str  # what loads the artifact back
    packages: tuple[str, ...]  # beyond TensorFlow
    write: Callable[[Any, ServingNames, Path, Path], None]  # (model, names, artifact, scratch folder)
    verify: Callable[[Path, ServingNames, Any], tuple[Any, Verification]]  # -> (outputs, signature)
    refuse: Callable[[Any], tuple[str, str] | None]  # (reason, hint) when the model cannot be held

    def describe(self) -> str:
        return f"{self.name} (Keras: {self.keras_name}; runs in {self.runtime})"


# ----------------------------------------------------------------------------- names


def serving_names(model) -> ServingNames:
    """The spec's names: the Input's own name when the spec gave it one, else ``inputs``; ``outputs``.
    Keras's automatic names (``input_layer_2``...) change with every model built in a process, so they are
    never used."""
    name = model.inputs[0].name if getattr(model, "inputs", None) else None
    if not name or AUTOMATIC_INPUT_NAME.fullmatch(name):
        return ServingNames()
    if not SERVING_NAME.fullmatch(name):
        raise ExportError(
            f"the model's input name {name!r} cannot name a serving input",
            hint="name the Input with letters, digits, '_', '.' or '-', starting with a letter",
        )
    return ServingNames(input=name, output=DEFAULT_OUTPUT_NAME if name != DEFAULT_OUTPUT_NAME else "predictions")


def serving_function(model, names: ServingNames):
    """The model in inference mode as a ``tf.function`` of one named input, returning one named output."""
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    spec = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype, name=names.input)

    def serve(inputs):
        return {names.output: model(inputs, training=False)}

    return tf.function(serve, input_signature=[spec])


# ----------------------------------------------------------------------------- what a format cannot hold


def _layers(model):
    """Every layer of the model, nested models' included, as ``(path, layer)``."""
    from seqcli.trainable import walk_layers

    return walk_layers(model.layers)


def _recurrent(layer) -> list:
    """The recurrent layers ``layer`` runs: itself, or a Bidirectional wrapper's two directions."""
    inner = [getattr(layer, name, None) for name in ("forward_layer", "backward_layer")]
    return [rnn for rnn in inner if rnn is not None] or ([layer] if hasattr(layer, "unroll") else [])


def refuse_string_layers(model) -> tuple[str, str] | None:
    """A model with string preprocessing layers, which only a SavedModel holds (ONNX and LiteRT cannot)."""
    for path, layer in _layers(model):
        if type(layer).__name__ in STRING_LAYERS:
            return (
                f"{type(layer).__name__} layer '{path}': this format cannot hold string preprocessing",
                "export with --to saved_model, or move the string preprocessing out of the model",
            )
    return None


def refuse_tflite(model) -> tuple[str, str] | None:
    """LiteRT runs recurrent layers unrolled over a fixed number of steps: none without a fixed length."""
    string = refuse_string_layers(model)
    if string is not None:
        return string
    for path, layer in _layers(model):
        if not _recurrent(layer):
            continue
        steps = _time_steps(layer)
        if steps is None:
            return (
                f"{type(layer).__name__} layer '{path}' reads sequences of any length, and LiteRT's built-in ops "
                "run a recurrent layer only unrolled over a fixed number of steps",
                "give the Input a fixed length (e.g. 'Input: {shape: [50, 8]}') and train again, "
                "or export with --to onnx or --to saved_model",
            )
        if steps > MAX_UNROLLED_STEPS:
            return (
                f"{type(layer).__name__} layer '{path}' reads {steps} steps; unrolled for LiteRT that is more than "
                f"{MAX_UNROLLED_STEPS}",
                "export with --to onnx or --to saved_model, or use shorter sequences",
            )
    return None


def _time_steps(layer) -> int | None:
    """The fixed number of steps a recurrent layer reads; None for any length."""
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):  # never called: nothing to export either
        return None
    return shape[1] if len(shape) > 2 else None


def refuse_nothing(model) -> tuple[str, str] | None:
    return None


# ----------------------------------------------------------------------------- writers


@contextlib.contextmanager
def _quiet():
    """Converters print to Python's stdout and warn freely; seq's output stays its own."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_saved_model(model, names: ServingNames, artifact: Path, scratch: Path) -> None:
    """A SavedModel whose ``serving_default`` signature takes ``names.input`` and returns ``names.output``."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    archive = keras.export.ExportArchive()
    archive.track(model)
    function = serving_function(model, names)
    archive.add_endpoint(SIGNATURE_KEY, function, input_signature=function.input_signature)
    with _quiet():
        archive.write_out(str(artifact), verbose=False)


def write_tflite(model, names: ServingNames, artifact: Path, scratch: Path) -> None:
    """LiteRT's built-in ops only, so that any LiteRT interpreter runs the file (no Flex delegate): a
    recurrent layer is unrolled over its fixed number of steps (:func:`refuse_tflite` saw to it)."""
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    _unroll_recurrent_layers(model)
    saved = scratch / "for-tflite"
    write_saved_model(model, names, saved, scratch)
    with _quiet():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE_KEY])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        artifact.write_bytes(converter.convert())


def _unroll_recurrent_layers(model) -> None:
    """Unrolled, a recurrent layer computes the same steps without a while loop, which LiteRT cannot hold
    without TensorFlow ops. Only the model loaded for this export is changed."""
    for _, layer in _layers(model):
        for rnn in _recurrent(layer):
            rnn.unroll = True


def write_onnx(model, names: ServingNames, artifact: Path, scratch: Path) -> None:
    """ONNX through tf2onnx, with the model's constants (a Normalization's mean and variance) folded into
    the graph, so that the file takes one input."""
    import tf2onnx
    from tf2onnx import tf_loader

    from seqcli.keras_env import patch_tf2onnx

    patch_tf2onnx()
    concrete = serving_function(model, names).get_concrete_function()
    # The signature's own input only: tf2onnx would make every captured constant an input of its own.
    input_names = [concrete.inputs[0].name]
    output_names = [tensor.name for tensor in concrete.outputs]
    renames = {input_names[0]: names.input, output_names[0]: names.output}
    with _quiet():
        graph = tf_loader.from_function(concrete, input_names, output_names)
        tf2onnx.convert.from_graph_def(
            graph,
            name=model.name,
            input_names=input_names,
            output_names=output_names,
            tensors_to_rename=renames,
            output_path=str(artifact),
        )


# ----------------------------------------------------------------------------- verifiers: run the artifact


def _dims(shape) -> tuple:
    import numpy as np

    return tuple(
        None if d is None or (isinstance(d, (int, np.integer)) and d < 0) or isinstance(d, str) else int(d)
        for d in shape
    )


def run_saved_model(path: Path, names: ServingNames, inputs) -> tuple[Any, Verification]:
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    function = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]
    input_specs = function.structured_input_signature[1]
    results = function(**{names.input: tf.constant(inputs)})
    tensors_in = [TensorInfo(n, _dims(s.shape.as_list()), s.dtype.name) for n, s in input_specs.items()]
    tensors_out = [
        TensorInfo(n, _dims(s.shape.as_list()), s.dtype.name) for n, s in function.structured_outputs.items()
    ]
    return results[names.output].numpy(), Verification("tf.saved_model", 0.0, tensors_in, tensors_out)


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


def run_tflite(path: Path, names: ServingNames, inputs) -> tuple[Any, Verification]:
    import numpy as np

    interpreter, runtime = litert_interpreter(path)
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    outputs = runner(**{names.input: inputs})

    def info(name, detail) -> TensorInfo:
        return TensorInfo(name, _dims(detail["shape_signature"]), np.dtype(detail["dtype"]).name)

    tensors_in = [info(n, d) for n, d in runner.get_input_details().items()]
    tensors_out = [info(n, d) for n, d in runner.get_output_details().items()]
    return outputs[names.output], Verification(runtime, 0.0, tensors_in, tensors_out)


def run_onnx(path: Path, names: ServingNames, inputs) -> tuple[Any, Verification]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    taken = [arg.name for arg in session.get_inputs()]
    if taken != [names.input]:
        raise ExportError(
            f"the ONNX file takes the inputs {', '.join(taken)}, not the one input {names.input!r}",
            hint="the export is not kept; report this model to seq",
        )

    def info(arg) -> TensorInfo:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        return TensorInfo(arg.name, _dims(arg.shape), ONNX_DTYPES.get(dtype, dtype))

    (actual,) = session.run([names.output], {names.input: inputs})
    signature = Verification(
        "onnxruntime", 0.0, [info(a) for a in session.get_inputs()], [info(a) for a in session.get_outputs()]
    )
    return actual, signature


FORMATS: dict[str, ExportFormat] = {
    row.name: row
    for row in (
        ExportFormat(
            "saved_model",
            "tf_saved_model",
            None,
            "saved_model",
            "TF Serving, tf.saved_model.load",
            (),
            write_saved_model,
            run_saved_model,
            refuse_nothing,
        ),
        ExportFormat(
            "tflite", "litert", ".tflite", "model.tflite", "LiteRT", (), write_tflite, run_tflite, refuse_tflite
        ),
        ExportFormat(
            "onnx",
            "onnx",
            ".onnx",
            "model.onnx",
            "onnxruntime",
            ("tf2onnx", "onnx", "onnxruntime"),
            write_onnx,
            run_onnx,
            refuse_string_layers,
        ),
    )
}
"""``--to``'s choices, its help, the suffixes that pick a format and the refusals all read this table."""
