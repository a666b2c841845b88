"""seqcli.outputs: the one rule every writing command follows. Existing outputs only with overwrite, never an
input, never loose in a home folder; a manifest says what seq wrote, and only that is ever removed; stale
temporaries of dead processes are cleaned; one writer per folder."""

import os
import subprocess
import sys

import pytest

from seqcli.files import TEMPORARY_PREFIX
from seqcli.manifest import ManifestError, judge, open_writing, read_manifest, record_members, remove_members, seal
from seqcli.outputs import (
    LOCK,
    MANIFEST,
    OutputInUse,
    OutputRefused,
    check_output_file,
    check_output_folder,
    claim_output,
    clean_stale,
    exclusive_lock,
    replace_folder,
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


def test_member_folders_are_judged_by_their_own_manifest(tmp_path):
    """A study folder records each trial folder by name; each trial is a run with a manifest of its own."""
    study = tmp_path / "study"
    study.mkdir()
    record_members(study, ["trial-0000/", "study.db"], "seq tune")
    (study / "study.db").write_text("db")
    trial = study / "trial-0000"
    trial.mkdir()
    record_members(trial, ["model.keras"], "seq train")
    (trial / "model.keras").write_text("m")
    seal(trial, "seq train")
    seal(study, "seq tune")
    assert judge(study).clean()
    assert check_output_folder(study, own_ok=True) == study
    (trial / "notes.txt").write_text("mine")
    (study / "trial-notes.txt").write_text("mine")
    (study / "trial-analysis").mkdir()
    assert judge(study).foreign == ["trial-0000/notes.txt", "trial-analysis/", "trial-notes.txt"]


def test_a_folder_is_judged_by_its_manifest(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert check_output_folder(folder) == folder  # empty: used as it is
    record_members(folder, ["model.keras", "logs/", "logs/a"], "seq train")
    assert sorted(read_manifest(folder).members) == ["logs", "logs/a", "model.keras"]
    (folder / "model.keras").write_text("m")
    (folder / "logs").mkdir()
    (folder / "logs" / "a").write_text("l")
    seal(folder, "seq train")
    assert judge(folder).clean()
    with pytest.raises(OutputRefused, match="exists"):
        check_output_folder(folder)
    assert check_output_folder(folder, own_ok=True) == folder
    (folder / "notes.txt").write_text("mine")
    assert judge(folder).foreign == ["notes.txt"]
    with pytest.raises(OutputRefused, match="holds notes.txt that seq did not write; nothing was removed"):
        check_output_folder(folder, overwrite=True)
    with pytest.raises(OutputRefused):
        remove_members(folder)
    assert (folder / "model.keras").exists()
    (folder / "notes.txt").unlink()
    remove_members(folder)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]


def test_a_member_changed_since_seq_wrote_it_is_not_removed(tmp_path):
    """A file's size is recorded when its writer is done; a file of another size (or a link, or a folder where
    a file was) is the user's now. While a writer is at work (or was killed at work), what it changed since
    it started is its own."""
    folder = tmp_path / "run"
    folder.mkdir()
    record_members(folder, ["spec.yaml", "model.keras"], "seq train")
    (folder / "spec.yaml").write_text("layers: []\n")
    (folder / "model.keras").write_text("m")
    seal(folder, "seq train")
    (folder / "spec.yaml").write_text("layers: [] # my edit\n")
    with pytest.raises(OutputRefused, match="spec.yaml changed since seq wrote it; nothing was removed"):
        remove_members(folder)
    (folder / "spec.yaml").unlink()
    (folder / "spec.yaml").symlink_to(folder / "model.keras")
    with pytest.raises(OutputRefused, match="spec.yaml changed since"):
        remove_members(folder)
    assert (folder / "model.keras").read_text() == "m"
    (folder / "spec.yaml").unlink()
    open_writing(folder, "seq train")  # a writer at work: its fresh files are its own
    (folder / "model.keras").write_text("a longer model")
    remove_members(folder)
    assert not (folder / "model.keras").exists()


@pytest.mark.parametrize(
    ("members", "why"),
    [
        (["*"], "a pattern"),
        (["trial-*"], "a pattern"),
        (["../outside.txt"], "not a plain path below the folder"),
        (["/etc/passwd"], "not a relative path"),
        ([LOCK], "one of seq's own working files"),
        ([f"logs/{MANIFEST}"], "one of seq's own working files"),
        (["a/./b"], "not a plain path below the folder"),
    ],
)
def test_a_member_seq_cannot_have_written_is_never_recorded(tmp_path, members, why):
    with pytest.raises(OutputRefused, match=why):
        record_members(tmp_path, members, "seq train")
    assert not (tmp_path / MANIFEST).exists()


@pytest.mark.parametrize(
    ("manifest", "why"),
    [
        ('{"format": 2, "members": {"*": {"kind": "file"}}}', "'\\*' is a pattern"),
        ('{"members": ["*"], "written_by": "seq train"}', "lists members by pattern, as an earlier seq wrote it"),
        ('{"format": 2, "members": {"../x": {"kind": "file"}}}', "not a plain path"),
        ('{"format": 2, "members": {".seq-lock": {"kind": "file"}}}', "seq's own working files"),
        ('{"format": 2, "members": {"a/b": {"kind": "file"}}}', "lies in a folder the manifest does not list"),
        ('{"format": 2, "members": {"a": {"kind": "device"}}}', "no kind"),
        ('{"format": 2, "members": {"a": {"kind": "file", "size": -1}}}', "negative size"),
        ('{"format": 2, "members": {"a": {"kind": "file", "size": true}}}', "byte count"),
        ("{nope", "invalid JSON at line 1"),
        ("[1, 2]", "not a manifest seq writes"),
    ],
)
def test_a_manifest_seq_cannot_trust_removes_nothing(tmp_path, manifest, why):
    (tmp_path / "mine.txt").write_text("keep")
    (tmp_path / MANIFEST).write_text(manifest)
    with pytest.raises(ManifestError, match=why) as refused:
        remove_members(tmp_path)
    assert "nothing was removed" in refused.value.message
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_a_manifest_that_is_a_link_is_not_read(tmp_path):
    (tmp_path / "elsewhere.json").write_text('{"format": 2, "members": {}}')
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ManifestError, match="not a plain file"):
        read_manifest(run)


def test_a_folder_holding_a_link_is_never_written_through(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "logs").symlink_to(tmp_path / "elsewhere")
    for rule in ({}, {"own_ok": True}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(OutputRefused, match="holds the symbolic link logs; seq writes inside its folders"):
            check_output_folder(run, **rule)


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
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom seqcli.outputs import exclusive_lock\n"
        "with exclusive_lock(Path(sys.argv[1]), 'seq train'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(OutputInUse) as second:
            with exclusive_lock(tmp_path, "seq transfer"):
                pass
        assert f"seq train (PID {holder.pid} on " in second.value.message
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(tmp_path, "seq transfer"):  # released when its holder ends, however it ends
        pass


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path):
    (tmp_path / "victim.txt").write_text("keep")
    (tmp_path / LOCK).symlink_to(tmp_path / "victim.txt")
    with pytest.raises(OutputRefused, match="its lock file .seq-lock is a link"):
        with exclusive_lock(tmp_path, "seq train"):
            pass
    assert (tmp_path / "victim.txt").read_text() == "keep"


def test_a_single_file_output_is_locked_beside_it_and_leaves_no_lock_file(tmp_path):
    """Two files of one folder are written at once; one file by one command; a file in a folder another
    command holds (a run being trained) is in use."""
    with claim_output(tmp_path / "p.npy", "seq predict", folder=False) as target:
        assert (tmp_path / ".p.npy.seq-lock").is_file()
        target.write_bytes(b"x")
        with pytest.raises(OutputInUse, match="p.npy is in use"):
            subprocess_claim(tmp_path / "p.npy")
        subprocess_claim(tmp_path / "q.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "q.npy"]
    (tmp_path / "run").mkdir()
    code = "import sys, time\nfrom pathlib import Path\nfrom seqcli.outputs import exclusive_lock\n"
    code += "with exclusive_lock(Path(sys.argv[1]), 'seq train'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(OutputInUse, match="run is in use: seq train"):
            with claim_output(tmp_path / "run" / "p.npy", "seq predict", folder=False):
                raise AssertionError("wrote into a folder another command holds")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK]


def subprocess_claim(target):
    """Claim a single output file from another process: OutputInUse when this one holds it."""
    code = "import sys\nfrom pathlib import Path\nfrom seqcli.outputs import claim_output\n"
    code += "with claim_output(Path(sys.argv[1]), 'x', folder=False, overwrite=True) as t:\n    t.write_text('y')\n"
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    if "OutputInUse" in done.stderr:
        raise OutputInUse(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("make", "folder", "words"),
    [
        (lambda p: p.mkdir(), False, "is a folder, and this command writes a file there"),
        (lambda p: p.write_text("mine"), True, "is a file, and this command writes a folder there"),
        (None, False, "one of seq's own working files"),
    ],
)
def test_an_output_of_the_wrong_kind_is_refused_before_any_work(tmp_path, make, folder, words):
    target = tmp_path / ("out" if make else LOCK)
    if make:
        make(target)
    with pytest.raises(OutputRefused, match=words):
        with claim_output(target, "seq export", folder=folder, overwrite=True):
            raise AssertionError("worked on a refused output")


def test_replacing_a_folder_keeps_the_lock_held(tmp_path):
    target = tmp_path / "saved"
    staged = tmp_path / "staged"
    staged.mkdir()
    record_members(staged, ["saved_model.pb"], "seq export")
    (staged / "saved_model.pb").write_text("pb")
    seal(staged, "seq export")
    with claim_output(target, "seq export", folder=True):
        held = os.stat(target / LOCK).st_ino
        replace_folder(staged, target)
        assert os.stat(target / LOCK).st_ino == held
        with pytest.raises(OutputInUse):
            subprocess_lock(target)
    assert sorted(p.name for p in target.iterdir()) == [LOCK, MANIFEST, "saved_model.pb"]


def subprocess_lock(folder):
    """Try the lock from another process: OutputInUse when this one holds it."""
    code = "import sys\nfrom pathlib import Path\nfrom seqcli.outputs import exclusive_lock\n"
    code += "with exclusive_lock(Path(sys.argv[1]), 'x'):\n    pass\n"
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    if "OutputInUse" in done.stderr:
        raise OutputInUse("in use")
    assert done.returncode == 0, done.stderr


def test_a_folder_replaced_when_killed_midway_is_put_back(tmp_path):
    """A kill between moving the old folder aside and moving the new one in loses neither: the next
    command puts the old one back (or, when the new one is in place, removes the old)."""
    from seqcli.outputs import recover_replaced

    target = tmp_path / "features"
    target.mkdir()
    record_members(target, ["a.npy"], "seq extract")
    (target / "a.npy").write_bytes(b"old")
    seal(target, "seq extract")
    aside = tmp_path / ".features.seq-replaced"
    os.replace(target, aside)  # where replace_folder puts it; then the process dies
    check_output_folder(target, overwrite=True)
    assert (target / "a.npy").read_bytes() == b"old" and not aside.exists()
    os.replace(target, aside)
    target.mkdir()  # this time the new folder was in place
    recover_replaced(target)
    assert not aside.exists() and target.is_dir()
