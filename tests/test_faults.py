"""kill -9 at 20 seeded random points of one training run (issue 12 §7), some of them inside checkpoint writes:
each time the run is resumed from what the last process left, and the end is the uninterrupted run's
weights, optimizer state and metric totals, to the bit, with no stray file in the run directory.

A process whose writes must be caught in the middle gets a pause inside seqcli.files._replace, after the
temporary file is complete and before it is renamed over the checkpoint (the window a real kill hits): the
test waits for the pause's marker and kills it there."""

from __future__ import annotations

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
EPOCHS, SAMPLES = 4, 256  # 24 steps an epoch, a checkpoint every 2 steps: 48 checkpoint writes
CHILD = """
import os, sys, time
from pathlib import Path
import seqcli.files as files
marker = Path(sys.argv[1])
original = files._replace
def paused(temporary, target):
    if target.name == "last.npz" and os.environ.get("SEQ_TEST_PAUSE_IN_WRITE"):
        marker.write_text(str(temporary))
        time.sleep(30)  # killed here
    original(temporary, target)
files._replace = paused
from seqcli.cli import main
sys.argv = ["seq", *sys.argv[2:]]
main()
"""


def start(folder: Path, *, resume: bool, pause_in_write: bool) -> subprocess.Popen:
    args = ["train", "tiny.yaml", "--output", "run", "--quiet", *(["--resume"] if resume else [])]
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env.pop("SEQ_TEST_PAUSE_IN_WRITE", None)
    if pause_in_write:
        env["SEQ_TEST_PAUSE_IN_WRITE"] = "1"
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder / "WRITING"), *args], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.001)
    return True


def run_files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if not p.is_dir() and "logs" not in p.parts)


def test_kill_9_at_random_points_then_resume_to_the_same_weights(tmp_path):
    rng = random.Random(20240612)
    reference = tmp_path / "reference"
    write_tiny_project(reference, epochs=EPOCHS, extra=EXTRA, samples=SAMPLES)
    done = subprocess.run([sys.executable, "-m", "seqcli", "train", "tiny.yaml", "--output", "run", "--quiet"],
                          cwd=reference, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    folder = tmp_path / "killed"
    write_tiny_project(folder, epochs=EPOCHS, extra=EXTRA, samples=SAMPLES)
    checkpoint = folder / "run" / "checkpoints" / "last.npz"
    marker = folder / "WRITING"
    kills = in_write = 0
    while kills < KILLS:
        inside = rng.random() < 0.4
        marker.unlink(missing_ok=True)
        process = start(folder, resume=checkpoint.exists(), pause_in_write=inside)
        if inside:
            reached = wait_for(marker.exists, process)
        else:  # a random moment after training has started (the first checkpoint of this process is written)
            before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
            reached = wait_for(lambda before=before: checkpoint.exists() and checkpoint.stat().st_mtime_ns != before,
                               process)
            time.sleep(rng.uniform(0, 0.5))
        if not reached or process.poll() is not None:
            assert process.wait() == 0, process.stderr.read()
            break  # the run finished before this kill: it is complete
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        process.stderr.close()
        kills += 1
        in_write += inside
        if inside:
            assert Path(marker.read_text()).exists(), "the kill came before the temporary checkpoint was written"
    assert kills == KILLS, f"the run finished after {kills} kills; make it longer"
    assert in_write >= 5, in_write

    marker.unlink(missing_ok=True)
    final = start(folder, resume=True, pause_in_write=False)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    final.stderr.close()
    assert_same_checkpoint(reference / "run", folder / "run")
    assert run_files(folder / "run") == run_files(reference / "run")
    assert not [p for p in (folder / "run").rglob(".seq-tmp-*")], "a temporary file outlived its process"
