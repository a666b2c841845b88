"""README promises, each with a test that fails when it breaks: a weightless check measured
in memory, `expect` with null and with the wrong length, --devices, a second Ctrl-C, and a quick mid-epoch
resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_same_checkpoint, write_tiny_project
from tests.conftest import run_seq as run

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- weightless summary and check

MEASURE = """
import json, resource, sys
from click.testing import CliRunner
from seqcli.cli import cli
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
runner, peaks = CliRunner(), []
for spec in sys.argv[1:]:
    for command in ("check", "summary"):
        result = runner.invoke(cli, [command, spec])
        assert result.exit_code == 0, result.output
        peaks.append(peak())
print(json.dumps(peaks))
"""


@pytest.mark.slow
def test_a_64m_parameter_check_allocates_no_weights(tmp_path):
    """check and summary of 64M parameters (256 MB of float32) after a tiny one, in one process: the peak
    grows by far less than the weights would take (770 MB without keras.StatelessScope)."""
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("layers:\n  - Input: {shape: [8]}\n  - Dense: {units: 8}\n")
    big = tmp_path / "big.yaml"
    big.write_text("layers:\n  - Input: {shape: [8000]}\n  - Dense: {units: 8000}\n  - Dense: {units: 8}\n")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tiny), str(big)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = json.loads(done.stdout.splitlines()[-1])
    grown = peaks[-1] - peaks[1]
    assert grown < 64 << 20, f"check and summary of 64M parameters grew the peak by {grown / 2**20:.0f} MB"


# ----------------------------------------------------------------------------- expect


@pytest.mark.parametrize(
    ("expect", "ok"),
    [
        ("[null, 4]", True),  # null: any size
        ("[null, null]", True),
        ("[6, 4]", True),
        ("[null, 5]", False),
        ("[6]", False),  # the length counts: (6, 4) has two dimensions
        ("[6, 4, 1]", False),
    ],
)
def test_expect_null_is_any_size_and_the_length_counts(write_spec, expect, ok):
    spec = write_spec(f"layers:\n  - Input: {{shape: [6, 3]}}\n  - Dense: {{units: 4}}\n    expect: {expect}\n")
    result = run("check", spec)
    assert result.exit_code == (0 if ok else 1), result.output
    if not ok:
        assert f"{spec}:4:13: layers[1].expect: expected output shape" in result.stderr
        assert "built (6, 4)" in result.stderr


def test_expect_of_two_dimensions_against_three(write_spec):
    spec = write_spec(
        "layers:\n  - Input: {shape: [6, 6, 1]}\n  - Conv2D: {filters: 2, kernel_size: 1}\n    expect: [6, 6]\n"
    )
    result = run("check", spec)
    assert result.exit_code == 1
    assert f"{spec}:4:13: layers[1].expect: expected output shape (6, 6), built (6, 6, 2)" in result.stderr


def test_expect_output_null_is_any_size(write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [6, 3]}\n  - Dense: {units: 4}\nexpect:\n  output: [null, 4]\n")
    assert run("check", spec).exit_code == 0
    spec.write_text(spec.read_text().replace("[null, 4]", "[4]"))
    result = run("check", spec)
    assert result.exit_code == 1 and f"{spec}:5:11: expect.output" in result.stderr


def test_the_did_you_mean_for_a_class_ignores_case(write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [5, 3]}\n  - gru: {units: 2}\n")
    result = run("check", spec)
    assert result.exit_code == 1
    assert f"{spec}:3:5: layers[1].gru: unknown layer class 'gru'" in result.stderr
    assert "hint: did you mean 'GRU'?" in result.stderr


# ----------------------------------------------------------------------------- devices


def test_devices_puts_training_on_the_named_device(tmp_path):
    spec = write_tiny_project(tmp_path, epochs=1, samples=32)
    result = run("train", spec, "--output", tmp_path / "run", "--devices", "/cpu:0")
    assert result.exit_code == 0, result.output
    assert "CPU:0" in result.stdout
    missing = run("train", spec, "--output", tmp_path / "other", "--devices", "/gpu:7")
    assert missing.exit_code == 1
    assert "no device '/gpu:7' on this machine; available: CPU:0" in missing.stderr
    assert not (tmp_path / "other").exists()


# ----------------------------------------------------------------------------- interruptions


def test_a_stop_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A stop after step 5 of 8 in the first epoch (the in-process form of Ctrl-C), then --resume: the
    uninterrupted run's weights, optimizer state and metric totals, to the bit."""
    from seqcli.training import loop

    extra = "  checkpoint_every: 1\n"
    reference = write_tiny_project(tmp_path / "reference", epochs=2, extra=extra, samples=64)
    assert run("train", reference, "--output", tmp_path / "reference" / "run", "-q").exit_code == 0

    spec = write_tiny_project(tmp_path / "stopped", epochs=2, extra=extra, samples=64)
    steps_done = loop.Trainer.steps_done

    def stop_at_step_5(self, done, logs):
        if done == 5 and self.setup.state.epoch == 0:
            self.guard.received = signal.SIGINT
        steps_done(self, done, logs)

    monkeypatch.setattr(loop.Trainer, "steps_done", stop_at_step_5)
    stopped = run("train", spec, "--output", tmp_path / "stopped" / "run")
    assert stopped.exit_code == 130, stopped.output
    assert "training stopped at epoch 1/2, step 5" in stopped.stderr
    monkeypatch.undo()
    resumed = run("train", spec, "--output", tmp_path / "stopped" / "run", "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert_same_checkpoint(tmp_path / "reference" / "run", tmp_path / "stopped" / "run")


SLOW_CHECKPOINT = """layers:
  - Input: {shape: [2048]}
  - Dense: {units: 4096}
  - Dense: {units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
data: {train: wide.npz, batch_size: 8}
train: {epochs: 100, seed: 1, checkpoint_every: 1}
"""


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    """A real process: the first SIGINT asks for a checkpoint (about 100 MB here, so it takes a while); the
    second, sent while it is written, ends the process at once with 130."""
    import numpy as np

    np.savez(tmp_path / "wide.npz", x=np.zeros((64, 2048), np.float32), y=np.zeros(64, np.int64))
    (tmp_path / "wide.yaml").write_text(SLOW_CHECKPOINT)
    process = subprocess.Popen(
        [sys.executable, "-m", "seqcli", "train", "wide.yaml", "--output", "run"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 240
    while not (tmp_path / "run" / "checkpoints" / "last.npz").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    first = ""
    while "saving a checkpoint" not in first:
        first = process.stderr.readline()
        assert first, "the first SIGINT was not acknowledged"
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    rest = process.stderr.read()
    process.wait(timeout=60)
    assert time.monotonic() - sent < 5, "the second Ctrl-C did not end the run at once"
    assert process.returncode == 130, rest
    assert "SIGINT again: exiting at once, without a checkpoint" in rest
    assert "checkpoint saved" not in rest, "the run went on to finish its checkpoint"
