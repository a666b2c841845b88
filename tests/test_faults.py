"""kill -9 at 20 seeded random points of one training run, some of them inside checkpoint writes:
each time the run is resumed from what the last process left, and the end is the uninterrupted run's
weights, optimizer state and metric totals, to the bit, with no stray file in the run directory.

Each `seq train` is its own process, forked from a server that imported TensorFlow once (a fresh interpreter
costs ~10 s of imports on a busy CI machine; a forked one trains to the same bits, which the reference run,
made the same way, and test_cli_train's kill -9 test with a fresh interpreter both check). A process whose
write must be caught in the middle pauses inside seqcli.files._replace, after the temporary checkpoint is
complete and before it is renamed over last.npz (the window a real kill hits); the test waits for the
pause's marker and kills it there."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_same_checkpoint, write_tiny_project

pytestmark = pytest.mark.slow

KILLS = 20
EXTRA = "  checkpoint_every: 2\n"
EPOCHS, SAMPLES = 16, 256  # 24 steps an epoch, a checkpoint every 2 steps: 192 checkpoint writes
SERVER = """
import json, os, sys, time
from pathlib import Path
from seqcli.keras_env import import_keras, import_tensorflow
import_tensorflow(); import_keras()
import seqcli.files as files
from seqcli.cli import main
original = files._replace
def paused(temporary, target):
    marker = os.environ.get("SEQ_TEST_PAUSE_MARKER")
    if marker and target.name == "last.npz":
        Path(marker).write_text(str(temporary))
        time.sleep(60)  # killed here
    original(temporary, target)
files._replace = paused
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(request["cwd"])
        if request["marker"]:
            os.environ["SEQ_TEST_PAUSE_MARKER"] = request["marker"]
        sys.argv = ["seq", *request["argv"]]
        try:
            main()
        except SystemExit as exit:
            os._exit(exit.code if isinstance(exit.code, int) else 1)
        os._exit(0)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Server:
    """Forks `seq` processes from one interpreter that has imported TensorFlow."""

    def __init__(self):
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def start(self, folder: Path, *args: str, marker: Path | None = None) -> int:
        request = {"cwd": str(folder), "argv": list(args), "marker": str(marker) if marker else None}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def status(self) -> int:
        return int(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition, pid: int, seconds: float = 120) -> bool:
    """Whether ``condition`` came true while the process ``pid`` was still running."""
    deadline = time.monotonic() + seconds
    while not condition():
        if not alive(pid):
            return False
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.001)
    return True


def run_files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if not p.is_dir() and "logs" not in p.parts)


def test_kill_9_at_random_points_then_resume_to_the_same_weights(tmp_path):
    rng = random.Random(20240612)
    server = Server()
    train = ("train", "tiny.yaml", "--output", "run", "--quiet")
    reference, folder = tmp_path / "reference", tmp_path / "killed"
    for project in (reference, folder):
        write_tiny_project(project, epochs=EPOCHS, extra=EXTRA, samples=SAMPLES)
    server.start(reference, *train)
    assert server.status() == 0

    checkpoint = folder / "run" / "checkpoints" / "last.npz"
    marker = folder / "WRITING"
    kills = in_write = 0
    while kills < KILLS:
        inside = rng.random() < 0.4
        marker.unlink(missing_ok=True)
        resume = ("--resume",) if checkpoint.exists() else ()
        pid = server.start(folder, *train, *resume, marker=marker if inside else None)
        if inside:
            reached = wait_for(marker.exists, pid)
        else:  # a random moment after this process wrote its first checkpoint
            before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
            reached = wait_for(
                lambda before=before: checkpoint.exists() and checkpoint.stat().st_mtime_ns != before, pid
            )
            time.sleep(rng.uniform(0, 0.3))
        if not reached or not alive(pid):
            assert server.status() == 0
            break  # the run finished before this kill
        os.kill(pid, signal.SIGKILL)
        assert server.status() == -signal.SIGKILL
        kills += 1
        in_write += inside
        if inside:
            assert Path(marker.read_text()).exists(), "the kill came before the temporary checkpoint was written"
    assert kills == KILLS, f"the run finished after {kills} kills; make it longer"
    assert in_write >= 5, in_write

    marker.unlink(missing_ok=True)
    server.start(folder, *train, "--resume")
    assert server.status() == 0
    server.close()
    assert_same_checkpoint(reference / "run", folder / "run")
    assert run_files(folder / "run") == run_files(reference / "run")
    assert not list(folder.rglob(".seq-tmp-*")), "a temporary file outlived its process"
