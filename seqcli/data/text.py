"""Text sources: a folder of ``.txt`` files with one subfolder per class (as
``keras.utils.text_dataset_from_directory`` reads it: one file is one sample), and a ``.txt`` file of one
sample per line (for ``seq predict``). Samples are UTF-8 strings, held once in memory and batched as
``tf.string`` tensors of shape ``(batch, 1)`` (``(batch,)`` for a model whose input has shape ``[]``).

Every file these readers (and the CSV reader) open goes through :func:`open_data_file`: a regular file
(seq's door, :func:`seqcli.inputs.open_input`), at most the memory budget. A text folder's sizes are added
up (:data:`TEXT_OVERHEAD` per sample on top) and checked against the budget before one byte is read. Its
class folders and files must resolve inside the folder or a folder the spec may read. Errors name the file
and line, never the text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from seqcli.budget import human_size, max_memory, over_budget_hint
from seqcli.data.arrays import Arrays, DataError, as_written, class_folders, files_under
from seqcli.inputs import BUDGET, UNREADABLE_HINT, open_input

if TYPE_CHECKING:  # annotations only: TensorFlow comes from seqcli.keras_env, the format table reads this
    import tensorflow as tf  # noqa: TID251

    from seqcli.data.formats import Opening

TEXT_OVERHEAD = 96  # bytes per sample besides its text: a numpy object slot, a bytes header, a tf.string cell
UTF8_HINT = "save the file as UTF-8, or convert it, e.g. iconv -f latin1 -t utf-8"


class Texts(Arrays):
    """Samples that are strings: ``x`` an object array of UTF-8 ``bytes``, ``(count, 1)`` or ``(count,)``."""

    def batch_bytes(self, count: int) -> int:
        """Bytes ``count`` samples take in batches: their mean text length plus :data:`TEXT_OVERHEAD` each."""
        mean = sum(len(text) for text in self.x.reshape(-1)) / max(self.count, 1)
        return int(count * (mean + TEXT_OVERHEAD))

    def float_x(self) -> np.ndarray:
        raise DataError("text samples are strings, not numbers", hint="give the model a string input")

    def pipeline(self, positions: tf.data.Dataset, order, batch_size: int, labels: bool) -> tf.data.Dataset:
        """Batches of the strings at ``order(positions)``, as they are stored (no cast, no scale)."""
        from seqcli.keras_env import import_tensorflow

        tf = import_tensorflow()
        x, y, _ = self.tensors()  # text sources carry no sample weights

        def gather(batch_positions):
            indices = order(batch_positions)
            xb = tf.gather(x, indices)
            return (xb, tf.gather(y, indices)) if labels else xb

        return positions.batch(batch_size).map(as_written(gather), num_parallel_calls=tf.data.AUTOTUNE)


def as_texts(samples: list[bytes], labels: np.ndarray | None, class_names, input_shape: tuple | None) -> Texts:
    """A :class:`Texts` shaped for a model taking ``input_shape``: ``(count,)`` for ``[]``, else ``(count, 1)``."""
    x: np.ndarray = np.empty(len(samples), dtype=object)
    x[:] = samples
    if input_shape is None or len(input_shape) != 0:
        x = x.reshape(-1, 1)
    return Texts(x, labels, None, class_names)


# ----------------------------------------------------------------------------- the one open function


def open_data_file(path: str | Path, where: str, *, roots: list[Path] | None = None, whole: bool = True) -> IO[bytes]:
    """``path`` opened for binary reading through seq's one door (:func:`seqcli.inputs.open_input`): confined
    to ``roots`` (None: not confined), a regular file, of at most the memory budget when it is read
    ``whole`` (a streamed file is priced as it is read). The one place the text and CSV readers open a
    file; a refusal is a LimitError, an unreadable file a DataError."""
    try:
        return open_input(path, where, roots=roots, limit=BUDGET if whole else None, origin="the data folder")
    except OSError as error:
        raise DataError(f"{where}: cannot read {path}: {error.strerror or error}", hint=UNREADABLE_HINT) from error


def read_text(path: str | Path, where: str, roots: list[Path] | None = None) -> bytes:
    """The whole file, checked to be UTF-8 (a leading byte-order mark dropped); a bad byte is a DataError
    naming the file, line and column."""
    with open_data_file(path, where, roots=roots) as handle:
        data = handle.read()
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataError(f"{where}: {path}:{line}: not UTF-8 text (column {column})", hint=UTF8_HINT) from error
    return data


# ----------------------------------------------------------------------------- readers


def open_text(opening: Opening) -> Texts:
    """A text source: a folder of class subfolders of files its format's suffixes name, or a file of lines."""
    if opening.path.is_dir():
        extensions = opening.fmt.member_suffixes
        return read_text_folder(opening.path, opening.roots, opening.where, opening.input_shape, extensions)
    return read_lines(opening.path, opening.where, opening.input_shape)


def read_lines(path: Path, where: str, input_shape: tuple | None = None) -> Texts:
    """A text file of one sample per line (``\\n`` or ``\\r\\n``; an empty line is an empty sample, a final
    newline ends the last line). No labels."""
    data = read_text(path, where)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    samples = [line.removesuffix(b"\r") for line in lines]
    check_budget([len(data)], len(samples), path, where)
    return as_texts(samples, None, None, input_shape)


def read_text_folder(
    directory: Path,
    roots: list[Path],
    where: str,
    input_shape: tuple | None,
    extensions: tuple[str, ...],
) -> Texts:
    """A folder with one subfolder per class (sorted names are the classes) of files ending in ``extensions``
    (``.txt``), one per sample.
    Its class folders and files resolve inside the folder itself or ``roots``."""
    roots = [directory.resolve(), *roots]
    class_dirs = class_folders(directory, "text", where, roots, example="neg/001.txt, pos/002.txt")
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for path in files_under(class_dir, extensions):
            paths.append(path)
            labels.append(label)
    if not paths:
        raise DataError(
            f"{where}: text directory {directory} has no .txt files in its subfolders "
            f"({', '.join(d.name for d in class_dirs)})",
            hint="put one sample per .txt file, in one subfolder per class",
        )
    check_budget([os.stat(path).st_size for path in paths], len(paths), directory, where)
    samples = [read_text(path, where, roots) for path in paths]
    return as_texts(samples, np.array(labels, dtype=np.int64), [d.name for d in class_dirs], input_shape)


def check_budget(sizes: list[int], count: int, path: Path, where: str) -> None:
    """Refuse text of ``sizes`` bytes in ``count`` samples that would not fit the memory budget."""
    total = sum(sizes) + count * TEXT_OVERHEAD
    if total > max_memory():
        raise DataError(
            f"{where}: the text in {path} would take {human_size(total)} in memory, over the memory limit",
            hint=over_budget_hint(),
        )
