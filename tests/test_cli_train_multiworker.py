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


def one_thread_env() -> dict:
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env.pop("TF_CONFIG", None)
    return env


def train_two_workers(tmp_path: Path, prepare, spec: str, *options: str) -> list[tuple[int, str, str]]:
    """``seq train SPEC --strategy multi_worker`` as two workers on loopback, each in ``tmp_path/workerN`` made
    ready by ``prepare(folder)`` (again on every attempt with fresh ports); every worker must succeed."""

    def attempt(ports):
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        workers = []
        for index in range(2):
            folder = tmp_path / f"worker{index}"
            prepare(folder)
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            arguments = [spec, "--output", "run", "--strategy", "multi_worker", *options, "--overwrite"]
            workers.append(start(arguments, folder, {**one_thread_env(), "TF_CONFIG": config}))
        results = [finish(worker) for worker in workers]
        return results, "\n".join(stderr for _, _, stderr in results)

    results = with_free_ports(2, attempt)
    for code, _, stderr in results:
        assert code == 0, stderr
    return results


def test_two_workers_match_one_process(tmp_path):
    single = tmp_path / "single"
    write_tiny_project(single, epochs=2, dropout=None)
    reference = start(["tiny.yaml", "--output", "run", "--quiet"], single, one_thread_env())
    code, _, stderr = finish(reference)
    assert code == 0, stderr

    train_two_workers(
        tmp_path, lambda folder: write_tiny_project(folder, epochs=2, dropout=None), "tiny.yaml", "--quiet"
    )

    chief, other = tmp_path / "worker0" / "run", tmp_path / "worker1" / "run"
    assert (chief / "model.keras").exists() and (chief / "metrics.json").exists()
    assert not other.exists(), "a non-chief worker wrote a run directory"
    expected, got = final_weights(single / "run"), final_weights(chief)
    assert len(expected) == len(got) > 0
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


SHARDED_SPEC = """\
layers:
  - Input: {shape: [16]}
  - Dense: {units: 1, use_bias: false, kernel_initializer: zeros}
compile:
  optimizer: {SGD: {learning_rate: 1.0}}
  loss: mean_absolute_error
data:
  train: shards/*.npz
  batch_size: 4
  shuffle_buffer: 3
train:
  epochs: 2
  seed: 4
"""


IMAGE_SHARDS_SPEC = """\
layers:
  - Input: {shape: [4, 4, 1]}
  - Flatten: {}
  - Dense: {units: 1, use_bias: false, kernel_initializer: {Constant: {value: -1000.0}}}
compile:
  optimizer: {SGD: {learning_rate: 1.0}}
  loss: mean_absolute_error
data:
  train: {path: shards/*, image_size: [4, 4], color_mode: grayscale, scale: 0.00392156862745098}
  batch_size: 4
train:
  epochs: 2
  seed: 4
"""


def write_one_hot(folder: Path, kind: str, shards: int) -> None:
    """Sample j is the one-hot vector e_j: ``shards`` .npz files of them with a label far above any prediction,
    or (``images``) ``shards`` image folders of one class, each image white at pixel j, its label 0 far above
    the prediction of a kernel that starts at -1000."""
    identity = np.eye(16, dtype=np.float32)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    for shard, rows in enumerate(np.array_split(np.arange(16), shards)):
        if kind == "npz":
            np.savez(folder / "shards" / f"s{shard}.npz", x=identity[rows], y=np.full((len(rows), 1), 1e6, np.float32))
            continue
        from seqcli.keras_env import import_tensorflow

        tf = import_tensorflow()
        (folder / "shards" / f"s{shard}" / "a").mkdir(parents=True)
        for row in rows:
            pixels = (identity[row].reshape(4, 4, 1) * 255).astype(np.uint8)
            (folder / "shards" / f"s{shard}" / "a" / f"{row:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    (folder / "spec.yaml").write_text(SHARDED_SPEC if kind == "npz" else IMAGE_SHARDS_SPEC)


@pytest.mark.parametrize(
    ("kind", "shards", "header"),
    [
        ("npz", 4, "input by file (2 of 4 files on worker 0 of 2)"),
        ("npz", 1, "input by sample (each of 2 workers reads all the data and keeps its part of each batch)"),
        ("images", 4, "input by file (2 of 4 image folders on worker 0 of 2)"),
    ],
)
def test_two_workers_share_shards_and_see_each_sample_once_an_epoch(tmp_path, kind, shards, header):
    """With as many files (or image folders) as workers, each reads its own; with fewer, each reads all and keeps
    its part of every batch. Sample j is the one-hot vector e_j with a label far above any prediction, so each
    step adds (learning rate / global batch) to the weight of every sample in the global batch: after two
    epochs each weight counts how often its sample was seen, 0.5 when each was seen once an epoch."""

    def prepare(folder: Path) -> None:
        if not (folder / "spec.yaml").exists():
            write_one_hot(folder, kind, shards)

    results = train_two_workers(tmp_path, prepare, "spec.yaml")
    (kernel,) = final_weights(tmp_path / "worker0" / "run")
    start_value = 0.0 if kind == "npz" else -1000.0
    np.testing.assert_allclose(kernel.reshape(-1) - start_value, np.full(16, 0.5), atol=1e-6)
    assert header in results[0][1], results[0][1]
