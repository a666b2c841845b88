"""The parsed copy of a streamed source (TFRecord, CSV, compressed .npz shards): made from the blocks training's
first epoch parses, read by the epochs after it; the same batches as parsing every epoch, never a file with a
name, never on a file system without room or one that keeps files in memory."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.data import load_datasets, parsed, scratch, stream_readers, streams
from tests.test_data_streams import SAMPLES, SPEC, numbers_seen, tfrecord_source, write_tfrecords

SHARDS, BLOCK = 5, 5  # shards of 12 samples, parsed 5 at a time: blocks of 5, 5 and 2


@pytest.fixture(autouse=True)
def scratch_on_a_disk(tmp_path_factory, monkeypatch) -> None:
    """Scratch files go to a folder of the test's own, on a disk with room, whatever the host's /tmp is."""
    folder = tmp_path_factory.mktemp("scratch")
    table = folder.parent / f"{folder.name}-mounts"
    table.write_text("/dev/vda / ext4 rw 0 0\n")
    monkeypatch.setattr(scratch, "MOUNTS", str(table))
    monkeypatch.setattr(scratch, "DISK_HEADROOM", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))


def small_blocks(monkeypatch) -> None:
    """TFRecord records and CSV rows parsed :data:`BLOCK` at a time, so that a shard is several blocks."""
    monkeypatch.setattr(stream_readers, "RECORD_BLOCK", BLOCK)
    monkeypatch.setattr(streams, "CHUNK_ROWS", BLOCK)


@pytest.fixture(
    params=[  # the quick loop reads TFRecord; CSV and compressed .npz take the same path through the copy
        "tfrecord",
        pytest.param("csv", marks=pytest.mark.slow),
        pytest.param("compressed npz", marks=pytest.mark.slow),
    ]
)
def source(request, tmp_path, monkeypatch) -> dict:
    """Numbered shards of a kind that is parsed (the sample's one feature is its number), as a data section."""
    small_blocks(monkeypatch)
    x = np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1)
    y = np.arange(SAMPLES) % 3
    if request.param == "tfrecord":
        write_tfrecords(tmp_path, x, y, SHARDS)
        return {"train": tfrecord_source("train-*.tfrecord", [1])}
    for index, (xs, ys) in enumerate(zip(np.array_split(x, SHARDS), np.array_split(y, SHARDS))):
        if request.param == "csv":
            lines = ["v,label"] + [f"{value},{label}" for value, label in zip(xs.reshape(-1), ys)]
            (tmp_path / f"train-{index}.csv").write_text("\n".join(lines) + "\n")
        else:
            np.savez_compressed(tmp_path / f"train-{index}.npz", x=xs, y=ys)
    return {"train": {"path": "train-*.csv", "label": "label"} if request.param == "csv" else "train-*.npz"}


@pytest.fixture
def copy_reads(monkeypatch) -> list[tuple]:
    """The reads of the parsed copy, as they happen."""
    reads: list[tuple] = []
    rows = parsed.ParsedCopy.rows

    def counted(self, index, start, count):
        reads.append((int(index), int(start), int(count)))
        return rows(self, index, start, count)

    monkeypatch.setattr(parsed.ParsedCopy, "rows", counted)
    return reads


def epochs(datasets) -> list[list[int]]:
    """Epochs 1 and 2, epoch 2 again from its fourth batch, and the samples layers adapt on."""
    seen = [numbers_seen(datasets.train_for_epoch(epoch)) for epoch in (1, 2)]
    seen.append(numbers_seen(datasets.train_for_epoch(2, skip=3)))
    seen.append([int(value) for x in datasets.adapt_inputs(17) for value in x.numpy().reshape(-1)])
    return seen


@pytest.mark.parametrize("read", ["whole", pytest.param("a block at a time", marks=pytest.mark.slow)])
def test_later_epochs_read_the_parsed_copy_and_see_what_parsing_gives(tmp_path, source, copy_reads, monkeypatch, read):
    if read == "a block at a time":
        monkeypatch.setattr(streams, "WHOLE_SHARE", 0)  # the budget is short: a shard of the copy is never read whole
    section = {**source, "batch_size": 7, "shuffle_buffer": 8}
    parsing = load_datasets({**section, "cache": False}, tmp_path, seed=5)
    first, expected = numbers_seen(parsing.train_for_epoch(0)), epochs(parsing)
    assert sorted(first) == list(range(SAMPLES)) and copy_reads == []
    copied = load_datasets(section, tmp_path, seed=5)
    assert numbers_seen(copied.train_for_epoch(0)) == first and copy_reads == []  # parsed, and kept on the way
    for path in tmp_path.glob("train-*"):
        path.unlink()  # the copy holds every sample: the epochs after the first never open the shards
    assert epochs(copied) == expected
    whole = {(index, 0, 12) for index in range(SHARDS)}
    assert (set(copy_reads) == whole) == (read == "whole") and len(copy_reads) >= SHARDS


@pytest.mark.slow
def test_without_shuffling_the_copy_reads_the_shards_in_order(tmp_path, source, copy_reads):
    datasets = load_datasets({**source, "batch_size": 4, "shuffle": False}, tmp_path, seed=1)
    for epoch in range(3):
        assert numbers_seen(datasets.train_for_epoch(epoch)) == list(range(SAMPLES))
    assert numbers_seen(datasets.train_for_epoch(3, skip=2)) == list(range(8, SAMPLES))
    assert numbers_seen(datasets.train_for_epoch(3, skip=4)) == list(range(16, SAMPLES))  # from the second shard
    assert copy_reads


@pytest.mark.slow
@pytest.mark.parametrize("read", ["whole", "a block at a time"])
def test_empty_shards_and_shards_of_whole_blocks_read_alike_from_the_copy(tmp_path, monkeypatch, copy_reads, read):
    """Every epoch of train_epochs (the later ones built inside one traced flat_map): the batches parsing gives."""
    small_blocks(monkeypatch)
    if read == "a block at a time":
        monkeypatch.setattr(streams, "WHOLE_SHARE", 0)
    sizes = [10, 0, 15, 7, 10, 3]  # blocks of 5: whole blocks, an empty shard, a last block of 2 and of 3
    x = np.arange(sum(sizes), dtype=np.float32).reshape(-1, 1)
    for index, part in enumerate(np.split(x, np.cumsum(sizes)[:-1])):
        write_tfrecords(tmp_path / f"s{index}", part, np.zeros(len(part)), 1)
    section = {"train": tfrecord_source("s*/train-*.tfrecord", [1]), "batch_size": 4, "shuffle_buffer": 6}
    expected = numbers_seen(load_datasets({**section, "cache": False}, tmp_path, seed=8).train_epochs(0, 3))
    assert numbers_seen(load_datasets(section, tmp_path, seed=8).train_epochs(0, 3)) == expected
    assert copy_reads


def test_an_epoch_built_before_the_copy_is_whole_reads_it(tmp_path, monkeypatch, copy_reads):
    """Whether the copy is whole is asked as an epoch starts, not when it is built (training builds the next
    epoch while one runs)."""
    small_blocks(monkeypatch)
    write_tfrecords(tmp_path, np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1), np.zeros(SAMPLES), SHARDS)
    datasets = load_datasets({"train": tfrecord_source("train-*.tfrecord", [1]), "batch_size": 8}, tmp_path, seed=4)
    first, second = datasets.train_for_epoch(0), datasets.train_for_epoch(1)
    numbers_seen(first)
    assert copy_reads == []
    assert sorted(numbers_seen(second)) == list(range(SAMPLES)) and copy_reads


def test_a_copy_that_cannot_be_read_stops_training_with_a_data_error(tmp_path, monkeypatch):
    from tests.test_data_streams import failure_of

    small_blocks(monkeypatch)
    write_tfrecords(tmp_path, np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1), np.zeros(SAMPLES), SHARDS)
    datasets = load_datasets({"train": tfrecord_source("train-*.tfrecord", [1]), "batch_size": 8}, tmp_path, seed=4)
    numbers_seen(datasets.train_for_epoch(0))

    def unreadable(self, index, start, rows):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(parsed.ParsedCopy, "rows", unreadable)
    failure = failure_of(datasets.train_for_epoch(1))
    assert failure is not None
    assert failure.message == f"data.train: cannot read the parsed copy of the data: {os.strerror(errno.EIO)}"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the open files are listed under /proc")
def test_the_parsed_copy_is_a_file_with_no_name(tmp_path, monkeypatch):
    """Nothing in the temporary folder, before or after: a run killed with SIGKILL leaves nothing to clean."""
    small_blocks(monkeypatch)
    write_tfrecords(tmp_path, np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1), np.zeros(SAMPLES), 3)
    section = {"train": tfrecord_source("train-*.tfrecord", [1]), "batch_size": 8}
    numbers_seen(load_datasets(section, tmp_path, seed=2).train_for_epoch(0))  # autograph's own files, elsewhere
    scratch_folder = tmp_path / "scratch"
    scratch_folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_folder))
    datasets = load_datasets(section, tmp_path, seed=2)
    numbers_seen(datasets.train_for_epoch(0))
    assert list(scratch_folder.iterdir()) == []
    assert any(link.startswith(str(scratch_folder)) and link.endswith("(deleted)") for link in open_files())


def open_files() -> list[str]:
    """What this process's open file descriptors point to (a file with no name ends in "(deleted)")."""
    links = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        except OSError:  # closed since it was listed
            pass
    return links


def no_room(monkeypatch) -> None:
    monkeypatch.setattr(scratch, "DISK_HEADROOM", 1 << 62)


def in_memory(monkeypatch, tmp_path) -> None:
    """The temporary folder's file system is a tmpfs, by the mount table."""
    table = tmp_path / "mounts"
    table.write_text(f"/dev/vda / ext4 rw 0 0\ntmpfs {os.path.realpath(tempfile.gettempdir())} tmpfs rw 0 0\n")
    monkeypatch.setattr(scratch, "MOUNTS", str(table))


def disk_fills_up(monkeypatch) -> None:
    """The second write into the copy finds the disk full."""
    writes = []
    write_at = parsed.write_at

    def failing(handle, offset, data):
        writes.append(offset)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_at(handle, offset, data)

    monkeypatch.setattr(parsed, "write_at", failing)


@pytest.mark.slow
@pytest.mark.parametrize("trouble", [no_room, in_memory, disk_fills_up])
def test_without_room_for_the_copy_every_epoch_parses_the_shards(tmp_path, source, copy_reads, monkeypatch, trouble):
    """No room on the temporary folder's disk, a folder whose files live in memory, a disk full mid-copy: the
    same batches, parsed every epoch."""
    section = {**source, "batch_size": 7, "shuffle_buffer": 8}
    expected = epochs(load_datasets({**section, "cache": False}, tmp_path, seed=5))
    if trouble is in_memory:
        in_memory(monkeypatch, tmp_path)
    else:
        trouble(monkeypatch)
    datasets = load_datasets(section, tmp_path, seed=5)
    numbers_seen(datasets.train_for_epoch(0))
    assert epochs(datasets) == expected and copy_reads == []


def test_the_mount_table_says_which_file_system_holds_a_folder():
    table = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vdb /tmp/disk ext4 rw 0 0\ntmpfs /a\\040b tmpfs rw\n"
    assert scratch.mount_kind("/tmp/x", table) == "tmpfs"
    assert scratch.mount_kind("/tmp/disk/x", table) == "ext4"  # the innermost mount point
    assert scratch.mount_kind("/tmpfiles", table) == "ext4"  # /tmp is not a folder above /tmpfiles
    assert scratch.mount_kind("/a b/c", table) == "tmpfs"  # a space in a mount point is written \040
    assert scratch.mount_kind("/tmp", "tmpfs /tmp tmpfs rw\n/dev/vdc /tmp ext4 rw\n") == "ext4"  # mounted last


@pytest.fixture
def copies_made(monkeypatch) -> list[tuple]:
    """The parsed copies made, as they are: each one's shard counts."""
    made: list[tuple] = []
    create = parsed.ParsedCopy.create.__func__

    def counted(cls, counts, *args):
        made.append(tuple(counts))
        return create(cls, counts, *args)

    monkeypatch.setattr(parsed.ParsedCopy, "create", classmethod(counted))
    return made


@pytest.mark.parametrize("epochs_trained, copies", [(1, 0), pytest.param(2, 1, marks=pytest.mark.slow)])
def test_a_run_of_one_epoch_makes_no_copy(tmp_path, monkeypatch, copies_made, epochs_trained, copies):
    """One epoch reads the data once: nothing to keep for another."""
    monkeypatch.chdir(tmp_path)
    write_tfrecords(tmp_path / "records", np.random.default_rng(0).random((24, 4, 4, 1)), np.arange(24) % 3, 2)
    source = str(tfrecord_source("records/*.tfrecord", [4, 4, 1])).replace("'", "")
    spec = SPEC.format(train=source).replace("epochs: 2", f"epochs: {epochs_trained}")
    (tmp_path / "spec.yaml").write_text(spec)
    result = CliRunner().invoke(cli, ["train", "spec.yaml", "--output", "run", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(copies_made) == copies


def test_a_copy_is_kept_of_the_training_data_alone(tmp_path, copies_made):
    """Validation split off a stream is read as it is, once an epoch."""
    write_tfrecords(tmp_path, np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1), np.zeros(SAMPLES), SHARDS)
    section = {"train": tfrecord_source("train-*.tfrecord", [1]), "validation": 0.4, "batch_size": 8}
    datasets = load_datasets(section, tmp_path, seed=3)
    training = numbers_seen(datasets.train_for_epoch(0))
    validation = numbers_seen(datasets.validation)
    assert copies_made == [(12,) * (len(training) // 12)]
    assert numbers_seen(datasets.validation) == validation and sorted(training + validation) == list(range(SAMPLES))


def test_scratch_files_have_room_only_on_a_disk(tmp_path, monkeypatch):
    assert scratch.has_room(str(tmp_path), 1)
    in_memory(monkeypatch, tmp_path)
    assert not scratch.has_room(tempfile.gettempdir(), 1)
    monkeypatch.setattr(scratch, "MOUNTS", str(tmp_path / "absent"))  # no table: a system that does not say
    assert scratch.has_room(tempfile.gettempdir(), 1)
    monkeypatch.setattr(scratch, "DISK_HEADROOM", 1 << 20)
    assert not scratch.has_room(str(tmp_path), shutil.disk_usage(tmp_path).free)  # the headroom is kept


def test_a_temporary_folder_that_cannot_hold_a_file_makes_no_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    assert scratch.scratch_file(1) is None


def test_the_copy_holds_the_samples_as_batches_hold_them(tmp_path, copy_reads):
    """Inputs scaled as float32, class indices as int64, the same in every epoch."""
    write_tfrecords(tmp_path, np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1), np.arange(SAMPLES) % 3, 2)
    source = {**tfrecord_source("train-*.tfrecord", [1]), "scale": 0.5}
    datasets = load_datasets({"train": source, "batch_size": 8, "shuffle": False}, tmp_path, seed=3)
    for epoch in range(2):
        pairs = [(x.numpy(), y.numpy()) for x, y in datasets.train_for_epoch(epoch)]
        x, y = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
        assert (x.dtype, y.dtype) == (np.float32, np.int64)
        np.testing.assert_array_equal(x.reshape(-1), np.arange(SAMPLES) * 0.5)
        np.testing.assert_array_equal(y, np.arange(SAMPLES) % 3)
    assert copy_reads
