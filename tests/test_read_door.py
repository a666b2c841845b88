"""The open door (seqcli.inputs.open_input) proven from the outside: every command of ``cli.commands`` is fed,
in each place it reads a file, a FIFO (which blocks forever whoever opens it without O_NONBLOCK) and, where
the file is confined (a spec, a file a spec names, a file inside an image folder), a symbolic link out of
the folders it may read. Each must be refused cleanly: exit 1 or 2, the kind of problem named, no traceback,
nothing of the target shown. A new command fails test_every_command_is_in_the_table until its reads are
listed here.

A read that skips the door and blocks fails the test through SIGALRM (a Python-level open) or, when the
block is inside a library's thread where no Python signal handler can run, faulthandler ends the whole
run with the stack of the hang rather than letting the suite hang."""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from tests.conftest import write_tiny_project

SECRET = "DOORSECRETVALUE"
TIMEOUT = 20  # seconds one case may take before it is a hang
BACKSTOP = 90  # seconds after which a hang no signal reaches ends the test run


@dataclass(frozen=True)
class Read:
    """One place a command reads a file: its arguments, with ``{file}`` where the hostile file goes (its
    name ends as the real file's would), and whether that file is confined (a link out must be refused)."""

    args: tuple[str, ...]
    name: str
    confined: bool


SPEC_DATA = "data.yaml"  # the tiny spec with data.train naming {file}
READS = {
    "check": [Read(("check", "{file}"), "s.yaml", True)],
    "summary": [Read(("summary", "{file}"), "s.yaml", True)],
    "schema": [Read(("schema", "--output", "{file}"), "s.json", False)],
    "plot": [
        Read(("plot", "{file}", "--output", "p.png"), "s.yaml", True),
        Read(("plot", "{file}", "--output", "p.png"), "m.keras", False),
    ],
    "import": [Read(("import", "{file}", "--output", "i.yaml"), "m.keras", False)],
    "init": [Read(("init", "mlp", "{file}"), "s.yaml", False)],
    "train": [
        Read(("train", "{file}", "--output", "out", "--quiet"), "s.yaml", True),
        Read(("train", SPEC_DATA, "--output", "out", "--quiet"), "d.npz", True),
        Read(("train", SPEC_DATA, "--output", "out", "--quiet"), "d.csv", True),
        Read(("train", "images.yaml", "--output", "out", "--quiet"), "imgs/a/1.png", True),
    ],
    "transfer": [
        Read(("transfer", "{file}", "--output", "out", "--weights", "{run}/model.keras"), "s.yaml", True),
        Read(("transfer", "tiny.yaml", "--output", "out", "--weights", "{file}"), "w.keras", False),
    ],
    "tune": [
        Read(("tune", "{file}", "--output", "out"), "s.yaml", True),
        Read(("tune", "tune.yaml", "--output", "out"), "d.npz", True),
    ],
    "evaluate": [
        Read(("evaluate", "{file}", "--data", "tiny.npz"), "m.keras", False),
        Read(("evaluate", "{run}", "--data", "{file}"), "d.npz", False),
    ],
    "predict": [
        Read(("predict", "{file}", "--data", "x.npy", "--output", "p.npy"), "m.keras", False),
        Read(("predict", "{run}", "--data", "{file}", "--output", "p.npy"), "d.npy", False),
    ],
    "extract": [
        Read(("extract", "{file}", "--data", "x.npy", "--all", "--output", "f.npz"), "s.yaml", True),
        Read(("extract", "tiny.yaml", "--data", "{file}", "--all", "--output", "f.npz"), "d.csv", False),
        Read(
            ("extract", "tiny.yaml", "--weights", "{file}", "--data", "x.npy", "--all", "--output", "f.npz"),
            "w.keras",
            False,
        ),
    ],
    "freeze": [
        Read(("freeze", "{file}", "--all-but-last", "1", "--output", "f.keras"), "s.yaml", True),
        Read(
            ("freeze", "tiny.yaml", "--weights", "{file}", "--all-but-last", "1", "--output", "f.keras"),
            "w.weights.h5",
            False,
        ),
    ],
    "export": [
        Read(("export", "{file}", "--output", "m.tflite", "--data", "x.npy"), "m.keras", False),
        Read(("export", "{run}", "--output", "m.tflite", "--data", "{file}"), "d.npz", False),
    ],
}
CASES = [
    pytest.param(command, index, hostile, id=f"{command} {read.name} as a {hostile}")
    for command, reads in READS.items()
    for index, read in enumerate(reads)
    for hostile in ("FIFO", "link out")
    if hostile == "FIFO" or read.confined
]


def test_every_command_is_in_the_table():
    assert set(READS) == set(cli.commands)


@pytest.fixture
def project(tmp_path, trained, monkeypatch):
    monkeypatch.delenv("SEQ_ALLOW_PATH", raising=False)
    folder = tmp_path / "project"
    write_tiny_project(folder, epochs=1, samples=16)
    np.save(folder / "x.npy", np.ones((4, 4, 4, 1), np.float32))
    spec = (folder / "tiny.yaml").read_text()
    (folder / SPEC_DATA).write_text(spec.replace("train: tiny.npz", "train: FILE"))
    (folder / "tune.yaml").write_text(
        spec.replace("train: tiny.npz", "train: d.npz") + "tune: {parameters: {train.epochs: {int: [1, 2]}}}\n"
    )
    (folder / "images.yaml").write_text(spec.replace("train: tiny.npz", "train: {path: imgs, image_size: [4, 4]}"))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text(SECRET + ": [\n")
    shutil.copytree(trained / "run", tmp_path / "run")
    monkeypatch.chdir(folder)
    return folder


def place(project: Path, read: Read, hostile: str) -> list[str]:
    """The hostile file where ``read`` reads; the command's arguments."""
    target = project / read.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if hostile == "FIFO":
        os.mkfifo(target)
    else:
        target.symlink_to(project.parent / "outside" / "secret")
    if SPEC_DATA in read.args:
        path = project / SPEC_DATA
        path.write_text(path.read_text().replace("train: FILE", f"train: {read.name}"))
    run = str(project.parent / "run")
    return [arg.replace("{file}", read.name).replace("{run}", run) for arg in read.args]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer in {TIMEOUT} s: a read blocked")


@pytest.mark.parametrize(("command", "index", "hostile"), CASES)
def test_a_fifo_or_a_link_out_is_refused_cleanly(project, command, index, hostile):
    read = READS[command][index]
    args = place(project, read, hostile)
    previous = signal.signal(signal.SIGALRM, _alarm)
    faulthandler.dump_traceback_later(BACKSTOP, exit=True)
    signal.alarm(TIMEOUT)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)
    shown = result.stdout + result.stderr
    assert not isinstance(result.exception, Hang), shown
    assert result.exit_code in (1, 2), shown
    assert "Traceback" not in shown and "unexpected" not in shown, shown
    assert SECRET not in shown, shown
    if read.name.endswith((".yaml", ".json")) and command in ("init", "schema"):
        return  # they write FILE: an existing FIFO is refused as something that exists, never opened
    words = ("FIFO",) if hostile == "FIFO" else ("leads out of",)
    assert any(word in shown for word in words), shown
