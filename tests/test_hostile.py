"""The hostile corpus: what a careless or hostile user gives seq, one row per case, across six classes:
outputs and overwrite, confined paths and secrets, bounded memory and time, one writer, numbers, messages.

Every case runs in a fresh project folder (the tiny project, a secret beside it, a trained run) and asserts
the exit status, the words and position of the error, that no traceback or secret appears, and that nothing
on disk changed (sizes, mtimes and hashes of every file, in the project and in the run). Cases about size also
run together in one subprocess under an address-space limit and a timeout (test_size_cases_stay_bounded).
A case found before its fix lands is marked ``pytest.mark.xfail(strict=True)``: the fix removes the mark."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from tests.conftest import snapshot, write_tiny_project

SECRET = "TOPSECRETCORPUSVALUE"
# What no output of seq may hold: a control character but line breaks and tabs (an escape sequence drives the
# terminal, a carriage return overwrites a line), a lone surrogate, or a mark that reorders text.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Case:
    args: list[str]
    status: int = 1
    expect: tuple[str, ...] = ()
    files: dict = field(default_factory=dict)  # name -> text, bytes, or a function of the project folder
    changes: bool = False  # the command is meant to write (status 0 cases); else the tree must not change
    marks: tuple = ()


# ----------------------------------------------------------------------------- file makers


def keras_model(layers):
    """A .keras file of the Sequential model of ``layers(keras)``."""

    def make(path: Path):
        import keras

        keras.Sequential(layers(keras)).save(path)

    return make


def npz(**arrays):
    def make(path: Path):
        np.savez(path, **arrays)

    return make


def npy(array):
    def make(path: Path):
        np.save(path, array)

    return make


def raw_npy(shape, descr="<f4", body=256):
    def make(path: Path):
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": descr, "fortran_order": False, "shape": shape})
            handle.write(bytes(body))

    return make


def forged_npz(size):
    def make(path: Path):
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("x.npy", b"\0" * 1000)
            archive.filelist[0].file_size = size

    return make


def bomb_npz(megabytes):
    def make(path: Path):
        samples = (megabytes << 20) // 64
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            with archive.open("x.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array_header_1_0(
                    handle, {"descr": "<f4", "fortran_order": False, "shape": (samples, 4, 4, 1)}
                )
                for _ in range(megabytes):
                    handle.write(bytes(1 << 20))
            with archive.open("y.npy", "w") as handle:
                np.lib.format.write_array(handle, np.zeros(samples, np.int64))

    return make


def bad_crc_npz(path: Path):
    np.savez(path, x=np.ones((16, 4, 4, 1), np.float32), y=np.zeros(16, np.int64))
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_deflate_npz(path: Path):
    """An .npz whose x.npy member's deflate stream starts with an invalid block type."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", npy_bytes(np.ones((16, 4, 4, 1), np.float32)))
        archive.writestr("y.npy", npy_bytes(np.zeros(16, np.int64)))
    data = bytearray(path.read_bytes())
    start = 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")  # x.npy comes first
    data[start] = 0xFF  # BFINAL=1, BTYPE=11: a reserved block type
    path.write_bytes(bytes(data))


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def keras_bomb(path: Path):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b" " * (80 << 20))


def keras_config(text: str):
    """A .keras archive whose config.json holds ``text``."""

    def make(path: Path):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.json", "{}")
            archive.writestr("config.json", text)

    return make


not_a_model_keras = keras_config(json.dumps({"class_name": "Dense", "config": {"units": 2}}))


def truncated(keep: int = 300):
    """The trained run's model.keras (the run lies beside the project), cut after ``keep`` bytes."""

    def make(path: Path):
        path.write_bytes((path.parent.parent / "run" / "model.keras").read_bytes()[:keep])

    return make


def tampered_run(metrics: str = "{nope"):
    """A copy of the trained run whose metrics.json holds ``metrics``."""

    def make(path: Path):
        shutil.copytree(path.parent.parent / "run", path)
        (path / "metrics.json").write_text(metrics)

    return make


def sparse_file(size: int):
    def make(path: Path):
        with open(path, "wb") as handle:
            handle.truncate(size)

    return make


def fifo(path: Path):
    os.mkfifo(path)


def link_to(target: str):
    def make(path: Path):
        path.symlink_to(target)

    return make


def with_tune_section(path: Path):
    path.write_text((path.parent / "tiny.yaml").read_text() + "tune: {parameters: {train.epochs: {int: [1, 2]}}}\n")


def folder_with(**files):
    def make(path: Path):
        path.mkdir()
        for name, text in files.items():
            (path / name).write_text(text)

    return make


def extracted(path: Path):
    """A features folder seq extract wrote (its manifest lists what it holds)."""
    result = CliRunner().invoke(cli, ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", str(path)])
    assert result.exit_code == 0, result.output


def copy_of(name: str, **replace: str):
    """A copy of the project's file ``name`` with ``old=new`` replaced in its text (a spec) or as is."""

    def make(path: Path):
        data = (path.parent / name).read_bytes()
        for old, new in replace.items():
            data = data.replace(old.encode(), new.encode())
        path.write_bytes(data)

    return make


def study_with_user_files(path: Path):
    """A study folder as seq tune leaves it (its manifest records trial-0000 by name, and the trial is a run
    with a manifest of its own), with a user's trial-notes.txt and trial-analysis/results.xlsx beside it."""
    from seqcli.manifest import record_members, seal

    path.mkdir()
    shutil.copytree(path.parents[1] / "run", path / "trial-0000")
    record_members(path, ["trial-0000/", "study.db", "trials.csv"], "seq tune")
    (path / "study.db").write_bytes(b"SQLite format 3\x00")
    (path / "trials.csv").write_text("trial,state,value\n0,complete,0.5\n")
    seal(path, "seq tune")
    (path / "trial-notes.txt").write_text("my notes")
    (path / "trial-analysis").mkdir()
    (path / "trial-analysis" / "results.xlsx").write_bytes(b"PK my results")


def forged(manifest: str):
    """A folder of a user's files whose manifest (not seq's) claims more than seq can have written."""

    def make(path: Path):
        from seqcli.outputs import LOCK, MANIFEST

        path.mkdir()
        (path / "notes.txt").write_text("keep me")
        (path / LOCK).write_text("")
        (path / MANIFEST).write_text(manifest)

    return make


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG: its signature and an IHDR chunk that gives its size (8-bit RGB)."""
    return (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
        + width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + b"\x08\x02\0\0\0"
    )


def image_folder(**files):
    """An image folder of classes a and b, each holding ``files`` (name -> bytes, or a maker of the path)."""

    def make(path: Path):
        for label in ("a", "b"):
            (path / label).mkdir(parents=True)
            for name, content in files.items():
                content(path / label / name) if callable(content) else (path / label / name).write_bytes(content)

    return make


def keras_model_with_layer(layer_name: str):
    """A .keras model whose Dense layer is named ``layer_name`` (Keras takes names seq refuses in specs)."""

    def make(path: Path):
        from seqcli.keras_env import import_keras

        keras = import_keras()
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name=layer_name)], name="named")
        model.save(path)

    return make


def run_copy(change=None):
    """A copy of the trained run, changed by ``change(run_folder)``."""

    def make(path: Path):
        shutil.copytree(path.parents[1] / "run", path)
        if change is not None:
            change(path)

    return make


images = image_folder(**{"broken.png": png_header(4, 4) + b" then no image data"})  # its size reads, not its pixels


def linked_class(target: str):
    """An image folder whose class b is a real folder and class a a symbolic link to ``target``."""

    def make(path: Path):
        (path / "b").mkdir(parents=True)
        (path / "b" / "1.png").write_bytes(png_header(4, 4))
        (path / "a").symlink_to(target)

    return make


def linked(member: str):
    """The run's ``member`` folder replaced by a link to a folder outside it."""

    def change(run: Path):
        shutil.rmtree(run / member)
        (run.parent / f"elsewhere-{member}").mkdir()
        (run / member).symlink_to(run.parent / f"elsewhere-{member}")

    return change


def model_linked(run: Path):
    (run / "model.keras").unlink()
    (run / "model.keras").symlink_to("/dev/null")


def lock_link_to_victim(path: Path):
    """A folder whose lock file is a link to a user's file: taking the lock must not write through it."""
    from seqcli.outputs import LOCK

    path.mkdir()
    (path.parent / "victim.txt").write_text("keep me")
    (path / LOCK).symlink_to(path.parent / "victim.txt")


def jpeg_header(width: int, height: int, padding: int = 0) -> bytes:
    """The start of a JPEG: SOI, ``padding`` bytes of APP segments (at most 65,533 each), then SOF0."""
    data = b"\xff\xd8"
    while padding > 0:
        size = min(padding, 65533)
        data += b"\xff\xe1" + (size + 2).to_bytes(2, "big") + bytes(size)
        padding -= size
    return data + b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03" + bytes(9)


def two_feature_model(path: Path):
    """A compiled .keras classifier of two features."""
    from seqcli.keras_env import import_keras

    keras = import_keras()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    model.save(path)


def csv_line(cells: int):
    def make(path: Path):
        with open(path, "w") as handle:
            handle.write("a,b,c,label\n")
            handle.write("1," * cells + "1\n")

    return make


def text_folder(*, link: str | None = None, bad_byte: bool = False, size: int = 0):
    """A text folder (classes a and b, the secret in every file): class b a link to ``link`` when given,
    a.txt with an invalid UTF-8 byte on line 2 with ``bad_byte``, padded to ``size`` bytes."""

    def make(path: Path):
        (path / "a").mkdir(parents=True)
        body = SECRET.encode() + (b"\nok \xff" if bad_byte else b"\n")
        (path / "a" / "1.txt").write_bytes(body + b"x" * max(size - len(body), 0))
        if link is None:
            (path / "b").mkdir()
            (path / "b" / "1.txt").write_text(SECRET)
        else:
            (path / "b").symlink_to(link)

    return make


def keras_layers(count: int, nesting: int = 1, wrapper: str = "TimeDistributed"):
    """A .keras archive (config.json alone, written in memory) of a Sequential model on an input of shape
    (2, ..., 2, 4): ``count`` ReLU layers, each wrapped ``nesting - 1`` times in ``wrapper``."""

    def layer(index: int) -> dict:
        entry = {"module": "keras.layers", "class_name": "ReLU", "config": {"name": f"re_lu_{index}"}}
        for level in range(nesting - 1):
            entry = {
                "module": "keras.layers",
                "class_name": wrapper,
                "config": {"name": f"w{index}_{level}", "layer": entry},
            }
        return entry

    shape = [None] + [2] * (nesting - 1) + [4]
    first = {"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": shape, "name": "in"}}
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "deep", "layers": [first, *map(layer, range(count))]},
    }
    return keras_config(json.dumps(config))


def keras_json_depth(depth: int):
    """A .keras archive whose model config holds a list nested ``depth`` levels deep."""
    return keras_config(
        '{"module": "keras", "class_name": "Sequential", "config": {"name": "x", "layers": '
        + "[" * depth
        + "]" * depth
        + "}}"
    )


def run_with(name: str, content):
    """A copy of the trained run whose file ``name`` holds ``content`` (text, bytes, or a maker of the path)."""

    def make(path: Path):
        shutil.copytree(path.parent.parent / "run", path)
        target = path / name
        if callable(content):
            target.unlink(missing_ok=True)
            content(target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    return make


def one_line(size: int):
    """A text file of one line of ``size`` bytes (the secret first)."""

    def make(path: Path):
        with open(path, "wb") as handle:
            handle.write(SECRET.encode())
            handle.truncate(size)

    return make


TRIALS_CSV = (
    "trial,state,value,layers[1].Dense.units,epochs,seconds,run,note\n"
    "0,complete,0.5,8,1,1.0,trial-0000,\n1,complete,0.4,16,1,1.0,trial-0001,\n"
)
STUDY_JSON = '{"objective": "val_loss", "direction": "minimize", "total": 2}'


def study_with(trials=TRIALS_CSV, study=STUDY_JSON):
    """A study folder as seq tune writes it, with its trials.csv and study.json replaced where given."""

    def make(path: Path):
        path.mkdir()
        for name, content in (("trials.csv", trials), ("study.json", study)):
            if isinstance(content, bytes):
                (path / name).write_bytes(content)
            else:
                (path / name).write_text(content)

    return make


def distinct_labels(count: int):
    """A CSV of two features and a label column of ``count`` distinct class names."""

    def make(path: Path):
        path.write_text("a,b,label\n" + "".join(f"1,2,{SECRET}{index}\n" for index in range(count)))

    return make


def checkpoint_record(record: str):
    """A checkpoint (an .npz) whose record is ``record``."""

    def make(path: Path):
        np.savez(path, meta=np.array(record))

    return make


# ----------------------------------------------------------------------------- specs


def tfrecord(count: int = 16, *, keep: int | None = None, flip: int | None = None):
    """A TFRecord file of ``count`` tf.train.Example records (x: 16 float32, y: int64), cut to ``keep`` bytes
    or with the byte at ``flip`` inverted."""

    def make(path: Path):
        import tensorflow as tf

        with tf.io.TFRecordWriter(str(path)) as writer:
            for index in range(count):
                feature = {
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5] * 16)),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[index % 3])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        data = bytearray(path.read_bytes())
        if flip is not None:
            data[flip] ^= 0xFF
        path.write_bytes(bytes(data[:keep]))

    return make


TFRECORD_SOURCE = "{path: DATA, features: {x: {dtype: float32, shape: [4, 4, 1]}, y: {dtype: int64}}}"


def tfrecord_source(name: str, **replace: str) -> str:
    text = TFRECORD_SOURCE.replace("DATA", name)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


HEAD = "layers:\n  - Input: {shape: [4]}\n"
TRAINABLE = (
    "layers:\n  - Input: {shape: [4, 4, 1]}\n  - Flatten: {}\n  - Dense: {units: 3, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
    "data: {train: DATA, batch_size: 8}\ntrain: {epochs: 1, seed: 1}\n"
)


def layer(text: str) -> str:
    """A spec whose third line (line 3, column 5) is the given layer entry."""
    return HEAD + f"  - {text}\n"


def wrapped(wrapper: str, inner: str, times: int) -> str:
    """A layer entry's text: ``inner`` wrapped ``times`` times in ``wrapper``."""
    text = inner
    for _ in range(times):
        text = f"{wrapper}: {{layer: {{{text}}}}}"
    return text


def trainable(data: str = "tiny.npz", **replace: str) -> str:
    text = TRAINABLE.replace("DATA", data)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def check(spec_text: str, *expect: str, status: int = 1, marks=(), **files) -> Case:
    return Case(["check", "bad.yaml"], status, expect, {"bad.yaml": spec_text, **files}, marks=marks)


def train(spec_text: str, *expect: str, extra=(), marks=(), **files) -> Case:
    return Case(
        ["train", "bad.yaml", "--output", "out", "--quiet", *extra],
        1,
        expect,
        {"bad.yaml": spec_text, **files},
        marks=marks,
    )


CONFINED = "a spec reads files inside its own folder only"

# ----------------------------------------------------------------------------- 1. outputs and overwrite

OUTPUTS = {
    "import --overwrite onto a file of a run": Case(
        ["import", "{run}/model.keras", "--output", "{run}/spec.yaml", "--overwrite"],
        1,
        ("--output {run}/spec.yaml is a file of {run}, which seq train wrote",),
    ),
    "train into a folder of user files": Case(
        ["train", "tiny.yaml", "--output", "mine"],
        1,
        ("mine",),
        {"mine": folder_with(**{"spec.yaml": "x", "notes": "y"})},
    ),
    "train --overwrite over user files": Case(
        ["train", "tiny.yaml", "--output", "mine", "--overwrite"], 1, ("notes",), {"mine": folder_with(notes="keep me")}
    ),
    "train --output .": Case(["train", "tiny.yaml", "--output", "."], 1, ("current folder",)),
    "train --output /": Case(["train", "tiny.yaml", "--output", "/"], 1, ("/",)),
    "train --output ~": Case(["train", "tiny.yaml", "--output", "~home"], 1, ("home",)),
    "train --output the spec's folder": Case(["train", "tiny.yaml", "--output", "{project}"], 1, ()),
    "train --output the spec file": Case(["train", "tiny.yaml", "--output", "tiny.yaml"], 2, ()),
    "train --output the data file": Case(["train", "tiny.yaml", "--output", "tiny.npz"], 2, ()),
    "train --output a file's child": Case(["train", "tiny.yaml", "--output", "tiny.npz/run"], 1, ("tiny.npz",)),
    "train over a finished run": Case(
        ["train", "tiny.yaml", "--output", "{run}"], 1, ("already holds a run", "--overwrite")
    ),
    "extract over its own features": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "features"],
        1,
        ("exists", "--overwrite"),
        {"features": extracted},
    ),
    "train --resume with nothing": Case(["train", "tiny.yaml", "--output", "none", "--resume"], 1, ("none",)),
    "predict over its data": Case(["predict", "{run}", "--data", "x.npy", "--output", "x.npy"], 1, ("x.npy",)),
    "predict over an existing file": Case(
        ["predict", "{run}", "--data", "x.npy", "--output", "notes.txt"], 1, ("notes.txt",), {"notes.txt": "mine"}
    ),
    "predict into the run": Case(["predict", "{run}", "--data", "x.npy", "--output", "{run}/model.keras"], 1, ()),
    "extract over its data": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "x.npy"], 1, ("x.npy",)
    ),
    "extract over a folder of user files": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "mine"],
        1,
        ("mine",),
        {"mine": folder_with(a="1")},
    ),
    "extract --overwrite over user files": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "mine", "--overwrite"],
        1,
        ("a",),
        {"mine": folder_with(a="1")},
    ),
    "extract --output the spec's folder": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "{project}", "--overwrite"], 1, ()
    ),
    "freeze over its source": Case(
        ["freeze", "{run}/model.keras", "--all-but-last", "1", "--output", "{run}/model.keras", "--overwrite"],
        1,
        ("model.keras",),
    ),
    "freeze over an existing file": Case(
        ["freeze", "tiny.yaml", "--all-but-last", "1", "--output", "f.keras"], 1, ("f.keras",), {"f.keras": "mine"}
    ),
    "import over an existing file": Case(
        ["import", "{run}/model.keras", "--output", "notes.txt"], 1, ("notes.txt",), {"notes.txt": "mine"}
    ),
    "plot over an existing file": Case(["plot", "tiny.yaml", "--output", "p.png"], 1, ("p.png",), {"p.png": b"mine"}),
    "init over an existing file": Case(["init", "mlp", "tiny.yaml"], 1, ("tiny.yaml",)),
    "export over an existing file": Case(
        ["export", "{run}", "--output", "m.tflite"], 1, ("m.tflite",), {"m.tflite": b"mine"}
    ),
    "transfer into a folder of user files": Case(
        ["transfer", "tiny.yaml", "--output", "mine", "--weights", "{run}/model.keras"],
        1,
        ("mine",),
        {"mine": folder_with(notes="x")},
    ),
    "train --overwrite over a study with a user's trial-* files": Case(
        ["train", "tiny.yaml", "--output", "study", "--overwrite"],
        1,
        ("cannot overwrite study: it holds trial-analysis/, trial-notes.txt that seq did not write", "nothing"),
        {"study": study_with_user_files},
    ),
    "export saved_model --overwrite over a study with a user's trial-* files": Case(
        ["export", "{run}", "--to", "saved_model", "--output", "study", "--overwrite"],
        1,
        ("trial-analysis/, trial-notes.txt that seq did not write; nothing was removed",),
        {"study": study_with_user_files},
    ),
    "extract --overwrite over a study with a user's trial-* files": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "study", "--overwrite"],
        1,
        ("trial-analysis/, trial-notes.txt that seq did not write",),
        {"study": study_with_user_files},
    ),
    "train --overwrite: a forged manifest claims *": Case(
        ["train", "tiny.yaml", "--output", "mine", "--overwrite"],
        1,
        ("cannot trust mine/.seq-run.json: '*' is a pattern, not an exact path; nothing was removed",),
        {"mine": forged('{"format": 2, "members": {"*": {"kind": "file"}}}')},
    ),
    "train --overwrite: a manifest of patterns, as an earlier seq wrote": Case(
        ["train", "tiny.yaml", "--output", "mine", "--overwrite"],
        1,
        ("lists members by pattern, as an earlier seq wrote it",),
        {"mine": forged('{"written_by": "seq train", "members": ["*"]}')},
    ),
    "export --overwrite: a forged manifest claims the lock file": Case(
        ["export", "{run}", "--to", "saved_model", "--output", "mine", "--overwrite"],
        1,
        ("'.seq-lock' is one of seq's own working files",),
        {"mine": forged('{"format": 2, "members": {".seq-lock": {"kind": "file"}}}')},
    ),
    "extract --overwrite: a forged manifest claims ..": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "mine", "--overwrite"],
        1,
        ("'../tiny.yaml' is not a plain path below the folder",),
        {"mine": forged('{"format": 2, "members": {"../tiny.yaml": {"kind": "file"}}}')},
    ),
    "transfer --overwrite: a forged manifest claims an absolute path": Case(
        ["transfer", "tiny.yaml", "--output", "mine", "--weights", "{run}/model.keras", "--overwrite"],
        1,
        ("is not a relative path",),
        {"mine": forged('{"format": 2, "members": {"/etc/passwd": {"kind": "file"}}}')},
    ),
    "train --overwrite: a forged manifest claims the user's file": Case(
        ["train", "tiny.yaml", "--output", "mine", "--overwrite"],
        1,
        ("notes.txt changed since seq wrote it",),
        {"mine": forged('{"format": 2, "members": {"notes.txt": {"kind": "file", "size": 1}}}')},
    ),
    "train --overwrite over a run whose spec.yaml the user edited": Case(
        ["train", "tiny.yaml", "--output", "edited", "--overwrite"],
        1,
        ("cannot overwrite edited: it holds spec.yaml changed since seq wrote it; nothing was removed",),
        {"edited": run_copy(lambda run: (run / "spec.yaml").write_text("# my own spec now\n"))},
    ),
    "train --overwrite over a run whose model is a link": Case(
        ["train", "tiny.yaml", "--output", "edited", "--overwrite"],
        1,
        ("holds the symbolic link model.keras",),
        {
            "edited": run_copy(
                lambda run: [(run / "model.keras").unlink(), (run / "model.keras").symlink_to("/dev/null")]
            )
        },
    ),
    "train --resume in a run whose logs/ is a link": Case(
        ["train", "tiny.yaml", "--output", "linked", "--resume", "--epochs", "2"],
        1,
        ("linked holds the symbolic link logs; seq writes inside its folders, never through a link",),
        {"linked": run_copy(linked("logs"))},
    ),
    "train --overwrite in a run whose checkpoints/ is a link": Case(
        ["train", "tiny.yaml", "--output", "linked", "--overwrite"],
        1,
        ("holds the symbolic link checkpoints",),
        {"linked": run_copy(linked("checkpoints"))},
    ),
    "train into a folder whose lock file is a link": Case(
        ["train", "tiny.yaml", "--output", "mine"],
        1,
        ("mine holds the symbolic link .seq-lock",),
        {"mine": lock_link_to_victim},
    ),
    "export --output the run's own spec.yaml": Case(
        ["export", "{run}", "--format", "tflite", "--output", "{run}/spec.yaml", "--overwrite"],
        1,
        ("is inside the input folder",),
    ),
    "export --output the run folder itself": Case(
        ["export", "{run}", "--to", "saved_model", "--output", "{run}", "--overwrite"],
        1,
        ("is an input of this command",),
    ),
    "export tflite where a folder is": Case(
        ["export", "{run}", "--output", "m.tflite", "--overwrite"],
        1,
        ("--output m.tflite is a folder, and this command writes a file there",),
        {"m.tflite": folder_with(a="1")},
    ),
    "export saved_model where a file is": Case(
        ["export", "{run}", "--to", "saved_model", "--output", "notes.txt", "--overwrite"],
        1,
        ("--output notes.txt is a file, and this command writes a folder there",),
        {"notes.txt": "mine"},
    ),
    "extract .npz where a folder is": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "f.npz", "--overwrite"],
        1,
        ("--output f.npz is a folder, and this command writes a file there",),
        {"f.npz": folder_with(a="1")},
    ),
    "schema over a seq manifest": Case(
        ["schema", "--output", "mine/.seq-run.json", "--overwrite"],
        1,
        ("one of seq's own working files",),
        {"mine": folder_with(a="1")},
    ),
    "tune into a folder of user files": Case(
        ["tune", "study.yaml", "--output", "mine"],
        1,
        ("mine exists and holds notes that seq did not write",),
        {"mine": folder_with(notes="x"), "study.yaml": with_tune_section},
    ),
}

# ----------------------------------------------------------------------------- 2. confined paths, no echo

CONFINEMENT = {
    "a glob that matches nothing": check(
        trainable("shards/train-*.npz"), "bad.yaml:6:15", "'shards/train-*.npz' matches no file"
    ),
    "a glob that searches outside the spec's folder": check(
        trainable("../outside/*.txt"), "bad.yaml:6:15", "outside the spec's folder", CONFINED
    ),
    "a glob matching a symlink out of the folder": check(
        trainable("shards/*.npz"),
        "bad.yaml:6:15",
        "a symbolic link that leads out",
        **{
            "shards/a.npz": npz(x=np.ones((4, 4, 4, 1), np.float32), y=np.zeros(4)),
            "shards/b.npz": link_to("../../outside/secret.txt"),
        },
    ),
    "a shard list naming a file outside": check(
        trainable("[tiny.npz, ../outside/secret.txt]"), "bad.yaml:6:26", CONFINED
    ),
    "vocabulary /proc/self/environ": check(
        layer("IntegerLookup: {vocabulary: /proc/self/environ}").replace("[4]}", "[1], dtype: int64}"),
        "bad.yaml:3:",
        CONFINED,
    ),
    "vocabulary absolute": check(layer("StringLookup: {vocabulary: {outside}/secret.txt}"), "bad.yaml:3:", CONFINED),
    "vocabulary ..": check(layer("StringLookup: {vocabulary: ../outside/secret.txt}"), "bad.yaml:3:", CONFINED),
    "vocabulary symlink escape": check(
        layer("StringLookup: {vocabulary: link.txt}"),
        "bad.yaml:3:",
        CONFINED,
        **{"link.txt": link_to("../outside/secret.txt")},
    ),
    "vocabulary device": check(layer("StringLookup: {vocabulary: /dev/zero}"), "bad.yaml:3:"),
    "vocabulary FIFO": check(
        layer("StringLookup: {vocabulary: pipe.txt}"), "bad.yaml:3:", "FIFO", **{"pipe.txt": fifo}
    ),
    "vocabulary URL": check(layer("StringLookup: {vocabulary: 'http://example.com/v.txt'}"), "bad.yaml:3:"),
    "vocabulary over the cap": check(
        layer("StringLookup: {vocabulary: big.txt}"),
        "bad.yaml:3:32",
        "over the 64 MiB cap",
        **{"big.txt": sparse_file((64 << 20) + 1)},
    ),
    "TextVectorization vocabulary ..": check(
        layer("TextVectorization: {vocabulary: ../outside/secret.txt}"), "bad.yaml:3:", CONFINED
    ),
    "IntegerLookup vocabulary in /etc": check(
        layer("IntegerLookup: {vocabulary: /etc/passwd}"), "bad.yaml:3:", CONFINED
    ),
    "Model path absolute": check(layer("Model: {path: {outside}/base.keras}"), "bad.yaml:3:", CONFINED),
    "Model path ..": check(layer("Model: {path: ../outside/base.keras}"), "bad.yaml:3:", CONFINED),
    "Model path device": check(layer("Model: {path: /dev/urandom}"), "bad.yaml:3:"),
    "base weights absolute": check(
        "layers:\n  - Input: {shape: [32, 32, 3]}\n  - MobileNetV2: {weights: /etc/w.h5, include_top: false}\n",
        "bad.yaml:3:",
        CONFINED,
    ),
    "data.train absolute": train(trainable("{outside}/secret.txt"), "bad.yaml:", CONFINED),
    "data.train ..": train(trainable("../outside/secret.txt"), "bad.yaml:", CONFINED),
    "data.train symlink escape": train(
        trainable("link.npz"), "bad.yaml:", CONFINED, **{"link.npz": link_to("../outside/secret.txt")}
    ),
    "data.validation ..": train(
        trainable(**{"batch_size: 8": "batch_size: 8, validation: ../outside/v.npz"}), "bad.yaml:", CONFINED
    ),
    "data.train /dev/zero": train(trainable("/dev/zero"), "bad.yaml:"),
    "data.train a FIFO": train(trainable("pipe.npz"), "bad.yaml:", "FIFO", **{"pipe.npz": fifo}),
    "data.train an image folder ..": train(trainable("{path: ../outside, image_size: [4, 4]}"), "bad.yaml:", CONFINED),
    "text folder with a class linked out of the spec folder": train(
        trainable("texts"),
        "bad.yaml:6:",
        "texts/b' is a symbolic link that leads out of the text folder",
        texts=text_folder(link="../../outside"),
    ),
    "text folder with a class linked out, to evaluate": Case(
        ["evaluate", "{run}", "--data", "texts"],
        1,
        ("--data: '{project}/texts/b' is a symbolic link that leads out of the text folder", "--allow-path"),
        {"texts": text_folder(link="../../outside")},
    ),
    "transfer.weights absolute": Case(
        ["transfer", "bad.yaml", "--output", "out"],
        1,
        ("bad.yaml:", CONFINED),
        {"bad.yaml": trainable() + "transfer: {weights: /etc/w.weights.h5}\n"},
    ),
    "vocabulary .. in json": Case(
        ["check", "bad.yaml", "--format", "json"],
        1,
        (CONFINED,),
        {"bad.yaml": layer("StringLookup: {vocabulary: ../outside/secret.txt}")},
    ),
    "vocabulary .. in github": Case(
        ["check", "bad.yaml", "--format", "github"],
        1,
        ("line=3,col=32",),
        {"bad.yaml": layer("StringLookup: {vocabulary: ../outside/secret.txt}")},
    ),
    "vocabulary .. in junit": Case(
        ["check", "bad.yaml", "--format", "junit"],
        1,
        (CONFINED,),
        {"bad.yaml": layer("StringLookup: {vocabulary: ../outside/secret.txt}")},
    ),
    "summary of an escaping vocabulary": Case(
        ["summary", "bad.yaml"],
        1,
        ("bad.yaml:3:", CONFINED),
        {"bad.yaml": layer("StringLookup: {vocabulary: ../outside/s.txt}")},
    ),
    "--set an outside vocabulary (the user's own choice)": Case(
        ["summary", "bad.yaml", "--set", "layers[1].StringLookup.vocabulary={outside}/secret.txt"],
        0,
        (),
        {"bad.yaml": layer("StringLookup: {vocabulary: [a, b]}").replace("[4]}", "[1], dtype: string}")},
    ),
    "secret file as vocabulary inside": check(
        layer("IntegerLookup: {vocabulary: inside.txt}").replace("[4]}", "[1], dtype: int64}"),
        "bad.yaml:3:",
        "is not shown",
        **{"inside.txt": SECRET + "\n"},
    ),
    "secret file as data inside": train(trainable("inside.npz"), "inside.npz", **{"inside.npz": SECRET}),
    "image class folder linked out": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "imgs/a' is a symbolic link that leads out of the image folder",
        **{"imgs": linked_class("../../outside"), "{outside}/1.png": png_header(4, 4)},
    ),
    "image class folder linked out, as --data": Case(
        ["predict", "{run}", "--data", "imgs", "--output", "p.npy"],
        1,
        ("leads out of the image folder",),
        {"imgs": linked_class("../../outside"), "{outside}/1.png": png_header(4, 4)},
    ),
    "image file linked out": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "leads out of the image folder",
        **{"imgs": image_folder(**{"1.png": link_to("../../../outside/secret.txt")})},
    ),
    "image class folder linked inside the spec's folder": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "cannot decode image",
        **{"imgs": linked_class("../more"), "more/1.png": png_header(4, 4)},
    ),
    "a FIFO named pipe.png in an image folder": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "pipe.png is a FIFO (named pipe), not a regular file",
        **{"imgs": image_folder(**{"pipe.png": fifo})},
    ),
    "a device linked into an image folder": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "zero.png' is a symbolic link that leads out of the image folder",
        **{"imgs": image_folder(**{"zero.png": link_to("/dev/zero")})},
    ),
    "image shards: a part's class folder linked out": train(
        trainable("{path: parts/*, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "parts/p2/a' is a symbolic link that leads out of the image folder",
        **{
            "parts/p1": image_folder(**{"1.png": png_header(4, 4)}),
            "parts/p2": linked_class("../../../outside"),
            "{outside}/1.png": png_header(4, 4),
        },
    ),
    "image shards: a glob matching nothing": check(
        trainable("{path: parts/img-*, image_size: [4, 4]}"), "bad.yaml:6:22", "'parts/img-*' matches no file or folder"
    ),
    "image shards: a glob matching a folder linked out": check(
        trainable("{path: parts/*, image_size: [4, 4]}"),
        "bad.yaml:6:22",
        "a symbolic link that leads out of the spec's folder",
        **{"parts/p1": image_folder(**{"1.png": png_header(4, 4)}), "parts/p2": link_to("../../outside")},
    ),
    "spec linked out": Case(
        ["check", "x.yaml"],
        1,
        ("x.yaml", "leads out of the folder it was named in"),
        {"x.yaml": link_to("../outside/secret.txt")},
    ),
    "spec linked out, github": Case(
        ["check", "x.yaml", "--format", "github"], 1, ("x.yaml",), {"x.yaml": link_to("../outside/secret.txt")}
    ),
    "spec linked out, junit": Case(
        ["check", "x.yaml", "--format", "junit"], 1, ("x.yaml",), {"x.yaml": link_to("../outside/secret.txt")}
    ),
    "spec linked out, json": Case(
        ["check", "x.yaml", "--format", "json"], 1, ("leads out",), {"x.yaml": link_to("../outside/secret.txt")}
    ),
    "spec linked out, to summary": Case(
        ["summary", "x.yaml"], 1, ("leads out",), {"x.yaml": link_to("../outside/secret.txt")}
    ),
    "spec linked out, to train": Case(
        ["train", "x.yaml", "--output", "out"], 1, ("leads out",), {"x.yaml": link_to("../outside/secret.txt")}
    ),
    "spec linked out, allowed": Case(
        ["check", "x.yaml", "--allow-path", "{outside}"],
        0,
        (),
        {"{outside}/real.yaml": layer("Dense: {units: 2}"), "x.yaml": link_to("../outside/real.yaml")},
    ),
    "spec linked within its folder": Case(
        ["check", "x.yaml"], 0, (), {"real.yaml": layer("Dense: {units: 2}"), "x.yaml": link_to("real.yaml")}
    ),
    "a FIFO as a spec": Case(["check", "pipe.yaml"], 1, ("pipe.yaml", "FIFO"), {"pipe.yaml": fifo}),
    "--set a vocabulary of /dev/zero": Case(
        ["summary", "bad.yaml", "--set", "layers[1].StringLookup.vocabulary=/dev/zero"],
        1,
        ("character device",),
        {"bad.yaml": layer("StringLookup: {vocabulary: [a, b]}").replace("[4]}", "[1], dtype: string}")},
    ),
    "--set a vocabulary that is a FIFO": Case(
        ["summary", "bad.yaml", "--set", "layers[1].StringLookup.vocabulary=pipe.txt"],
        1,
        ("FIFO",),
        {
            "bad.yaml": layer("StringLookup: {vocabulary: [a, b]}").replace("[4]}", "[1], dtype: string}"),
            "pipe.txt": fifo,
        },
    ),
    "a FIFO as a model to evaluate": Case(
        ["evaluate", "pipe.keras", "--data", "x.npy"], 1, ("pipe.keras is a FIFO",), {"pipe.keras": fifo}
    ),
    "a FIFO as --weights": Case(
        ["extract", "tiny.yaml", "--weights", "p.weights.h5", "--data", "x.npy", "--all", "--output", "f.npz"],
        1,
        ("FIFO",),
        {"p.weights.h5": fifo},
    ),
    "a FIFO as the labels .npy y": train(trainable("{path: x.npy, y: pipe.npy}"), "FIFO", **{"pipe.npy": fifo}),
    "secret file as spec": Case(["check", "inside.yaml"], 1, ("inside.yaml",), {"inside.yaml": SECRET + ": [\n"}),
    "secret file as a .keras": Case(
        ["evaluate", "inside.keras", "--data", "x.npy"], 1, ("inside.keras",), {"inside.keras": SECRET}
    ),
    "secret file as --weights": Case(
        ["extract", "tiny.yaml", "--weights", "inside.weights.h5", "--data", "x.npy", "--all", "--output", "f.npz"],
        1,
        ("inside.weights.h5",),
        {"inside.weights.h5": SECRET},
    ),
}

# ----------------------------------------------------------------------------- 3. bounded memory and time

STRING_LABELS = (
    "layers:\n  - Input: {shape: [2]}\n  - Dense: {units: 3, activation: softmax}\n"
    "compile: {loss: sparse_categorical_crossentropy}\ndata: {train: labels.csv}\n"
)
SIZE = {
    "text file of one huge line over --max-memory": train(
        trainable("huge.txt"),
        "bad.yaml:6:",
        "huge.txt holds 2.00 MB, over the memory limit",
        extra=("--max-memory", "1M"),
        **{"huge.txt": one_line(2 << 20)},
    ),
    "text file of one huge line to predict": Case(
        ["predict", "{run}", "--data", "huge.txt", "--output", "p.csv", "--max-memory", "1M"],
        1,
        ("--data: {project}/huge.txt holds 2.00 MB, over the memory limit", "--max-memory"),
        {"huge.txt": one_line(2 << 20)},
    ),
    "text folder over --max-memory": train(
        trainable("texts"),
        "bad.yaml:6:",
        "the text in {project}/texts would take",
        "over the memory limit",
        extra=("--max-memory", "1M"),
        texts=text_folder(size=(1 << 20) - 100),
    ),
    "CSV label column of very many distinct names": train(
        STRING_LABELS,
        "bad.yaml:5:",
        "labels.csv:10002: the label column holds more than 10,000 distinct class names",
        **{"labels.csv": distinct_labels(10_001)},
    ),
    "npz bomb against --max-memory": train(
        trainable("bomb.npz"),
        "bomb.npz",
        "over the memory limit",
        extra=("--max-memory", "64M"),
        **{"bomb.npz": bomb_npz(96)},
    ),
    "forged member size": Case(
        ["predict", "{run}", "--data", "forged.npz", "--output", "p.npy"],
        1,
        ("member 'x.npy' declares 1.00 TB", "more than deflate can produce"),
        {"forged.npz": forged_npz(1 << 40)},
    ),
    "forged member size, train": train(
        trainable("forged.npz"), "more than deflate can produce", **{"forged.npz": forged_npz(1 << 40)}
    ),
    "npy header of 232 TB": Case(
        ["extract", "tiny.yaml", "--data", "liar.npy", "--all", "--output", "f.npz"],
        1,
        ("liar.npy claims shape (1000000000000, 4, 4, 1)",),
        {"liar.npy": raw_npy((10**12, 4, 4, 1))},
    ),
    "npy header larger than the file": Case(
        ["predict", "{run}", "--data", "liar.npy", "--output", "p.npy"],
        1,
        ("liar.npy claims shape (100000, 4, 4, 1)",),
        {"liar.npy": raw_npy((100000, 4, 4, 1))},
    ),
    "npy header of 2**62 items": Case(
        ["predict", "{run}", "--data", "liar.npy", "--output", "p.npy"],
        1,
        ("liar.npy",),
        {"liar.npy": raw_npy((2**62,), "<f8")},
    ),
    "keras bomb as a base": check(
        layer("Model: {path: bomb.keras}"),
        "bad.yaml:3:5: layers[1].Model: the config.json of {project}/bomb.keras declares 80.00 MB",
        **{"bomb.keras": keras_bomb},
    ),
    "keras bomb as transfer.weights": train(
        trainable() + "transfer: {weights: bomb.keras}\n",
        "bad.yaml:8:21: transfer.weights: {project}/bomb.keras would take 80.00 MB",
        extra=("--max-memory", "32M"),
        **{"bomb.keras": keras_bomb},
    ),
    "keras bomb as --weights": Case(
        [
            "extract",
            "tiny.yaml",
            "--weights",
            "bomb.keras",
            "--data",
            "x.npy",
            "--all",
            "--output",
            "f.npz",
            "--max-memory",
            "32M",
        ],
        1,
        ("bomb.keras",),
        {"bomb.keras": keras_bomb},
    ),
    "keras bomb to evaluate": Case(
        ["evaluate", "bomb.keras", "--data", "x.npy"], 1, ("bomb.keras",), {"bomb.keras": keras_bomb}
    ),
    "keras bomb to import": Case(["import", "bomb.keras"], 1, ("bomb.keras",), {"bomb.keras": keras_bomb}),
    "csv over the budget": train(
        trainable("big.csv").replace("[4, 4, 1]", "[3]").replace("  - Flatten: {}\n", ""),
        "big.csv holds more than 200.00 KB",
        extra=("--max-memory", "200K"),
        **{"big.csv": "a,b,c,label\n" + "1,2,3,0\n" * 40000},
    ),
    "csv of the wrong width": train(
        trainable("t.csv").replace("[4, 4, 1]", "[5]").replace("  - Flatten: {}\n", ""),
        "bad.yaml:2:20",
        "have shape (3,)",
        **{"t.csv": "a,b,c,l\n1,2,3,0\nx,y,z,q\n"},
    ),
    "FIFO as --data": Case(
        ["predict", "{run}", "--data", "pipe.npy", "--output", "p.npy"], 1, ("FIFO",), {"pipe.npy": fifo}
    ),
    "/dev/zero as --data": Case(
        ["predict", "{run}", "--data", "/dev/zero", "--output", "p.npy"], 1, ("character device",)
    ),
    "/dev/urandom as --data": Case(
        ["extract", "tiny.yaml", "--data", "/dev/urandom", "--all", "--output", "f.npz"], 1, ("character device",)
    ),
    "a folder as --data .npy": Case(
        ["predict", "{run}", "--data", "dir.npy", "--output", "p.npy"], 1, ("dir.npy",), {"dir.npy": folder_with(a="1")}
    ),
    "3M-unit Dense to train": train(
        trainable(**{"units: 3,": "units: 3000000,"}),
        "needs about",
        "over the memory limit",
        extra=("--max-memory", "100M"),
    ),
    "3M-unit Dense to extract": Case(
        ["extract", "big.yaml", "--data", "x.npy", "--all", "--output", "f.npz", "--max-memory", "100M"],
        1,
        ("extracting with this model needs about",),
        {"big.yaml": trainable(**{"units: 3,": "units: 3000000,"})},
    ),
    "3M-unit Dense to freeze": Case(
        ["freeze", "big.yaml", "--all-but-last", "1", "--output", "f.keras", "--max-memory", "100M"],
        1,
        ("freezing this model needs about",),
        {"big.yaml": trainable(**{"units: 3,": "units: 3000000,"})},
    ),
    "huge Input on small data": train(
        trainable().replace("[4, 4, 1]", "[100000, 100000, 3]"), "bad.yaml:2:20", "have shape (4, 4, 1)"
    ),
    "huge image_size": train(
        trainable("{path: imgs, image_size: [20000, 20000]}").replace("[4, 4, 1]", "[20000, 20000, 3]"),
        "needs about",
        **{"imgs": images},
    ),
    "predict over a tiny budget": Case(
        ["predict", "{run}", "--data", "x.npy", "--output", "p.npy", "--max-memory", "1K"], 1, ("(--max-memory)",)
    ),
    "predict with a huge batch": Case(
        ["predict", "{run}", "--data", "x.npy", "--output", "p.npy", "--max-memory", "30K", "--batch-size", "100000"],
        1,
        ("needs about",),
    ),
    "evaluate over a tiny budget": Case(
        ["evaluate", "{run}", "--data", "tiny.npz", "--max-memory", "1K"], 1, ("(--max-memory)",)
    ),
    "--max-memory not a size": Case(
        ["train", "tiny.yaml", "--output", "out", "--max-memory", "lots"], 2, ("expected a size such as 8G",)
    ),
    "--max-memory zero": Case(["train", "tiny.yaml", "--output", "out", "--max-memory", "0"], 2, ("size",)),
    "spec over 1 MB": Case(["check", "big.yaml"], 1, ("big.yaml",), {"big.yaml": HEAD + "#" * (1 << 20) + "\n"}),
    "alias bomb": Case(
        ["check", "bad.yaml"],
        1,
        ("bad.yaml:",),
        {
            "bad.yaml": "a: &a [x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
            + HEAD
        },
    ),
    "nesting 100 deep": Case(
        ["check", "bad.yaml"], 1, ("bad.yaml:",), {"bad.yaml": HEAD + "x: " + "[" * 100 + "]" * 100 + "\n"}
    ),
    "a spec of 3,000 layers": check(
        HEAD + "  - ReLU: {}\n" * 3000, "bad.yaml:2002:5: layers[2000]: the spec holds more than 2,000 layers"
    ),
    "a spec of 2,000 layers in wrappers": check(
        HEAD.replace("[4]", "[2, 4]") + "  - TimeDistributed: {layer: {ReLU: {}}}\n" * 1000,
        "bad.yaml:1002:",
        "layers[1000].TimeDistributed.layer: the spec holds more than 2,000 layers",
    ),
    "a spec of TimeDistributed 17 deep": check(
        layer(wrapped("TimeDistributed", "Dense: {units: 2}", 17)).replace("[4]", "[" + "1, " * 17 + "4]"),
        "bad.yaml:3:",
        "layers nest in layers more than 16 levels deep here",
    ),
    "a spec of Bidirectional 30 deep": check(
        layer(wrapped("Bidirectional", "LSTM: {units: 2}", 30)).replace("[4]", "[3, 2]"),
        "bad.yaml:3:",
        "more than 16 levels deep",
    ),
    "a .keras of 10,000 layers to import": Case(
        ["import", "deep.keras"], 1, ("deep.keras holds more than 2,000 layers",), {"deep.keras": keras_layers(10_000)}
    ),
    "a .keras of 2,100 layers to evaluate": Case(
        ["evaluate", "deep.keras", "--data", "x.npy"],
        1,
        ("more than 2,000 layers",),
        {"deep.keras": keras_layers(2100)},
    ),
    "a .keras of 1,000 layers in wrappers to freeze": Case(
        ["freeze", "deep.keras", "--all-but-last", "1", "--output", "f.keras"],
        1,
        ("deep.keras holds more than 2,000 layers",),
        {"deep.keras": keras_layers(1000, nesting=3)},
    ),
    "a .keras of TimeDistributed 30 deep to import": Case(
        ["import", "deep.keras"],
        1,
        ("deep.keras nests layers in layers more than 16 levels deep",),
        {"deep.keras": keras_layers(1, nesting=30)},
    ),
    "a .keras of Bidirectional 20 deep as a base": check(
        layer("Model: {path: deep.keras}"),
        "bad.yaml:3:5: layers[1].Model: the config.json of {project}/deep.keras nests layers in layers",
        **{"deep.keras": keras_layers(1, nesting=20, wrapper="Bidirectional")},
    ),
    "a .keras config nested 200,000 deep": Case(
        ["import", "deep.keras"],
        1,
        ("deep.keras nests JSON more than 100 levels deep",),
        {"deep.keras": keras_json_depth(200_000)},
    ),
    "a .keras config nested 150 deep to predict": Case(
        ["predict", "deep.keras", "--data", "x.npy", "--output", "p.npy"],
        1,
        ("deep.keras nests JSON more than 100 levels deep",),
        {"deep.keras": keras_json_depth(150)},
    ),
    "a history.csv of 200 columns to plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        0,
        ("Wrote the curves (the first 12 of 200 quantities)",),
        {
            "tamp": run_with(
                "history.csv", "epoch," + ",".join(f"m{i}" for i in range(200)) + "\n1" + ",0.5" * 200 + "\n"
            )
        },
        changes=True,
    ),
    "--workers 100000": Case(
        ["tune", "study.yaml", "--workers", "100000"],
        1,
        ("--workers 100000 is more than this machine can use",),
        {"study.yaml": with_tune_section},
    ),
    "--workers past the trials": Case(
        ["tune", "study.yaml", "--trials", "1", "--workers", "2"],
        1,
        ("--workers 2 is more than",),
        {"study.yaml": with_tune_section},
    ),
    "four 16000x16000 PNGs against --max-memory 500M": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "is 16000x16000 pixels: decoding it takes about 3.58 GB",
        extra=("--max-memory", "500M"),
        **{"imgs": image_folder(**{"1.png": png_header(16000, 16000), "2.png": png_header(16000, 16000)})},
    ),
    "a 60000x60000 JPEG behind 200 KB of segments": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "is 60000x60000 pixels",
        extra=("--max-memory", "500M"),
        **{"imgs": image_folder(**{"1.jpg": jpeg_header(60000, 60000, padding=200_000)})},
    ),
    "a CSV line of 3 million cells against --max-memory 64M": train(
        trainable("big.csv").replace("[4, 4, 1]", "[3]").replace("  - Flatten: {}\n", ""),
        "big.csv:2: line is longer than 1.00 MB",
        extra=("--max-memory", "64M"),
        **{"big.csv": csv_line(3_000_000)},
    ),
    "a CSV header of a million columns": Case(
        ["extract", "tiny.yaml", "--data", "wide.csv", "--all", "--output", "f.npz", "--max-memory", "64M"],
        1,
        ("wide.csv:1: line is longer than",),
        {"wide.csv": ",".join(["c"] * 1_000_000) + "\n1\n"},
    ),
    "npz ZIP64 member over the budget": Case(
        ["extract", "tiny.yaml", "--data", "bomb.npz", "--all", "--output", "f.npz", "--max-memory", "32M"],
        1,
        ("bomb.npz", "(--max-memory)"),
        {"bomb.npz": bomb_npz(48)},
    ),
}
SIZE_CASES = set(SIZE)

# ----------------------------------------------------------------------------- 4. one writer

BUSY = 3  # ExitStatus.ENVIRONMENT: another process holds the output, nothing is wrong with the input
WRITER = {
    "train while another train holds the run": Case(
        ["train", "tiny.yaml", "--output", "locked", "--quiet"],
        BUSY,
        ("locked is in use: another seq process is writing it",),
    ),
    "train --resume while locked": Case(
        ["train", "tiny.yaml", "--output", "locked", "--resume", "--quiet"],
        BUSY,
        ("is in use",),
        files={"locked/checkpoints/last.npz": b"the run being written holds a checkpoint"},
    ),
    "train --overwrite while locked": Case(
        ["train", "tiny.yaml", "--output", "locked", "--overwrite", "--quiet"], BUSY, ("is in use",)
    ),
    "transfer while locked": Case(
        ["transfer", "tiny.yaml", "--output", "locked", "--weights", "{run}/model.keras", "--quiet"],
        BUSY,
        ("is in use",),
    ),
    "tune while locked": Case(
        ["tune", "study.yaml", "--output", "locked"], BUSY, ("locked is in use",), {"study.yaml": with_tune_section}
    ),
    "export saved_model --overwrite while locked": Case(
        ["export", "{run}", "--to", "saved_model", "--output", "locked", "--overwrite"], BUSY, ("locked is in use",)
    ),
    "export tflite into a locked folder": Case(
        ["export", "{run}", "--output", "locked/m.tflite"], BUSY, ("locked is in use",)
    ),
    "extract while locked": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "locked", "--overwrite"],
        BUSY,
        ("locked is in use",),
    ),
    "extract .npz into a locked folder": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "locked/f.npz"], BUSY, ("locked is in use",)
    ),
    "predict into a locked folder": Case(
        ["predict", "{run}", "--data", "x.npy", "--output", "locked/p.npy"], BUSY, ("locked is in use",)
    ),
    "freeze into a locked folder": Case(
        ["freeze", "tiny.yaml", "--all-but-last", "1", "--output", "locked/f.keras"], BUSY, ("locked is in use",)
    ),
    "plot into a locked folder": Case(["plot", "tiny.yaml", "--output", "locked/p.png"], BUSY, ("locked is in use",)),
    "import into a locked folder": Case(
        ["import", "{run}/model.keras", "--output", "locked/s.yaml"], BUSY, ("locked is in use",)
    ),
    "import weights into a locked folder": Case(
        ["import", "{run}/model.keras", "--weights-out", "locked/w.weights.h5"], BUSY, ("locked is in use",)
    ),
    "init into a locked folder": Case(["init", "mlp", "locked/x.yaml"], BUSY, ("locked is in use",)),
    "schema into a locked folder": Case(["schema", "--output", "locked/s.json"], BUSY, ("locked is in use",)),
}
# The commands that write nothing: every other command is a writer, with a case above that meets the lock.
READ_ONLY = {"summary", "check", "evaluate"}

# ----------------------------------------------------------------------------- 5. numbers

NAN_X = np.ones((16, 4, 4, 1), np.float32)
NAN_X[5, 1, 1, 0] = np.nan
INF_X = np.ones((16, 4, 4, 1), np.float32)
INF_X[2, 0, 0, 0] = np.inf
NAN_SHARD = np.ones((8000, 4, 4, 1), np.float32)
NAN_SHARD[7000, 2, 1, 0] = np.nan
LABELS = np.zeros(16, np.int64)
NUMBERS = {
    "a shard of another shape": train(
        trainable("shards/*.npz"),
        "shards/b.npz holds samples of shape (4, 4, 2)",
        "the first shard",
        **{
            "shards/a.npz": npz(x=np.ones((4, 4, 4, 1), np.float32), y=np.zeros(4, np.int64)),
            "shards/b.npz": npz(x=np.ones((4, 4, 4, 2), np.float32), y=np.zeros(4, np.int64)),
        },
    ),
    "a TFRecord description of the wrong dtype": train(
        trainable(tfrecord_source("r.tfrecord", **{"y: {dtype: int64}": "y: {dtype: float32}"})),
        "record 1 of",
        "r.tfrecord does not match the features description",
        **{"r.tfrecord": tfrecord()},
    ),
    "a TFRecord description of the wrong shape": train(
        trainable(tfrecord_source("r.tfrecord")).replace("[4, 4, 1]", "[4, 4, 2]"),
        "record 1 of",
        "does not match the features description",
        **{"r.tfrecord": tfrecord()},
    ),
    "a TFRecord dtype misspelled": check(
        trainable(tfrecord_source("r.tfrecord", **{"y: {dtype: int64}": "y: {dtype: int46}"})),
        "bad.yaml:6:",
        "did you mean 'int64'?",
        **{"r.tfrecord": tfrecord()},
    ),
    "a TFRecord x naming no described feature": check(
        trainable(tfrecord_source("r.tfrecord", **{"{x: {dtype": "{image: {dtype"})),
        "bad.yaml:6:",
        "x: 'x' is not among the described features",
        **{"r.tfrecord": tfrecord()},
    ),
    "a truncated TFRecord": train(
        trainable(tfrecord_source("r.tfrecord")),
        "record 16 of",
        "r.tfrecord is truncated",
        **{"r.tfrecord": tfrecord(keep=-5)},
    ),
    "a corrupted TFRecord record": train(
        trainable(tfrecord_source("r.tfrecord")),
        "record 3 of",
        "r.tfrecord is damaged",
        **{"r.tfrecord": tfrecord(flip=2 * 109 + 40)},
    ),
    "a corrupted TFRecord record, parsed once for two epochs": train(
        trainable(tfrecord_source("r.tfrecord")).replace("epochs: 1", "epochs: 2"),
        "record 3 of",
        "r.tfrecord is damaged",
        **{"r.tfrecord": tfrecord(flip=2 * 109 + 40)},
    ),
    "a fraction of a one-file stream": train(
        trainable(tfrecord_source("r.tfrecord")).replace("batch_size: 8", "batch_size: 8, validation: 0.2"),
        "a streamed source is split off by file, and its 1 file(s) leave no samples for training",
        "split the data into more files",
        **{"r.tfrecord": tfrecord()},
    ),
    "a stratified fraction of a stream": train(
        trainable("[tiny.npz, tiny.npz]").replace(
            "batch_size: 8", "batch_size: 8, validation: {fraction: 0.5, stratify: true}"
        ),
        "a streamed source is split by file",
        "set stratify: false",
    ),
    "a NaN pixel": train(trainable("nan.npz"), "nan.npz", "sample 5", **{"nan.npz": npz(x=NAN_X, y=LABELS)}),
    # Shards too large for four to be read whole under 8M: read a chunk at a time, each chunk by position.
    "a NaN in a shard read a chunk at a time": train(
        trainable("shards/*.npz").replace("batch_size: 8", "batch_size: 512"),
        "shards/b.npz",
        "sample 7000",
        extra=("--max-memory", "8M"),
        marks=(pytest.mark.slow,),  # 16,000 samples to train on before the NaN
        **{
            "shards/a.npz": npz(x=np.ones((8000, 4, 4, 1), np.float32), y=np.zeros(8000, np.int64)),
            "shards/b.npz": npz(x=NAN_SHARD, y=np.zeros(8000, np.int64)),
        },
    ),
    "an infinite pixel": train(trainable("inf.npz"), "inf.npz", "sample 2", **{"inf.npz": npz(x=INF_X, y=LABELS)}),
    "nan CSV cells": train(
        trainable("n.csv").replace("[4, 4, 1]", "[2]").replace("  - Flatten: {}\n", ""),
        "n.csv",
        "line 3, column 'a'",
        **{"n.csv": "a,b,l\n1,2,0\nnan,2,1\n1,2,0\n"},
    ),
    "a CSV label float32 cannot hold": train(
        trainable("n.csv").replace("[4, 4, 1]", "[2]").replace("  - Flatten: {}\n", ""),
        "y in",
        "line 3, column 'l'",
        **{"n.csv": "a,b,l\n1,2,0\n1,2,1e39\n1,2,0\n"},
    ),
    "an infinite CSV label after a blank line": train(
        trainable("n.csv").replace("[4, 4, 1]", "[2]").replace("  - Flatten: {}\n", ""),
        "y in",
        "line 5, column 'l'",
        **{"n.csv": "a,b,l\n1,2,0\n\n1,2,1\n1,2,-inf\n"},
    ),
    "a negative sample weight": train(
        trainable("{path: w.csv, weights: w}").replace("[4, 4, 1]", "[2]").replace("  - Flatten: {}\n", ""),
        "data.train.weights: sample weights in",
        "include a negative value",
        **{"w.csv": "a,b,l,w\n1,2,0,1\n1,2,1,-3\n"},
    ),
    "an infinite sample weight": train(
        trainable("{path: w.csv, weights: w}").replace("[4, 4, 1]", "[2]").replace("  - Flatten: {}\n", ""),
        "weights in",
        "line 3, column 'w'",
        **{"w.csv": "a,b,l,w\n1,2,0,1\n1,2,1,inf\n"},
    ),
    "stratified labels that are no classes": train(
        trainable("r.csv", **{"batch_size: 8": "batch_size: 8, validation: {fraction: 0.5, stratify: true}"})
        .replace("[4, 4, 1]", "[2]")
        .replace("  - Flatten: {}\n", ""),
        "data.validation.stratify: the labels of data.train are not class ids",
        **{"r.csv": "a,b,l\n1,2,0.5\n1,2,1.5\n"},
    ),
    "nan CSV cells to extract": Case(
        ["extract", "c.yaml", "--data", "n.csv", "--all", "--output", "f.npz"],
        1,
        ("n.csv", "line 2, column 'b'", "(and 1 more rows)"),
        {"c.yaml": HEAD.replace("[4]", "[2]") + "  - Dense: {units: 2}\n", "n.csv": "a,b,l\n1,nan,0\n1,2,1\ninf,2,0\n"},
    ),
    "fractional labels": train(
        trainable("frac.npz"),
        "frac.npz",
        "label",
        **{"frac.npz": npz(x=np.ones((16, 4, 4, 1), np.float32), y=np.full(16, 0.5, np.float32))},
    ),
    "negative labels": train(
        trainable("neg.npz"),
        "negative",
        **{"neg.npz": npz(x=np.ones((16, 4, 4, 1), np.float32), y=-np.ones(16, np.int64))},
    ),
    "labels past the last unit": train(
        trainable("big.npz"),
        "bad.yaml:6:",
        "outputs 3 class scores",
        **{"big.npz": npz(x=np.ones((16, 4, 4, 1), np.float32), y=np.full(16, 7, np.int64))},
    ),
    "learning_rate .nan": check(
        trainable().replace("optimizer: adam", "optimizer: {Adam: {learning_rate: .nan}}"),
        "bad.yaml:5:",
        "learning_rate",
    ),
    "learning_rate .inf": check(
        trainable().replace("optimizer: adam", "optimizer: {Adam: {learning_rate: .inf}}"),
        "bad.yaml:5:",
        "learning_rate",
    ),
    "learning_rate -1.0": check(
        trainable().replace("optimizer: adam", "optimizer: {Adam: {learning_rate: -1.0}}"),
        "bad.yaml:5:",
        "learning_rate",
    ),
    "Rescaling scale .nan": check(layer("Rescaling: {scale: .nan}"), "bad.yaml:3:", "scale"),
    "Dropout rate 1.5": check(layer("Dropout: {rate: 1.5}"), "bad.yaml:3:"),
    "Dropout rate .nan": check(layer("Dropout: {rate: .nan}"), "bad.yaml:3:", "rate"),
    "units -3": check(layer("Dense: {units: -3}"), "bad.yaml:3:", "units"),
    "units 0": check(layer("Dense: {units: 0}"), "bad.yaml:3:", "units"),
    "units 2**63": check(layer("Dense: {units: 9223372036854775808}"), "bad.yaml:3:", "units"),
    "units a 5000-digit integer": check(
        layer("Dense: {units: " + "9" * 5000 + "}"),
        "bad.yaml:3:",
        "units",
    ),
    "units 2**62 (a kernel of 2**64 values)": check(
        layer("Dense: {units: 4611686018427387904}"),
        "bad.yaml:3:5",
        "Dense cannot be built on any machine: its weight 'dense/kernel' of shape (4, 4611686018427387904)",
        "about 2**64 values",
        "hint: make its sizes",
    ),
    "units 2**61 on 2 inputs (a kernel of 16 EB)": check(
        layer("Dense: {units: 2305843009213693952}").replace("[4]", "[2]"),
        "bad.yaml:3:5",
        "16.00 EB, more than a 64-bit address space holds",
    ),
    "Embedding of 2**40 x 2**40": check(
        layer("Embedding: {input_dim: 1099511627776, output_dim: 1099511627776}"), "bad.yaml:3:5", "2**80 values"
    ),
    "an output of 2**70 values": check(
        layer("RepeatVector: {n: 1073741824}").replace("[4]", "[1099511627776]"),
        "bad.yaml:3:5",
        "its output of shape (None, 1073741824, 1099511627776)",
    ),
    "an Input of 2**64 values": check(
        "layers:\n  - Input: {shape: [4294967296, 4294967296]}\n  - Flatten: {}\n",
        "bad.yaml:2:20",
        "no machine can hold one input sample",
    ),
    "summary of an Input of 2**1116 values": Case(
        ["summary", "bad.yaml"],
        1,
        ("bad.yaml:2:20", "about 2**1116 values"),
        {
            "bad.yaml": "layers:\n  - Input: {shape: ["
            + ", ".join(["4611686018427387904"] * 18)
            + "]}\n  - Dense: {units: 2}\n"
        },
    ),
    "units 2**40 (16 TB) is checked, not refused": check(layer("Dense: {units: 1099511627776}"), "pass", status=0),
    "units 2.5": check(layer("Dense: {units: 2.5}"), "bad.yaml:3:", "units"),
    "units yes": check(layer("Dense: {units: yes}"), "bad.yaml:3:", "units"),
    "epochs 0": check(trainable().replace("epochs: 1", "epochs: 0"), "bad.yaml:7:", "epochs"),
    "epochs -1": check(trainable().replace("epochs: 1", "epochs: -1"), "bad.yaml:7:", "epochs"),
    "batch_size 0": check(trainable(**{"batch_size: 8": "batch_size: 0"}), "bad.yaml:6:", "batch_size"),
    "validation 1.5": check(
        trainable(**{"batch_size: 8": "batch_size: 8, validation: 1.5"}), "bad.yaml:6:", "validation"
    ),
    "validation .nan": check(
        trainable(**{"batch_size: 8": "batch_size: 8, validation: .nan"}), "bad.yaml:6:", "validation"
    ),
    "expect params -1": check(HEAD + "expect: {params: -1}\n", "bad.yaml:3:", "params"),
    "--set epochs=nan": Case(["summary", "tiny.yaml", "--set", "train.epochs=nan"], 1, ("--set",)),
    "--epochs 0": Case(["train", "tiny.yaml", "--output", "out", "--epochs", "0"], 2, ("--epochs",)),
    "--batch-size 0": Case(
        ["predict", "{run}", "--data", "x.npy", "--output", "p.npy", "--batch-size", "0"], 2, ("--batch-size",)
    ),
    "--virtual-cpus 0": Case(["train", "tiny.yaml", "--output", "out", "--virtual-cpus", "0"], 2, ("--virtual-cpus",)),
}

# ----------------------------------------------------------------------------- 6. messages

CSV_SPEC = HEAD.replace("[4]", "[2]") + (
    "  - Dense: {units: 2, activation: softmax}\n"
    "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
    "data: {train: s.csv, batch_size: 8}\ntrain: {epochs: 1, seed: 1}\n"
)

MESSAGES = {
    "a compressed CSV, which no format reads": Case(
        ["predict", "{run}", "--data", "t.csv.gz", "--output", "p.csv"],
        1,
        ("--data: cannot tell the format of", "t.csv.gz from its extension '.gz'", "or set `format:`"),
        {"t.csv.gz": b"\x1f\x8b" + SECRET.encode()},
    ),
    "shards no format names": train(
        trainable("shards/*.dat"),
        "cannot tell the format of shard",
        "a.dat from its extension '.dat'",
        "hint: shards are .npz, .npy, .csv, .tfrecord files",
        **{"shards/a.dat": SECRET},
    ),
    "text folder file not UTF-8": train(
        trainable("texts"),
        "bad.yaml:6:",
        "texts/a/1.txt:2: not UTF-8 text (column 4)",
        "hint: save the file as UTF-8",
        texts=text_folder(bad_byte=True),
    ),
    "text lines not UTF-8 to predict": Case(
        ["predict", "{run}", "--data", "bad.txt", "--output", "p.csv"],
        1,
        ("--data: {project}/bad.txt:3: not UTF-8 text (column 1)",),
        {"bad.txt": SECRET.encode() + b"\nfine\n\xe9\n"},
    ),
    "npz with a bad CRC": train(
        trainable("crc.npz"), "bad.yaml:6:15", "member 'x.npy' of", "crc.npz is damaged", **{"crc.npz": bad_crc_npz}
    ),
    "npz with a bad CRC as validation": train(
        trainable(**{"batch_size: 8": "batch_size: 8, validation: crc.npz"}),
        "bad.yaml:6:",
        "data.validation: member 'x.npy'",
        "CRC-32",
        **{"crc.npz": bad_crc_npz},
    ),
    "npz with a bad CRC to evaluate": Case(
        ["evaluate", "{run}", "--data", "crc.npz"],
        1,
        ("--data: member 'x.npy' of", "crc.npz is damaged", "write or copy it again"),
        {"crc.npz": bad_crc_npz},
    ),
    "npz with a bad CRC to extract": Case(
        ["extract", "tiny.yaml", "--data", "crc.npz", "--all", "--output", "f.npz"],
        1,
        ("crc.npz is damaged",),
        {"crc.npz": bad_crc_npz},
    ),
    "npz with corrupt deflate data to predict": Case(
        ["predict", "{run}", "--data", "z.npz", "--output", "p.npy"],
        1,
        ("member 'x.npy' of", "z.npz is damaged: its compressed data is corrupt"),
        {"z.npz": corrupt_deflate_npz},
    ),
    "random bytes as .npz": train(trainable("r.npz"), "r.npz", **{"r.npz": os.urandom(4096)}),
    "random bytes as .npy": Case(
        ["predict", "{run}", "--data", "r.npy", "--output", "p.npy"], 1, ("r.npy",), {"r.npy": os.urandom(4096)}
    ),
    "an empty .npz": train(trainable("e.npz"), "e.npz", **{"e.npz": b""}),
    "an .npz without y": train(trainable("noy.npz"), "noy.npz", "y", **{"noy.npz": npz(x=np.ones((4, 4, 4, 1)))}),
    "truncated .keras": Case(["evaluate", "t.keras", "--data", "x.npy"], 1, ("t.keras",), {"t.keras": truncated()}),
    "truncated .keras as a base": check(
        layer("Model: {path: t.keras}"),
        "bad.yaml:3:5: layers[1].Model: {project}/t.keras is not a readable zip archive",
        **{"t.keras": truncated()},
    ),
    "a base whose config is not a model": check(
        layer("Model: {path: d.keras}"), "bad.yaml:3:", "not a model", **{"d.keras": not_a_model_keras}
    ),
    "a base whose config is a JSON list": check(
        layer("Model: {path: d.keras}"), "bad.yaml:3:", "not a model", **{"d.keras": keras_config("[1, 2]")}
    ),
    "a layer's .keras to evaluate": Case(
        ["evaluate", "d.keras", "--data", "tiny.npz"], 1, ("d.keras is not a model",), {"d.keras": not_a_model_keras}
    ),
    "a layer's .keras to import": Case(["import", "d.keras"], 1, ("not a model",), {"d.keras": not_a_model_keras}),
    "random bytes as .keras": Case(["import", "r.keras"], 1, ("r.keras",), {"r.keras": os.urandom(2048)}),
    "a text file as .weights.h5": Case(
        ["freeze", "tiny.yaml", "--weights", "w.weights.h5", "--all-but-last", "1", "--output", "f.keras"],
        1,
        ("w.weights.h5",),
        {"w.weights.h5": "text"},
    ),
    "weights of another model": Case(
        [
            "extract",
            "tiny.yaml",
            "--weights",
            "{run}/model.keras",
            "--data",
            "x.npy",
            "--all",
            "--output",
            "f.npz",
            "--set",
            "layers[3].Dense.units=5",
        ],
        1,
        ("model.keras", "same spec"),
    ),
    "--set layers.Dense.units=3": Case(
        ["summary", "tiny.yaml", "--set", "layers.Dense.units=3"],
        1,
        ("--set #1",),
    ),
    "--set [0]=1": Case(["summary", "tiny.yaml", "--set", "[0]=1"], 1, ("--set #1",)),
    "--set without =": Case(["summary", "tiny.yaml", "--set", "train.epochs"], 1, ("--set #1", "key.path=value")),
    "--set an index past the end": Case(
        ["summary", "tiny.yaml", "--set", "layers[9].Dense.units=3"], 1, ("--set #1", "does not exist")
    ),
    "--set a wrong type": Case(["summary", "tiny.yaml", "--set", "train.epochs=many"], 1, ("--set #1",)),
    "--set an unknown key": Case(["summary", "tiny.yaml", "--set", "train.epoch=3"], 1, ("--set #1",)),
    "tampered metrics.json, read by evaluate for its class names": Case(
        ["evaluate", "tamp", "--data", "tiny.npz"],
        1,
        ("tamp/metrics.json is not a metrics.json as seq train writes it: invalid JSON at line 1, column 2",),
        {"tamp": tampered_run()},
    ),
    "tampered metrics.json, read by predict": Case(
        ["predict", "tamp", "--data", "x.npy", "--output", "p.csv"],
        1,
        ("tamp/metrics.json is not a metrics.json as seq train writes it: invalid JSON at line 1, column 2",),
        {"tamp": tampered_run()},
    ),
    "metrics.json class names that are not names": Case(
        ["predict", "tamp", "--data", "x.npy", "--output", "p.csv"],
        1,
        ("'class_names' holds something other than names", "--resume"),
        {"tamp": tampered_run('{"class_names": [1, 2]}')},
    ),
    "metrics.json nested past recursion, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("tamp/metrics.json is not a metrics.json as seq train writes it: its JSON nests more than 32 levels",),
        {"tamp": tampered_run("[" * 200_000 + "]" * 200_000)},
    ),
    "metrics.json with a best epoch past any run, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("'best_epoch' is not an epoch",),
        {"tamp": tampered_run('{"best_epoch": 1000000000000000000000}')},
    ),
    "metrics.json as a list, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"], 1, ("tamp/metrics.json", "a JSON list"), {"tamp": tampered_run("[]")}
    ),
    "undecodable images": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "cannot decode image",
        "broken.png",
        **{"imgs": images},
    ),
    "an image whose header is damaged": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "broken.png: its PNG header is damaged",
        **{"imgs": image_folder(**{"broken.png": b"\x89PNG\r\n\x1a\n not really a png"})},
    ),
    "an image that is no image": train(
        trainable("{path: imgs, image_size: [4, 4]}").replace("[4, 4, 1]", "[4, 4, 3]"),
        "x.png: it is not a BMP, GIF, JPEG or PNG file",
        **{"imgs": image_folder(**{"x.png": SECRET.encode()})},
    ),
    "a CSV secret in a bad cell, train": train(
        CSV_SPEC, "s.csv:3: column 2 is not a number", **{"s.csv": f"a,b,l\n1,2,0\n1,{SECRET},1\n"}
    ),
    "a CSV secret in a bad cell, extract": Case(
        ["extract", "c.yaml", "--data", "s.csv", "--all", "--output", "f.npz"],
        1,
        ("s.csv:2: column 1 is not a number",),
        {"c.yaml": HEAD.replace("[4]", "[2]") + "  - Dense: {units: 2}\n", "s.csv": f"a,b,l\n{SECRET},2,0\n"},
    ),
    "a CSV secret in a bad cell, evaluate": Case(
        ["evaluate", "m.keras", "--data", "s.csv"],
        1,
        ("s.csv:2: column 1 is not a number",),
        {"m.keras": two_feature_model, "s.csv": f"a,b,l\n{SECRET},2,0\n"},
    ),
    "a .env read as CSV, its label column missing": train(
        CSV_SPEC.replace("train: s.csv", "train: {path: s.csv, label: label, format: csv}"),
        "s.csv has no column 'label'",
        "its header row (line 1) names 2 columns",
        **{"s.csv": f"AWS_SECRET={SECRET},HOME=/root\n1,2\n"},
    ),
    "a CSV feature column missing, close to one": train(
        CSV_SPEC.replace("train: s.csv", "train: {path: s.csv, features: [alpa, b]}"),
        "has no column 'alpa'",
        "column 1 has a name close to 'alpa'",
        **{"s.csv": "alpha,b,l\n1,2,0\n"},
    ),
    "a secret as .npy": Case(
        ["predict", "{run}", "--data", "s.npy", "--output", "p.npy"],
        1,
        ("s.npy", "does not start as an .npy file does"),
        {"s.npy": SECRET * 4},
    ),
    "a secret in an .npy header": Case(
        ["predict", "{run}", "--data", "s.npy", "--output", "p.npy"],
        1,
        ("s.npy", "its header is not an .npy header"),
        {"s.npy": b"\x93NUMPY\x01\x00\x40\x00{'descr': '" + SECRET.encode() + b"', 'shape': (1,)}".ljust(64)},
    ),
    "float128 .npy": Case(
        ["predict", "{run}", "--data", "l.npy", "--output", "p.npy"],
        1,
        ("longdouble (float128) is not a dtype seq can train on", "convert it to float32"),
        {"l.npy": npy(np.ones((4, 4, 4, 1), np.longdouble))},
    ),
    "complex .npz": train(
        trainable("c.npz"),
        "complex128 (complex numbers) is not a dtype seq can train on",
        **{"c.npz": npz(x=np.ones((16, 4, 4, 1), np.complex128), y=LABELS)},
    ),
    "object .npy": Case(
        ["extract", "tiny.yaml", "--data", "o.npy", "--all", "--output", "f.npz"],
        1,
        ("it holds Python objects",),
        {"o.npy": lambda path: np.save(path, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)},
    ),
    "structured .npz labels": train(
        trainable("r.npz"),
        "holds records (a structured dtype)",
        **{"r.npz": npz(x=np.ones((16, 4, 4, 1), np.float32), y=np.zeros(16, [("a", "<i4"), ("b", "<f4")]))},
    ),
    "tune --storage with a password, as JSON": Case(
        [
            "tune",
            "study.yaml",
            "--storage",
            f"mysql://root:{SECRET}@localhost:1/db",
            "--output",
            "t",
            "--format",
            "json",
        ],
        1,
        ("mysql://root:***@localhost:1/db",),
        {"study.yaml": with_tune_section},
        changes=True,
    ),
    "tune --storage with a password": Case(
        ["tune", "study.yaml", "--storage", f"postgresql://admin:{SECRET}@localhost:1/db", "--output", "t"],
        1,
        ("postgresql://admin:***@localhost:1/db",),
        {"study.yaml": with_tune_section},
        changes=True,
    ),
    "unknown layer gru": check(layer("gru: {units: 2}"), "bad.yaml:3:", "did you mean 'GRU'?"),
    "unknown argument": check(layer("Dense: {units: 2, activaton: relu}"), "bad.yaml:3:", "did you mean 'activation'?"),
    "Lambda": check(layer("Lambda: {function: print}"), "bad.yaml:3:", "arbitrary Python code"),
    "python tag": check(HEAD + "  - Dense: !!python/object/apply:os.system [touch pwned]\n", "bad.yaml:3:"),
    "duplicate key": check(HEAD + "  - Dense: {units: 2, units: 3}\n", "bad.yaml:3:", "duplicate"),
    "two documents": check(HEAD + "---\n" + HEAD, "bad.yaml:3:"),
    "merge key": check("base: &b {units: 2}\n" + HEAD + "  - Dense: {<<: *b}\n", "bad.yaml:4:"),
    "not UTF-8": check(b"layers:\n  - Dense: {name: \xff\xfe}\n", "bad.yaml"),
    "a list for a spec": check("- 1\n- 2\n", "bad.yaml:1:1"),
    "an empty spec": check("", "bad.yaml"),
    "a NUL byte": check(HEAD + "  - Dense: {units: 2}\x00\n", "bad.yaml:3:22", "NUL", "hint: remove U+0000"),
    "an escape character": check(HEAD + '  - Dense: {name: "a\x1b[2Jb"}\n', "bad.yaml:3:", "U+001B"),
    "an unclosed bracket": check(HEAD + "  - Dense: {units: 2\n", "bad.yaml:"),
    "a tab indentation": check("layers:\n\t- Dense: {units: 2}\n", "bad.yaml:2:"),
    "a 2-input layer": check(layer("Add: {}"), "bad.yaml:3:"),
    "Dense on a bad kernel_initializer": check(
        layer("Dense: {units: 2, kernel_initializer: nope}"), "bad.yaml:3:", "kernel_initializer"
    ),
    "unknown optimizer": train(
        trainable().replace("optimizer: adam", "optimizer: adamm"), "bad.yaml:5:", "did you mean"
    ),
    "unknown loss": train(
        trainable().replace("loss: sparse_categorical_crossentropy", "loss: nope"), "bad.yaml:5:", "loss"
    ),
    "check an unknown optimizer": check(
        trainable().replace("optimizer: adam", "optimizer: adamm"),
        "bad.yaml:5:22: compile.optimizer: unknown optimizer 'adamm'",
        "did you mean 'adam'?",
    ),
    "a layer with several outputs": check(
        "layers:\n  - Input: {shape: [5, 3]}\n  - LSTM: {units: 2, return_state: true}\n",
        "bad.yaml:3:5: layers[1].LSTM: LSTM gives 3 outputs here",
    ),
    "check an unknown loss": check(
        trainable().replace("loss: sparse_categorical_crossentropy", "loss: sparse_categorical_crossentopy"),
        "bad.yaml:5:34: compile.loss: unknown loss",
        "did you mean 'sparse_categorical_crossentropy'?",
    ),
    "check an unknown metric": check(
        trainable().replace("loss: sparse", "metrics: [acuracy], loss: sparse"),
        "bad.yaml:5:38: compile.metrics[0]: unknown metric 'acuracy'",
        "did you mean 'accuracy'?",
    ),
    "check an optimizer Keras rejects when applying it": check(
        trainable().replace("optimizer: adam", "optimizer: {Adam: {beta_1: abc}}"),
        "bad.yaml:5:23: compile.optimizer.Adam: Keras rejected Adam when applying it",
    ),
    "check an AUC of 2**40 thresholds": check(
        trainable().replace("loss: sparse", "metrics: [{AUC: {num_thresholds: 1099511627776}}], loss: sparse"),
        "bad.yaml:5:61: compile.metrics[0].AUC.num_thresholds: num_thresholds=1,099,511,627,776 would take about",
        "over the memory limit",
    ),
    "check a MeanIoU of 2**63 classes": check(
        trainable().replace("loss: sparse", "metrics: [{MeanIoU: {num_classes: 9223372036854775808}}], loss: sparse"),
        "bad.yaml:5:",
        "does not fit in 64 bits",
    ),
    "expect [6, 6] against (6, 6, 2)": check(
        "layers:\n  - Input: {shape: [6, 6, 2]}\n  - Dense: {units: 2}\n    expect: [6, 6]\n",
        "bad.yaml:4:",
        "(6, 6, 2)",
    ),
    "expect the wrong output": check(HEAD + "  - Dense: {units: 2}\n    expect: [3]\n", "bad.yaml:4:", "(2,)"),
    "expect on a spec of Input alone": check(
        HEAD + "expect: {output: [7]}\n", "bad.yaml:3:1: expect: the model has no layers after Input"
    ),
    "expect [9] on an Input of [4]": check(
        "layers:\n  - Input: {shape: [4]}\n    expect: [9]\n  - Dense: {units: 2}\n",
        "bad.yaml:3:13: layers[0].expect: expected output shape (9,), but Input gives (4,)",
    ),
    "expect [4] on an Input of [4]": check(
        "layers:\n  - Input: {shape: [4]}\n    expect: [4]\n  - Dense: {units: 2}\n", "pass", status=0
    ),
    "missing spec": Case(["check", "missing.yaml"], 1, ("missing.yaml",)),
    "spec is a folder": Case(["check", "somedir"], 2, ("somedir",), {"somedir": folder_with()}),
    "run folder without a model": Case(
        ["predict", "empty", "--data", "x.npy", "--output", "p.npy"], 1, ("empty",), {"empty": folder_with()}
    ),
    "missing --data": Case(["predict", "{run}", "--data", "missing.npy", "--output", "p.npy"], 1, ("missing.npy",)),
    "unknown Keras dataset": Case(["predict", "{run}", "--data", "nodataset", "--output", "p.npy"], 1, ("nodataset",)),
    "extract an unknown layer": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--layer", "densse", "--output", "f.npz"],
        1,
        ("did you mean 'dense'?",),
    ),
    "freeze all_but_last past the count": Case(
        ["freeze", "tiny.yaml", "--all-but-last", "9", "--output", "f.keras"], 1, ("9",)
    ),
    "--upto an unknown layer": Case(["summary", "tiny.yaml", "--upto", "nope"], 1, ("nope",)),
    "--input-shape not a shape": Case(["summary", "tiny.yaml", "--input-shape", "a,b"], 2, ("--input-shape",)),
    "export to LiteRT a GRU of any length": Case(
        ["export", "gru.keras", "--output", "m.tflite", "--data", "x.npy"],
        1,
        ("GRU layer 'gru' reads sequences of any length", "give the Input a fixed length"),
        {"gru.keras": keras_model(lambda keras: [keras.Input((None, 2)), keras.layers.GRU(3, name="gru")])},
    ),
    "export to ONNX string preprocessing": Case(
        ["export", "words.keras", "--output", "m.onnx", "--data", "x.npy"],
        1,
        ("StringLookup layer 'words': this format cannot hold string preprocessing", "--to saved_model"),
        {
            "words.keras": keras_model(
                lambda keras: [
                    keras.Input((3,), dtype="string"),
                    keras.layers.StringLookup(vocabulary=["a", "b"], name="words"),
                ]
            )
        },
    ),
    "export --version 0": Case(["export", "{run}", "--output", "served", "--version", "0"], 2, ("--version",)),
}

# ----------------------------------------------------------------------------- 7. text on its way out

MARKUP_LAYER = layer('Dense: {units: 2, name: "[bold red]hidden"}')
METRIC_NAMED = {
    "metrics: [accuracy]": 'metrics: [{SparseCategoricalAccuracy: {name: "[red]acc$"}}]',
    "epochs: 1": "epochs: 3",
    "seed: 3": 'seed: 3\n  early_stopping: {monitor: "val_[red]acc$", min_delta: 10, mode: max}',
}

DISPLAY = {
    "a layer named like markup, in summary": Case(
        ["summary", "bad.yaml"],
        1,
        ("│ [bold red]hidden │", "bad.yaml:3:29: layers[1].Dense.name: TensorFlow cannot train a layer named"),
        {"bad.yaml": MARKUP_LAYER},
    ),
    "a layer named like markup stays exact in JSON": Case(
        ["summary", "bad.yaml", "--format", "json"], 1, ('"name": "[bold red]hidden"',), {"bad.yaml": MARKUP_LAYER}
    ),
    "a model named [/] beside another problem, in check": check(
        'name: "[/]"\n' + layer("Dense: {units: 2, activaton: relu}"),
        "bad.yaml:1:7: name: model name must be an identifier, got '[/]'",
        "bad.yaml:4:23: layers[1].Dense.activaton: unknown argument",
        "│ bad.yaml │ [/]",
    ),
    "a spec file named with brackets, in check": Case(
        ["check", "model[v2].yaml"], 0, ("│ model[v2].yaml │",), {"model[v2].yaml": copy_of("tiny.yaml")}
    ),
    "a YAML escape sequence in a layer name": check(
        layer(r'Dense: {units: 2, name: "x\e[2J\e[31mRED"}'),
        "bad.yaml:3:29: layers[1].Dense.name: the name holds the character U+001B, which seq cannot show as typed",
        "hint: use letters",
    ),
    "a lone surrogate in a layer name": check(
        layer(r'Dense: {units: 2, name: "\uD800"}'), "bad.yaml:3:29:", "U+D800 (lone surrogate)"
    ),
    "a lone surrogate in a layer name, in summary": Case(
        ["summary", "bad.yaml"], 1, ("│ \ufffd ", "U+D800"), {"bad.yaml": layer(r'Dense: {units: 2, name: "\uD800"}')}
    ),
    "a right-to-left override in a layer name": check(
        layer(r'Dense: {units: 2, name: "a\u202Eb"}'), "bad.yaml:3:29:", "U+202E (RIGHT-TO-LEFT OVERRIDE)"
    ),
    "a layer name of 300 characters": check(
        layer("Dense: {units: 2, name: " + "n" * 300 + "}"), "bad.yaml:3:29:", "300 characters, over 200"
    ),
    "an escape sequence in a metric's name": check(
        trainable().replace("loss: sparse", r'metrics: [{SparseCategoricalAccuracy: {name: "a\e[2J"}}], loss: sparse'),
        "compile.metrics[0].SparseCategoricalAccuracy.name: the name holds the character U+001B",
    ),
    "markup and a dollar in a layer name TensorFlow cannot train": check(
        layer('Dense: {units: 2, name: "$x[red]d"}'), "TensorFlow cannot train a layer named '$x[red]d'"
    ),
    "markup in a Keras error": check(
        layer('Dense: {units: 2, activation: "[/]"}'),
        "bad.yaml:3:5: layers[1].Dense: Keras rejected Dense: Could not interpret activation function identifier: [/]",
    ),
    "brackets, a comma, a colon and % in a GitHub annotation's file": Case(
        ["check", "a,b:c%[x].yaml", "--format", "github"],
        1,
        ("::error file=a%2Cb%3Ac%25[x].yaml,line=3,col=5::layers[1].gru: ",),
        {"a,b:c%[x].yaml": layer("gru: {units: 2}")},
    ),
    "an escape and a line break in a GitHub annotation's file": Case(
        ["check", "e\x1b[31m\nx.yaml", "--format", "github"],
        1,
        ("::error file=e\ufffd[31m\ufffdx.yaml,line=3,col=5::",),
        {"e\x1b[31m\nx.yaml": layer("gru: {units: 2}")},
    ),
    "an escape in the spec's file name, in JUnit": Case(
        ["check", "e\x1b[31m.yaml", "--format", "junit"],
        1,
        ('name="e\ufffd[31m.yaml"', 'message="e\ufffd[31m.yaml:3:5: '),
        {"e\x1b[31m.yaml": layer("gru: {units: 2}")},
    ),
    "an undecodable byte in the spec's file name, in check": Case(
        ["check", "u\udcff[b].yaml"], 0, ("│ u\ufffd[b].yaml │",), {"u\udcff[b].yaml": copy_of("tiny.yaml")}
    ),
    "a metric named like markup with a dollar, in train and its curves": Case(
        ["train", "m.yaml", "--output", "out"],
        0,
        (
            "[red]acc$ 0.",
            "│ val_[red]acc$ │",
            "metrics SparseCategoricalAccuracy(name='[red]acc$')",
            "note: early stopping after epoch 2: val_[red]acc$ has not improved",
        ),
        {"m.yaml": copy_of("tiny.yaml", **METRIC_NAMED)},
        changes=True,
    ),
    "a data path with markup, in evaluate": Case(
        ["evaluate", "{run}", "--data", "d[bold]x.npz"],
        0,
        ("tiny on d[bold]x.npz (16 samples)",),
        {"d[bold]x.npz": copy_of("tiny.npz")},
    ),
    "a .keras layer named with an escape, a dollar and markup, plotted": Case(
        ["plot", "k.keras", "--output", "k.png"],
        0,
        ("Wrote the architecture (1 layers) to k.png",),
        {"k.keras": keras_model_with_layer("$\\e[b]\x1b[2J$")},
        changes=True,
    ),
    "a .keras layer named with an escape, imported": Case(
        ["import", "k.keras"],
        1,
        ("k.keras cannot be written as a spec: layers[1].Dense.name: the name holds the character U+001B",),
        {"k.keras": keras_model_with_layer("$[b]\x1b[2J")},
    ),
}

# ----------------------------------------------------------------------------- 8. seq's own files read back

LONG = "9" * 200_000
OWN_FILES = {
    "history.csv with a 200,000-character cell": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("tamp/history.csv is not a history.csv as seq train writes it: line 2: a cell longer than 8,192",),
        {"tamp": run_with("history.csv", f"epoch,loss\n1,{LONG}\n")},
    ),
    "history.csv with a 20,000-character cell": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("history.csv is not a history.csv as seq train writes it: line 3, column 2: a cell longer than 8,192",),
        {"tamp": run_with("history.csv", "epoch,loss\n1,0.5\n2," + "9" * 20_000 + "\n")},
    ),
    "history.csv not UTF-8": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("history.csv is not a history.csv as seq train writes it: line 3, column 3: a byte that is not UTF-8",),
        {"tamp": run_with("history.csv", b"epoch,loss\n1,0.5\n2,\xff\xfe\n")},
    ),
    "history.csv with a row of 1,000 cells": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("history.csv is not a history.csv as seq train writes it: line 2 holds more than 256 cells",),
        {"tamp": run_with("history.csv", "epoch,loss\n1" + ",0.5" * 1000 + "\n")},
    ),
    "history.csv with a row longer than its header": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("line 2 holds 3 cells, its header names 2",),
        {"tamp": run_with("history.csv", "epoch,loss\n1,0.5,0.7\n")},
    ),
    "history.csv with a line of 2 MB": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("line 2 is longer than 1,048,576 characters",),
        {"tamp": run_with("history.csv", "epoch,loss\n1," + "9" * (2 << 20) + "\n")},
    ),
    "history.csv with a secret for a number": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("history.csv is not a history.csv as seq train writes it: line 2, column 2: not a number",),
        {"tamp": run_with("history.csv", f"epoch,loss\n1,{SECRET}\n")},
    ),
    "history.csv with a secret for a header": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("line 2, column 3: not a number",),
        {"tamp": run_with("history.csv", f"epoch,loss,{SECRET}\n1,0.5,{SECRET}\n")},
    ),
    "history.csv without epochs": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("its header has no column 'epoch'",),
        {"tamp": run_with("history.csv", "loss\n0.5\n")},
    ),
    "history.csv of 17 MB": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("history.csv is not a history.csv as seq train writes it: it holds more than 16.00 MB",),
        {"tamp": run_with("history.csv", sparse_file(17 << 20))},
    ),
    "history.csv a FIFO": Case(
        ["plot", "tamp", "--output", "c.png"], 1, ("history.csv",), {"tamp": run_with("history.csv", fifo)}
    ),
    "metrics.json not UTF-8, read by predict": Case(
        ["predict", "tamp", "--data", "x.npy", "--output", "p.csv"],
        1,
        ("metrics.json is not a metrics.json as seq train writes it: line 2, column 12: a byte that is not UTF-8",),
        {"tamp": run_with("metrics.json", b'{\n "model": "\xff"}')},
    ),
    "metrics.json nested 40 deep, read by predict": Case(
        ["predict", "tamp", "--data", "x.npy", "--output", "p.csv"],
        1,
        ("its JSON nests more than 32 levels deep", "--resume"),
        {"tamp": run_with("metrics.json", '{"metrics": ' + "[" * 40 + "]" * 40 + "}")},
    ),
    "metrics.json of 17 MB, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("metrics.json is not a metrics.json as seq train writes it: it holds more than 16.00 MB",),
        {"tamp": run_with("metrics.json", sparse_file(17 << 20))},
    ),
    "metrics.json with a model name of 200,000 characters, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("'model' is longer than 1024 characters",),
        {"tamp": run_with("metrics.json", json.dumps({"model": LONG}))},
    ),
    "metrics.json with phases that are not phases, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("'phases' is not a list of at most 16 phases with their first epochs",),
        {"tamp": run_with("metrics.json", json.dumps({"phases": [{"first_epoch": SECRET}]}))},
    ),
    "metrics.json with 100,000 phases, read by plot": Case(
        ["plot", "tamp", "--output", "c.png"],
        1,
        ("'phases' is not a list of at most 16 phases",),
        {"tamp": run_with("metrics.json", json.dumps({"phases": [{"first_epoch": 1}] * 100_000}))},
    ),
    "trials.csv with a 200,000-character note": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("study/trials.csv is not a trials.csv as seq tune writes it: line 2: a cell longer than 8,192", "--resume"),
        {"study": study_with(TRIALS_CSV.replace("trial-0000,", f"trial-0000,{LONG}"))},
    ),
    "trials.csv not UTF-8": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("trials.csv is not a trials.csv as seq tune writes it: line 3, column 1: a byte that is not UTF-8",),
        {"study": study_with(TRIALS_CSV.encode().replace(b"\n1,", b"\n\xff,"))},
    ),
    "trials.csv with a row of 300 cells": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("trials.csv is not a trials.csv as seq tune writes it: line 2 holds more than 256 cells",),
        {"study": study_with(TRIALS_CSV.replace("trial-0000,", "trial-0000," + "," * 300))},
    ),
    "trials.csv with a secret for a trial number": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("trials.csv is not a trials.csv as seq tune writes it: line 3, column 'trial': not an integer",),
        {"study": study_with(TRIALS_CSV.replace("\n1,complete", f"\n{SECRET},complete"))},
    ),
    "trials.csv with a secret for a value": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("line 2, column 'value': not a number",),
        {"study": study_with(TRIALS_CSV.replace("0.5,8", f"{SECRET},8"))},
    ),
    "study.json nested 200,000 deep": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("study/study.json is not a study.json as seq tune writes it: its JSON nests more than 32 levels",),
        {"study": study_with(study="[" * 200_000 + "]" * 200_000)},
    ),
    "study.json not UTF-8": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("study.json is not a study.json as seq tune writes it: line 1, column 16: a byte that is not UTF-8",),
        {"study": study_with(study=b'{"objective": "\xff", "direction": "minimize"}')},
    ),
    "study.json without a direction": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("study.json is not a study.json as seq tune writes it: it needs an 'objective'",),
        {"study": study_with(study='{"objective": "val_loss"}')},
    ),
    "study.json with an objective of 200,000 characters": Case(
        ["plot", "study", "--output", "s.png"],
        1,
        ("it needs an 'objective' (a metric's name)",),
        {"study": study_with(study=json.dumps({"objective": LONG, "direction": "minimize"}))},
    ),
    "a checkpoint whose record nests 200,000 deep": Case(
        ["train", "tiny.yaml", "--output", "tamp", "--resume", "--quiet"],
        1,
        ("tamp/checkpoints/last.npz is not a checkpoint seq wrote: its JSON nests more than 32 levels",),
        {
            "tamp": run_with("checkpoints/last.npz", checkpoint_record("[" * 200_000 + "]" * 200_000)),
            "tamp/checkpoints/previous.npz": checkpoint_record("[" * 200_000 + "]" * 200_000),
        },
    ),
    "a checkpoint whose record is a list": Case(
        ["train", "tiny.yaml", "--output", "tamp", "--resume", "--quiet"],
        1,
        ("tamp/checkpoints/last.npz", "its record is not a JSON object"),
        {
            "tamp": run_with("checkpoints/last.npz", checkpoint_record("[1, 2]")),
            "tamp/checkpoints/previous.npz": checkpoint_record("[1, 2]"),
        },
    ),
}

CLASSES = {
    "outputs": OUTPUTS,
    "confinement": CONFINEMENT,
    "size": SIZE,
    "writer": WRITER,
    "numbers": NUMBERS,
    "messages": MESSAGES,
    "display": DISPLAY,
    "own files": OWN_FILES,
}
ALL = [
    pytest.param(kind, name, marks=table[name].marks, id=f"{kind}: {name}")
    for kind, table in CLASSES.items()
    for name in table
]


# ----------------------------------------------------------------------------- the project and a case in it


@pytest.fixture
def project(tmp_path, trained, monkeypatch):
    """The tiny project (tiny.yaml, tiny.npz, x.npy) in tmp_path/project, a secret in tmp_path/outside and
    in the environment, and a copy of the shared trained run."""
    monkeypatch.setenv("SEQ_TEST_SECRET", SECRET)
    monkeypatch.delenv("SEQ_ALLOW_PATH", raising=False)
    folder = tmp_path / "project"
    write_tiny_project(folder, epochs=1, samples=16)
    np.save(folder / "x.npy", np.ones((4, 4, 4, 1), np.float32))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET + "\n")
    shutil.copytree(trained / "run", tmp_path / "run")
    monkeypatch.chdir(folder)
    return folder


def substitute(text: str, project: Path) -> str:
    root = project.parent
    return (
        text.replace("{project}", str(project))
        .replace("{run}", str(root / "run"))
        .replace("{outside}", str(root / "outside"))
        .replace("~home", str(Path.home()))
    )


def arrange(case: Case, project: Path) -> list[str]:
    for name, content in case.files.items():
        path = project / substitute(name, project)
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(substitute(content, project))
    return [substitute(arg, project) for arg in case.args]


def hold_lock(project: Path):
    """Another writer: an OS lock held on project/locked/.seq-lock by another open file."""
    from seqcli.outputs import LOCK

    (project / "locked").mkdir(exist_ok=True)
    handle = open(project / "locked" / LOCK, "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_hostile_case(project, kind, name):
    case = CLASSES[kind][name]
    args = arrange(case, project)
    lock = hold_lock(project) if kind == "writer" else None
    before = snapshot(project.parent)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        if lock is not None:
            lock.close()
    shown = result.stdout + result.stderr
    assert result.exit_code == case.status, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for words in case.expect:
        assert substitute(words, project) in shown, shown
    assert "Traceback" not in shown and "unexpected" not in shown and "Warning:" not in shown, shown
    assert not RAW_CONTROL.search(shown), shown
    assert SECRET not in shown, shown
    if not case.changes:
        assert snapshot(project.parent) == before, shown


def test_every_command_is_a_writer_that_meets_the_lock_or_read_only():
    """A new command fails here until it is classified: a writer gets a WRITER case (run above against a
    folder another process holds locked), or it joins READ_ONLY."""
    writers = {case.args[0] for case in WRITER.values()}
    assert not writers & READ_ONLY
    assert sorted(cli.commands) == sorted(writers | READ_ONLY)


def test_the_corpus_is_large_enough():
    assert len(ALL) >= 120
    assert all(len(table) >= 4 for table in CLASSES.values())


# ----------------------------------------------------------------------------- size cases under a limit


@pytest.mark.slow
def test_size_cases_stay_bounded(tmp_path):
    """The size cases again, all in one subprocess under RLIMIT_AS (3 GB) and a timeout, reporting the peak
    resident memory: a regression that reads a bomb fails here instead of swapping the machine."""
    ids = [f"tests/test_hostile.py::test_hostile_case[size: {name}]" for name in sorted(SIZE_CASES)]
    code = (
        "import resource, sys, pytest\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider', '-n', '0', *sys.argv[1:]])\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
        "sys.exit(code)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, *ids],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    peak = int(done.stdout.rsplit("PEAK ", 1)[1].split()[0])
    # Alone the cases peak near 0.9 GB; inside the whole suite the same cases have peaked at 1.7 GB (not yet
    # explained: it was not reproduced outside the suite, with or without load). A bomb read whole goes past 3 GB.
    assert peak < 2 << 30, peak


# ----------------------------------------------------------------------------- the text door, for every command

# A name that would restyle rich's output, clear the screen, and fail to encode (an undecodable byte in a file
# name, as Python reads it), and how seq must show it.
HOSTILE = "[bold red]x\x1b[2J\udcff"
HOSTILE_SHOWN = "[bold red]x\ufffd[2J\ufffd"

# Each command driven so that HOSTILE reaches what it prints, its result or its error (where a command refuses
# the name outright, its words are the case's ``expect``).
DOOR = {
    "summary": Case(
        ["summary", "h.yaml"], 1, (), {"h.yaml": layer(r'Dense: {units: 2, name: "[bold red]x\e[2J\uDCFF"}')}
    ),
    "check": Case(["check", HOSTILE + ".yaml"], 0, (), {HOSTILE + ".yaml": copy_of("tiny.yaml")}),
    "schema": Case(["schema", "--output", HOSTILE + ".json"], 1, (), {HOSTILE + ".json": "mine"}),
    "plot": Case(["plot", "tiny.yaml", "--output", HOSTILE + ".png"], 0, changes=True),
    "import": Case(["import", HOSTILE + ".keras"], 1),
    "init": Case(["init", "mlp", HOSTILE + ".yaml"], 1, ("error: the file name holds a line break or another",)),
    "train": Case(
        ["train", HOSTILE + ".yaml", "--output", "out"], 0, (), {HOSTILE + ".yaml": copy_of("tiny.yaml")}, changes=True
    ),
    "transfer": Case(["transfer", HOSTILE + ".yaml", "--output", "out", "--weights", "w.weights.h5"], 1),
    "tune": Case(["tune", HOSTILE + ".yaml"], 1, (), {HOSTILE + ".yaml": copy_of("tiny.yaml")}),
    "evaluate": Case(["evaluate", "{run}", "--data", HOSTILE + ".npz"], 0, (), {HOSTILE + ".npz": copy_of("tiny.npz")}),
    "predict": Case(["predict", "{run}", "--data", "x.npy", "--output", HOSTILE + ".npy"], 0, changes=True),
    "extract": Case(
        ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", HOSTILE + ".npz"], 0, changes=True
    ),
    "freeze": Case(["freeze", "tiny.yaml", "--all-but-last", "1", "--output", HOSTILE + ".keras"], 0, changes=True),
    "export": Case(["export", HOSTILE, "--output", "x.tflite"], 1),
}
PRINTS_NO_USER_TEXT: set[str] = set()  # commands whose output holds nothing a user or a file chose


def test_the_consoles_read_no_markup_in_what_they_print(monkeypatch):
    """The second wall behind the door: a str that reaches a console unescaped is still shown as typed."""
    import io

    from seqcli.cli import stdout_console

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    stdout_console().print("[bold red]x[/] :smile:")
    assert sys.stdout.getvalue() == "[bold red]x[/] :smile:\n"


def test_every_command_is_driven_through_the_text_door():
    assert set(DOOR) | PRINTS_NO_USER_TEXT == set(cli.commands)


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_a_hostile_name_reaches_each_command_s_output_shown_through_the_door(project, command):
    """The name is in what the command prints, as the door shows it: literal brackets (no markup read, none
    lost), the escape and the undecodable byte as U+FFFD; no raw control character, no crash."""
    assert command in DOOR, f"seq {command} is not driven through the text door: add it to DOOR"
    case = DOOR[command]
    result = CliRunner().invoke(cli, arrange(case, project))
    shown = result.stdout + result.stderr
    assert result.exit_code == case.status, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in shown and "unexpected" not in shown, shown
    assert not RAW_CONTROL.search(shown), shown
    for words in case.expect or (HOSTILE_SHOWN,):
        assert words in shown, shown


def test_nothing_is_wrapped_outside_a_terminal(project):
    """A pipe, a log or a CI report gets each path and each message on one line, whatever COLUMNS says and
    however long the path (rich would fold it at the console width)."""
    folder = project / ("long-folder-" * 12)
    folder.mkdir()
    spec = folder / "tiny.yaml"
    spec.write_text((project / "tiny.yaml").read_text())
    shutil.copy(project / "tiny.npz", folder / "data.npz")
    runner = CliRunner(env={"COLUMNS": "40"})
    checked = runner.invoke(cli, ["check", str(spec)])
    assert checked.exit_code == 0, checked.output
    assert any(str(spec) in line for line in checked.stdout.splitlines()), checked.stdout
    evaluated = runner.invoke(cli, ["evaluate", str(project.parent / "run"), "--data", str(folder / "data.npz")])
    assert f"tiny on {folder / 'data.npz'} (16 samples)" in evaluated.stdout.splitlines(), evaluated.output


def test_a_live_bar_on_a_terminal_shows_a_metric_named_like_markup(tmp_path, monkeypatch):
    """The bar's metrics are spec text too: shown as typed, not read as markup (where '[/]' would fail)."""
    import io

    from seqcli.cli import stdout_console
    from seqcli.training import TrainOptions, train_spec
    from seqcli.views.progress import make_reporter

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    spec = write_tiny_project(tmp_path, epochs=1, samples=16)
    spec.write_text(
        spec.read_text().replace("metrics: [accuracy]", 'metrics: [{SparseCategoricalAccuracy: {name: "acc[/]"}}]')
    )
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    console = stdout_console()
    assert console.is_terminal
    train_spec(TrainOptions(str(spec), output=str(tmp_path / "run")), make_reporter(console))
    text = sys.stdout.getvalue()
    assert "━" in text and "acc[/] 0." in text and "val_acc[/] 0." in text, text


# ----------------------------------------------------------------------------- the door of seq's own files

# Each file seq writes and reads back, with the commands that read it: every one goes through seqcli.records.
OWN_FILE_READERS = {
    "{run}/history.csv": (["plot", "{run}", "--output", "c.png"],),
    "{run}/metrics.json": (
        ["plot", "{run}", "--output", "c.png"],
        ["predict", "{run}", "--data", "x.npy", "--output", "p.csv"],
    ),
    "study/trials.csv": (["plot", "study", "--output", "s.png"],),
    "study/study.json": (["plot", "study", "--output", "s.png"],),
    "{run}/checkpoints/last.npz": (["train", "tiny.yaml", "--output", "{run}", "--resume", "--quiet"],),
    # written and read back by the same command: only the spy applies
    "out/phase1/history.csv": (["transfer", "tiny.yaml", "--output", "out", "--weights", "{run}/model.keras", "-q"],),
}
# The commands that read none of seq's own files back (a new command must be placed in one of the two).
READS_NO_OWN_FILE = {
    "check",
    "evaluate",
    "export",
    "extract",
    "freeze",
    "import",
    "init",
    "schema",
    "summary",
    "tune",
}
DOOR_CASES = [
    pytest.param(name, args, id=f"{name.rsplit('/', 1)[1]}: {args[0]}")
    for name, commands in OWN_FILE_READERS.items()
    for args in commands
]


def tamper(path: Path) -> str:
    """Break ``path`` (a file seq wrote) so that only a bounded reader refuses it cleanly; the words expected."""
    if path.suffix == ".npz":
        np.savez(path, meta=np.array("[" * 200_000 + "]" * 200_000))
        return "its JSON nests more than 32 levels deep"
    path.write_bytes(path.read_bytes()[:8] + b"\xff" + path.read_bytes()[8:])
    return "a byte that is not UTF-8"


def _spy(original, path_at: int, seen: list):
    def spy(*arguments):
        seen.append(Path(arguments[path_at]))
        return original(*arguments)

    return spy


def test_every_command_that_reads_seqs_own_files_is_placed():
    assert {args[0] for commands in OWN_FILE_READERS.values() for args in commands} | READS_NO_OWN_FILE == set(
        cli.commands
    )


@pytest.mark.parametrize(("name", "args"), DOOR_CASES)
def test_seqs_own_files_are_read_through_the_one_reader(project, monkeypatch, name, args):
    """Each command that reads one of seq's own files reads it through seqcli.records (a spy sees the path),
    and refuses the file tampered, cleanly, naming it."""
    from seqcli import records

    study_with()(project / "study")
    seen: list[Path] = []
    for function, path_at in (("read_text", 0), ("parse_json", 1)):  # parse_json(text, path, what)
        monkeypatch.setattr(records, function, _spy(getattr(records, function), path_at, seen))
    target = Path(substitute(name, project))
    if not target.is_absolute():
        target = project / target
    command = [substitute(arg, project) for arg in args]
    existed = target.exists()
    CliRunner().invoke(cli, command)
    for output in ("c.png", "s.png", "p.csv"):
        (project / output).unlink(missing_ok=True)
    assert target.resolve() in {path.resolve() for path in seen}, f"{' '.join(args)} read {name} around the door"
    if not existed:
        return
    words = tamper(target)
    result = CliRunner().invoke(cli, command)
    shown = result.stdout + result.stderr
    assert result.exit_code == 1, shown
    assert target.name in shown and words in shown, shown
    assert "Traceback" not in shown and "unexpected" not in shown, shown


def test_the_readme_counts_the_corpus_as_it_is():
    """The README's figures for the corpus are the tables' sizes."""
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert f"A hostile corpus of {len(ALL)} cases" in readme
    sizes = [f"({len(table)})" for table in CLASSES.values()]
    paragraph = readme.split("A hostile corpus of", 1)[1].split("Each asserts", 1)[0]
    assert all(size in paragraph for size in sizes), (sizes, paragraph)
