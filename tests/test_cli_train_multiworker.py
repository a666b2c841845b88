"""Two `seq train` worker processes on 127.0.0.1 (TF_CONFIG) end with the weights one process gets with
the same global batch; only the chief writes a run directory. (No Dropout in the model: its masks are
drawn per replica, so they differ from one process's by design.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import with_free_ports, write_tiny_project

pytestmark = pytest.mark.slow


def final_weights(run: Path) -> list[np.ndarray]:
    with np.load(run / "checkpoints" / "last.npz") as archive:
        return [archive[name] for name in sorted(archive.files) if name.startswith("model")]


def start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "seqcli", "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"worker hung:\n{stderr}")
    return process.returncode, stdout, stderr


def test_two_workers_match_one_process(tmp_path):
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env.pop("TF_CONFIG", None)
    single = tmp_path / "single"
    write_tiny_project(single, epochs=2, dropout=None)
    reference = start(["tiny.yaml", "--output", "run", "--quiet"], single, env)
    code, _, stderr = finish(reference)
    assert code == 0, stderr

    def attempt(ports):
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        workers = []
        for index in range(2):
            folder = tmp_path / f"worker{index}"
            write_tiny_project(folder, epochs=2, dropout=None)
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            workers.append(
                start(
                    ["tiny.yaml", "--output", "run", "--strategy", "multi_worker", "--quiet", "--overwrite"],
                    folder,
                    {**env, "TF_CONFIG": config},
                )
            )
        results = [finish(worker) for worker in workers]
        return results, "\n".join(stderr for _, _, stderr in results)

    results = with_free_ports(2, attempt)
    for code, _, stderr in results:
        assert code == 0, stderr

    chief, other = tmp_path / "worker0" / "run", tmp_path / "worker1" / "run"
    assert (chief / "model.keras").exists() and (chief / "metrics.json").exists()
    assert not other.exists(), "a non-chief worker wrote a run directory"
    expected, got = final_weights(single / "run"), final_weights(chief)
    assert len(expected) == len(got) > 0
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
