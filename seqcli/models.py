"""Model files in and out: the one place seq reads a ``.keras`` model, loads weights, or saves a model.

- :func:`load_model_file` loads a ``.keras`` model in Keras's safe mode, always: a file that would
  run code when loaded (a Lambda layer's pickled bytecode) is refused, never trusted;
  :func:`load_model_architecture` makes the same model from the archive's config alone (no weights).
- :func:`load_weights` loads a ``.weights.h5`` file, or the weights of a ``.keras`` file, into a built
  model, after :func:`check_weights_file`, the one check of a weights file.
- :func:`save_model` writes a model atomically: a failed write leaves the previous file intact.
- :func:`check_data_shape` says whether a dataset's samples fit a model's input.
"""

from __future__ import annotations

from pathlib import Path

from seqcli import archives
from seqcli.errors import SeqError, clean_message
from seqcli.files import OutputError, atomic_path
from seqcli.inputs import UNREADABLE_HINT, ReadRefused, check_input
from seqcli.keras_env import import_keras, linear_sequential_loading, weightless_scope
from seqcli.shapes import DataShapeError, check_sample_shape

WEIGHTS_SUFFIXES = (".weights.h5", ".keras")


class WeightsError(SeqError):
    """A weights or model file that cannot be read, or does not fit the spec's model."""


class ModelLoadError(SeqError):
    """A model file Keras cannot load safely (or, for the verbs that take one, a run without a model)."""


class NotAModelError(ModelLoadError):
    """A ``.keras`` archive whose config.json describes something other than a whole model (a layer...)."""


# ----------------------------------------------------------------------------- loading


def load_model_file(path: str | Path, *, compile: bool = False, batch_size: int | None = None):
    """Load a ``.keras`` model in safe mode: a file cannot make seq run code. ``compile`` restores the
    compile settings saved with it. The archive, and with ``batch_size`` the memory to run batches of that
    size (estimated from its config), are checked against the budget first. A missing file, or one Keras
    refuses or cannot read, is a :class:`ModelLoadError`; one that is no zip archive or is over the budget, a
    :class:`~seqcli.budget.LimitError`."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"no such model file: {path}", hint="check the path (relative to the current directory)")
    archives.check_model_file(path, "model")  # the door: a FIFO or a device, or an archive over the budget, unread
    if path.suffix == ".keras":  # its config.json, read (never deserialized) to see that it holds a model
        config = archives.read_model_config(path, "model")
        require_model_config(config, path)
        if batch_size is not None:
            _check_config_memory(config, batch_size=batch_size, what=f"running {path}")
    elif batch_size is not None:
        check_model_file_memory(path, batch_size=batch_size, what=f"running {path}")
    keras = import_keras()  # after the checks: a refused file costs no TensorFlow start-up
    try:
        with linear_sequential_loading():
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError, zipfile errors...
        raise _load_error(path, error) from error


def check_model_file_memory(path: str | Path, *, batch_size: int, what: str) -> None:
    """LimitError when the ``.keras`` model at ``path`` (its config, built without weights) is over the budget
    to run batches of ``batch_size``. Reads only the archive's config.json."""
    _check_config_memory(archives.read_model_config(path, "model"), batch_size=batch_size, what=what)


def _check_config_memory(config, *, batch_size: int, what: str) -> None:
    """The model a ``.keras`` config describes, made without weights, through the one memory check."""
    from seqcli.memory import check_model_memory

    keras = import_keras()
    if not isinstance(config, dict):
        return  # the real load reports what is wrong with the file
    config = {key: value for key, value in config.items() if key != "compile_config"}
    try:
        with weightless_scope(), linear_sequential_loading():
            model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception:  # the real load reports what is wrong with the file
        return
    if getattr(model, "built", False):
        check_model_memory(model, batch_size=batch_size, what=what)


def load_model_architecture(path: str | Path):
    """The model a ``.keras`` file holds, made from its config in safe mode without reading any weights
    (an abstract build's base). A refused or broken file is a :class:`ModelLoadError`."""
    path = Path(path)
    config = archives.read_model_config(path, "Model")  # config.json alone, within its size and layer limits
    require_model_config(config, path)
    keras = import_keras()
    try:
        config.pop("compile_config", None)
        with linear_sequential_loading():
            return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as error:  # zipfile, JSON and Keras errors alike: the file is not a usable model
        raise _load_error(path, error) from error


MODEL_CLASSES = ("Sequential", "Functional", "Model")  # the class_name model.save writes for a whole model


def require_model_config(config, path: Path) -> None:
    """NotAModelError when a ``.keras`` archive's config.json (read, never deserialized) describes a Keras
    object that is not a whole model, such as a bare layer. A class registered by user code
    (``registered_name`` ``package>Name``) is left to Keras's safe-mode loader, which refuses what it
    does not know."""
    if isinstance(config, dict):
        name = config.get("class_name")
        registered = config.get("registered_name")
        if name in MODEL_CLASSES or (isinstance(registered, str) and ">" in registered):
            return
        described = f"a {name!r} object" if isinstance(name, str) and name else "no Keras object"
    else:
        described = f"a JSON {type(config).__name__}, not a Keras object"
    raise NotAModelError(
        f"{path} is not a model: its config.json describes {described}, not a Sequential or Functional model",
        hint="give a .keras file written by model.save for a whole model (a layer alone is not one)",
    )


def _load_error(path: Path, error: Exception) -> ModelLoadError:
    text = clean_message(error)
    unsafe = "safe_mode" in str(error) or "unsafe" in str(error).lower()
    hint = (
        "safe mode refuses models that run code when loaded (e.g. Lambda layers); seq never turns it off"
        if unsafe
        else "check that the file is a complete .keras model (written by model.save)"
    )
    return ModelLoadError(f"cannot load {path}: {text}", hint=hint)


# ----------------------------------------------------------------------------- weights


def check_weights_file(
    path: str | Path,
    *,
    written_as: str | None = None,
    base_dir: Path | None = None,
    suffixes: tuple[str, ...] = WEIGHTS_SUFFIXES,
) -> Path:
    """Check that ``path`` is an existing weights file (by default a ``.weights.h5`` or ``.keras`` file; a
    pretrained base's ``weights`` takes any ``.h5``); returns it as a Path.

    ``written_as`` is the path as the user wrote it and ``base_dir`` the folder it is relative to (a
    spec's), for the messages. Raises :class:`WeightsError`."""
    path = Path(path)
    shown = written_as if written_as is not None else str(path)
    if not path.exists():
        relative = written_as is not None and base_dir is not None and not Path(written_as).is_absolute()
        raise WeightsError(
            f"weights file not found: {path}",
            hint=f"{written_as!r} is relative to the spec's folder, {base_dir}" if relative else None,
        )
    if not path.name.endswith(suffixes):
        kinds = (
            "a .weights.h5 file (model.save_weights) or a .keras model"
            if suffixes == WEIGHTS_SUFFIXES
            else " or ".join(f"a {suffix} file" for suffix in suffixes)
        )
        raise WeightsError(f"weights must be {kinds}; received {shown!r}")
    try:
        check_input(path, "weights", limit=None)  # the door: a FIFO, a device or a folder is refused
    except ReadRefused as error:
        raise WeightsError(error.detail, error.hint) from error
    except OSError as error:
        raise WeightsError(f"cannot read {path}: {error.strerror or error}", hint=UNREADABLE_HINT) from error
    return path


def load_weights(model, path: str | Path) -> None:
    """Load weights into a built model from a ``.weights.h5`` file or the weights of a ``.keras`` file
    (only its weights are read: no code or config from the file runs)."""
    path = check_weights_file(path)
    archives.check_model_file(path, "weights")  # an archive that would not fit in memory is refused unread
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises ValueError, KeyError, OSError... for a file that does not fit
        raise WeightsError(
            f"cannot load {path} into the model '{model.name}': {clean_message(error)}",
            hint="the weights must come from a model built from the same spec "
            "(same layers in the same order, same shapes)",
        ) from error


# ----------------------------------------------------------------------------- saving


def save_model(model, target: str | Path, *, class_names: list[str] | None = None) -> None:
    """``model.save`` to ``target`` (a ``.keras`` file) atomically: a failed write leaves any previous file
    intact. ``class_names`` (the output units' classes, in order) travel inside the file as plain JSON
    (:data:`SEQ_MEMBER`), which Keras's loader leaves alone. Raises :class:`~seqcli.files.OutputError`."""
    target = Path(target)
    with atomic_path(target, suffix=".keras") as temporary:
        try:
            model.save(temporary)
            if class_names is not None:
                _add_seq_member(temporary, {"class_names": list(class_names)})
        except OutputError:
            raise
        except OSError as error:
            raise OutputError(
                f"cannot write {target}: {error.strerror or error}",
                cause=error,
                hint="the previous file, if any, is intact; free some space, or choose another --output",
            ) from error


SEQ_MEMBER = "seq.json"  # what seq adds to a .keras archive: {"class_names": [...]}; Keras ignores it
# The member's size as the archive declares it, checked before it is read (zipfile never inflates a member past
# it): 100,000 names of 40 characters, and parsed as JSON a few tens of MB at most.
SEQ_MEMBER_LIMIT = 4 << 20


def _add_seq_member(path: Path, document: dict) -> None:
    import json
    import zipfile

    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SEQ_MEMBER, json.dumps(document))


def saved_class_names(path: str | Path) -> list[str] | None:
    """The class names a ``.keras`` file written by seq carries (:func:`save_model`), read through the archive
    door as JSON, never deserialized by Keras; None for a file without them (saved by Keras itself), or
    whose record is not a list of names."""
    import json

    with archives.open_archive(path, "model") as archive:
        try:
            member = archive.getinfo(SEQ_MEMBER)
        except KeyError:
            return None
        if member.file_size > SEQ_MEMBER_LIMIT:
            return None
        with archives.open_member(archive, SEQ_MEMBER, path, "model") as handle:
            text = handle.read(SEQ_MEMBER_LIMIT + 1)
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return None
    names = document.get("class_names") if isinstance(document, dict) else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return names


# ----------------------------------------------------------------------------- data against the model


def sample_shape(dataset) -> tuple:
    """The shape of one sample of a batched dataset (its inputs, when it yields ``(inputs, labels)``)."""
    element = dataset.element_spec
    return tuple((element[0] if isinstance(element, tuple) else element).shape[1:])


def check_data_shape(model, dataset, label: str) -> None:
    """Raise :class:`~seqcli.shapes.DataShapeError` when the samples of ``dataset`` (``label`` names it in the
    message) do not fit the input of ``model``: their shape (:func:`~seqcli.shapes.shape_fits`, the one rule)
    or their kind (:func:`check_data_dtype`). A model without a known input shape takes anything."""
    shape = getattr(model, "input_shape", None)
    if not shape:
        return
    check_sample_shape(sample_shape(dataset), shape[1:], None, label)
    check_data_dtype(model_input_dtype(model), _sample_dtype(dataset), label)


def model_input_dtype(model) -> str | None:
    """The dtype of a model's (first) input, as Keras names it (``float32``, ``string``); None when unknown."""
    inputs = getattr(model, "inputs", None)
    return str(inputs[0].dtype) if inputs else None


def _sample_dtype(dataset) -> str:
    element = dataset.element_spec
    return (element[0] if isinstance(element, tuple) else element).dtype.name


def check_data_dtype(expected: str | None, received: str, label: str) -> None:
    """Text samples feed a string input only, and numbers a numeric one: DataShapeError otherwise."""
    if expected is None or (expected == "string") == (received == "string"):
        return
    if received == "string":
        raise DataShapeError(
            f"{label}: samples are text, but the model takes {expected} numbers",
            hint="start the spec's layers with `- Input: {shape: [1], dtype: string}` and a text layer "
            "such as TextVectorization",
        )
    raise DataShapeError(
        f"{label}: samples are {received} numbers, but the model takes text (a string input)",
        hint="give text: a folder of .txt files, a .txt file of one sample per line, or a CSV `text:` column",
    )
