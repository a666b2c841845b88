"""Atomic writes: the old file survives a failed write; new files get ordinary permissions."""

import os
import stat

import pytest

from seqcli.files import atomic_path, write_text_atomic


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "good")
    with pytest.raises(OSError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        write_text_atomic(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("x")
        kept.chmod(0o600)
        write_text_atomic(kept, "y")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "y"
    finally:
        os.umask(old)
