"""Output files: the old file survives a failed write; new files get ordinary permissions; an output that
cannot be written is one OutputError that says what and how to fix it."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from seqcli import files
from seqcli.files import OutputError, atomic_path, check_writable_file, write_text_atomic


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "good")
    with pytest.raises(OSError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o027, 0o640), (0o077, 0o600)])
def test_new_files_follow_the_umask_seq_started_with(tmp_path, umask, mode):
    """A process's umask, read once when seq starts (never set to read it: that races other threads)."""
    fresh = tmp_path / "fresh.txt"
    write = (
        f"import os; from seqcli.files import write_text_atomic; write_text_atomic({str(fresh)!r}, 'x'); "
        "print(oct(os.umask(0)))"
    )
    result = subprocess.run(
        ["sh", "-c", f'umask {umask:03o} && exec "$0" -c "$1"', sys.executable, write], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == mode
    assert result.stdout == f"{oct(umask)}\n"  # the write left the umask as it was


def test_writing_never_sets_the_umask(tmp_path, monkeypatch):
    """Setting it to read it would change the mode of files other threads create meanwhile."""

    def refuse(mask):
        raise AssertionError("os.umask called while writing")

    monkeypatch.setattr(os, "umask", refuse)
    write_text_atomic(tmp_path / "fresh.txt", "x")
    assert stat.S_IMODE((tmp_path / "fresh.txt").stat().st_mode) == 0o666 & ~files.UMASK


def test_replaced_files_keep_their_mode(tmp_path):
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o600)
    write_text_atomic(kept, "y")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "y"


# ----------------------------------------------------------------------------- unwritable outputs


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/proc/seq-test/x.keras", "cannot create the folder /proc/seq-test for x.keras: No such file or directory"),
        ("/proc/x.keras", "cannot write /proc/x.keras: No such file or directory"),
        ("{tmp}/notes.txt/x.keras", "cannot create the folder {tmp}/notes.txt for x.keras: {tmp}/notes.txt is a file"),
        ("{tmp}", "cannot write {tmp}: it is a directory"),
    ],
)
def test_check_writable_file_says_what_is_wrong(tmp_path, name, expected):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(OutputError) as raised:
        check_writable_file(name.format(tmp=tmp_path))
    assert raised.value.message == expected.format(tmp=tmp_path)
    assert raised.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_check_writable_file_creates_the_folder_and_leaves_no_probe(tmp_path):
    assert check_writable_file(tmp_path / "new" / "model.keras") == tmp_path / "new" / "model.keras"
    assert list((tmp_path / "new").iterdir()) == []
    assert check_writable_file(tmp_path, directory_ok=True) == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["new"]


def test_atomic_path_reports_a_target_it_cannot_create(tmp_path):
    with pytest.raises(OutputError, match=r"^cannot write /proc/x.keras: No such file or directory$"):
        with atomic_path("/proc/x.keras"):
            pass


def test_a_failed_rename_is_an_output_error_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.keras"
    target.write_text("good")

    def full_disk(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError) as raised, atomic_path(target) as temporary:
        temporary.write_text("new")
    monkeypatch.undo()
    assert raised.value.message == f"cannot write {target}: No space left on device"
    assert "previous file, if any, is intact" in raised.value.hint
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.ENOSPC  # for `except OSError` callers
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_directory_in_the_way_is_an_output_error(tmp_path):
    (tmp_path / "out.npz").mkdir()
    with (
        pytest.raises(OutputError, match="cannot write .*out.npz: Is a directory"),
        atomic_path(tmp_path / "out.npz") as temporary,
    ):
        temporary.write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]
