"""seqcli.outputs: the one rule every writing command follows. Existing outputs only with overwrite, never an
input, never loose in a home folder; a manifest says what seq wrote, and only that is ever removed; stale
temporaries of dead processes are cleaned; one writer per folder."""

import os
import subprocess
import sys

import pytest

from seqcli.files import TEMPORARY_PREFIX
from seqcli.outputs import (
    OutputInUse,
    OutputRefused,
    check_output_file,
    check_output_folder,
    clean_stale,
    exclusive_lock,
    foreign_entries,
    read_manifest,
    record_members,
    remove_members,
)


def test_an_output_file_is_replaced_only_with_overwrite_and_never_an_input(tmp_path):
    target = tmp_path / "out.npy"
    assert check_output_file(target) == target
    target.write_text("mine")
    with pytest.raises(OutputRefused, match="exists"):
        check_output_file(target)
    assert check_output_file(target, overwrite=True) == target
    with pytest.raises(OutputRefused, match="is an input of this command"):
        check_output_file(target, inputs=[target], overwrite=True)
    (tmp_path / "data").mkdir()
    with pytest.raises(OutputRefused, match="is inside the input folder"):
        check_output_file(tmp_path / "data" / "p.npy", inputs=[tmp_path / "data"])


def test_home_root_and_the_current_folder_are_never_an_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target, what in [
        (tmp_path, "the current folder"),
        (tmp_path.parent, "a folder that holds the current"),
        ("/", "the filesystem root"),
    ]:
        with pytest.raises(OutputRefused, match=what):
            check_output_folder(target)
    assert check_output_folder(tmp_path / "run") == tmp_path / "run"


def test_member_folders_claimed_by_a_glob_are_judged_by_their_own_manifest(tmp_path):
    """A study folder claims trial-*; each trial folder is a run with a manifest of its own."""
    study = tmp_path / "study"
    study.mkdir()
    record_members(study, ["trial-*", "study.db"], "seq tune")
    (study / "study.db").write_text("db")
    trial = study / "trial-0000"
    trial.mkdir()
    record_members(trial, ["model.keras"], "seq train")
    (trial / "model.keras").write_text("m")
    assert foreign_entries(study) == []
    assert check_output_folder(study, own_ok=True) == study
    (trial / "notes.txt").write_text("mine")
    assert foreign_entries(study) == ["trial-0000/notes.txt"]


def test_a_folder_is_judged_by_its_manifest(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert check_output_folder(folder) == folder  # empty: used as it is
    record_members(folder, ["model.keras", "logs", "logs/*"], "seq train")
    assert read_manifest(folder) == ["model.keras", "logs", "logs/*"]
    (folder / "model.keras").write_text("m")
    (folder / "logs").mkdir()
    (folder / "logs" / "a").write_text("l")
    assert foreign_entries(folder) == []
    with pytest.raises(OutputRefused, match="exists"):
        check_output_folder(folder)
    assert check_output_folder(folder, own_ok=True) == folder
    (folder / "notes.txt").write_text("mine")
    assert foreign_entries(folder) == ["notes.txt"]
    with pytest.raises(OutputRefused, match="holds notes.txt that seq did not write; nothing was removed"):
        check_output_folder(folder, overwrite=True)
    with pytest.raises(OutputRefused):
        remove_members(folder)
    assert (folder / "model.keras").exists()
    (folder / "notes.txt").unlink()
    remove_members(folder)
    assert sorted(p.name for p in folder.iterdir()) == [".seq-run.json"]


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{TEMPORARY_PREFIX}{int(dead.stdout)}-x.npy"
    mine = tmp_path / f"{TEMPORARY_PREFIX}{os.getpid()}-y.npy"
    stale.write_text("")
    mine.write_text("")
    assert clean_stale(tmp_path) == [stale]
    assert mine.exists() and not stale.exists()
    assert clean_stale(tmp_path, every_process=True) == [mine]


def test_one_writer_at_a_time(tmp_path):
    with exclusive_lock(tmp_path, "seq train"):
        with pytest.raises(OutputInUse) as second:
            with exclusive_lock(tmp_path, "seq transfer"):
                pass
        assert f"seq train (PID {os.getpid()} on " in second.value.message
    with exclusive_lock(tmp_path, "seq transfer"):  # released when the block ends
        pass


def test_a_folder_replaced_when_killed_midway_is_put_back(tmp_path):
    """A kill between moving the old folder aside and moving the new one in loses neither: the next
    command puts the old one back (or, when the new one is in place, removes the old)."""
    from seqcli.outputs import recover_replaced

    target = tmp_path / "features"
    target.mkdir()
    record_members(target, ["a.npy"], "seq extract")
    (target / "a.npy").write_bytes(b"old")
    aside = tmp_path / ".features.seq-replaced"
    os.replace(target, aside)  # where replace_folder puts it; then the process dies
    check_output_folder(target, overwrite=True)
    assert (target / "a.npy").read_bytes() == b"old" and not aside.exists()
    os.replace(target, aside)
    target.mkdir()  # this time the new folder was in place
    recover_replaced(target)
    assert not aside.exists() and target.is_dir()
