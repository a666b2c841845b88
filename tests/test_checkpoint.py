"""seqcli.training.checkpoint: a run's state in one atomic file, readable without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from seqcli.training.checkpoint import CheckpointError, TrainingState, read_state
from tests.conftest import ROOT


def test_checkpoint_state_reads_without_tensorflow(tmp_path):
    state = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10, epoch=1, step=4, history=[{"epoch": 1}])
    np.savez(tmp_path / "last.npz", meta=np.array(state.to_json()))
    code = (
        "import sys; from seqcli.training.checkpoint import read_state; "
        f"s = read_state({str(tmp_path / 'last.npz')!r}); "
        "assert (s.epoch, s.step, s.global_step) == (1, 4, 14), s; "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert read_state(tmp_path / "last.npz").position() == "epoch 2/3, step 4/10"


def test_damaged_checkpoint_is_reported(tmp_path):
    (tmp_path / "last.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match=r"^checkpoint .*last\.npz is not a readable zip archive"):
        read_state(tmp_path / "last.npz")


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from seqcli.training import checkpoint

    state = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10)
    checkpoint.write_snapshot(tmp_path / "last.npz", {"meta": np.array(state.to_json()), "model/00000": np.ones(3)})
    before = (tmp_path / "last.npz").read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.write_snapshot(tmp_path / "last.npz", {"meta": np.array("{}")})
    assert (tmp_path / "last.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.npz"]  # no temporary file left behind


def test_writing_the_last_checkpoint_keeps_the_one_it_replaces(tmp_path):
    from seqcli.training import checkpoint

    first = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10, epoch=1)
    second = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10, epoch=2)
    last, previous = tmp_path / "last.npz", tmp_path / "previous.npz"
    checkpoint.write_snapshot(last, {"meta": np.array(first.to_json())}, previous)
    assert not previous.exists()  # nothing to keep yet
    checkpoint.write_snapshot(last, {"meta": np.array(second.to_json())}, previous)
    assert (read_state(previous).epoch, read_state(last).epoch) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz", "previous.npz"]
    assert checkpoint.usable_checkpoint(last, previous)[::2] == (last, None)
    last.unlink()  # lost: the one before it is used, and the note says why
    used, state, note = checkpoint.usable_checkpoint(last, previous)
    assert (used, state.epoch) == (previous, 1) and note.endswith(f"no checkpoint at {last}")


def test_a_sound_last_checkpoint_that_cannot_be_used_is_never_passed_over(tmp_path):
    """Only damage falls back: a checkpoint of a newer format (or over the memory budget) keeps its error."""
    from seqcli.training import checkpoint

    last, previous = tmp_path / "last.npz", tmp_path / "previous.npz"
    np.savez(previous, meta=np.array(TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10).to_json()))
    newer = TrainingState("abc", seed=1, epochs=3, steps_per_epoch=10, epoch=2, format=checkpoint.FORMAT + 1)
    np.savez(last, meta=np.array(newer.to_json()))
    with pytest.raises(CheckpointError, match="has format 2; this seq reads format 1") as raised:
        checkpoint.usable_checkpoint(last, previous)
    assert not isinstance(raised.value, checkpoint.DamagedCheckpoint)
    last.write_bytes(b"not a zip at all")
    used, _, note = checkpoint.usable_checkpoint(last, previous)
    assert used == previous and "is damaged: it is not a zip archive" in note
