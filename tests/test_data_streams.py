"""Streamed sources (shards and TFRecord): every epoch's order a pure function of (seed, epoch), each sample once
an epoch, exact resume by skipping batches of the same stream, the same training as one in-memory file, memory
priced up front and flat as the data grows."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.budget import configure
from seqcli.cli import cli
from seqcli.data import DataError, load_datasets, stream_readers, streams
from tests.conftest import assert_same_checkpoint, write_tiny_project

SAMPLES, SHARDS = 60, 5


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray, shards: int, name: str = "train") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards))):
        paths.append(folder / f"{name}-{index:02d}.npz")
        np.savez(paths[-1], x=xs, y=ys)
    return paths


def write_tfrecords(folder: Path, x: np.ndarray, y: np.ndarray, shards: int, compression: str = "") -> list[Path]:
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards))):
        paths.append(folder / f"train-{index:02d}.tfrecord{'.gz' if compression else ''}")
        with tf.io.TFRecordWriter(str(paths[-1]), options=compression or None) as writer:
            for sample, label in zip(xs, ys):
                feature = {
                    "image": tf.train.Feature(float_list=tf.train.FloatList(value=sample.reshape(-1).tolist())),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return paths


def tfrecord_source(pattern: str, shape: list[int], compression: str | None = None) -> dict:
    source = {
        "path": pattern,
        "x": "image",
        "y": "label",
        "features": {"image": {"dtype": "float32", "shape": shape}, "label": {"dtype": "int64"}},
    }
    return {**source, "compression": compression} if compression else source


@pytest.fixture
def numbered(tmp_path) -> Path:
    """Shards whose one feature is the sample's number."""
    x = np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1)
    write_shards(tmp_path, x, np.arange(SAMPLES) % 3, SHARDS)
    return tmp_path


@pytest.fixture(params=["whole", "short budget", "large"])
def reading(request, monkeypatch) -> str:
    """Small shards read whole, one read each, or a few samples at a time when the memory budget is short (in
    the same order), or shards as large ones are read (a few samples from each of several in turn): the same
    promises every way."""
    if request.param == "short budget":
        read_in_chunks(monkeypatch)
        monkeypatch.setattr(streams, "WHOLE_SHARE", 0)
    if request.param == "large":
        read_in_chunks(monkeypatch, large=True)
    return request.param


def read_in_chunks(monkeypatch, *, large: bool = False) -> None:
    """Shards read a chunk at a time are read 5 samples (of a float32 and an int64) at a time; with ``large``,
    every shard is read so, as shards too large to read whole are."""
    monkeypatch.setattr(stream_readers, "CHUNK_BYTES", 5 * (4 + 8))
    if large:
        monkeypatch.setattr(streams, "WHOLE_FILE_BYTES", 0)


def numbers_seen(dataset) -> list[int]:
    return [int(value) for x, _ in dataset for value in x.numpy().reshape(-1)]


def open_numbered(folder: Path, **data) -> object:
    section = {"train": "train-*.npz", "batch_size": 7, **data}
    return load_datasets(section, folder, seed=11)


def test_every_epoch_holds_each_sample_once_in_an_order_of_seed_and_epoch(numbered, reading):
    datasets = open_numbered(numbered, shuffle_buffer=8)
    first, second = numbers_seen(datasets.train_for_epoch(0)), numbers_seen(datasets.train_for_epoch(1))
    assert sorted(first) == sorted(second) == list(range(SAMPLES))
    assert first != second and first != list(range(SAMPLES))
    again = open_numbered(numbered, shuffle_buffer=8)
    assert numbers_seen(again.train_for_epoch(1)) == second  # a new process: the same order
    assert numbers_seen(again.train_epochs(0, 2)) == first + second
    assert datasets.steps_per_epoch == -(-SAMPLES // 7)


def test_the_order_does_not_depend_on_the_memory_budget(numbered, monkeypatch):
    """Small shards are read whole or, when the budget is short, a chunk at a time: the same order either way,
    so a run resumed under another budget goes on as it began."""
    whole = numbers_seen(open_numbered(numbered, shuffle_buffer=8).train_for_epoch(2))
    read_in_chunks(monkeypatch)
    monkeypatch.setattr(streams, "WHOLE_SHARE", 0)
    assert numbers_seen(open_numbered(numbered, shuffle_buffer=8).train_for_epoch(2)) == whole


def test_the_default_shuffle_buffer_does_not_depend_on_the_memory_budget(tmp_path):
    """The default buffer shapes the order: a run resumed under another budget, or a worker on a machine with
    less memory, must draw the same one."""
    x = np.zeros((600, 4000), np.float32)  # 16 KB samples: a quarter of 24 MB would hold 375 of them
    x[:, 0] = np.arange(600)
    write_shards(tmp_path, x, np.zeros(600, np.int64), 5)

    def order() -> list[int]:
        datasets = load_datasets({"train": "train-*.npz", "batch_size": 7}, tmp_path, seed=4)
        return [int(row[0]) for x, _ in datasets.train_for_epoch(1) for row in x.numpy()]

    roomy = order()
    configure("24M")
    assert order() == roomy


def test_skipping_batches_resumes_the_same_stream(numbered, reading):
    datasets = open_numbered(numbered, shuffle_buffer=8)
    whole = numbers_seen(datasets.train_for_epoch(3))
    assert numbers_seen(datasets.train_for_epoch(3, skip=4)) == whole[4 * 7 :]
    assert numbers_seen(datasets.train_epochs(3, 5, skip=4))[: SAMPLES - 28] == whole[28:]


def test_without_shuffling_the_shards_are_read_in_order(numbered, reading):
    datasets = open_numbered(numbered, shuffle=False)
    assert numbers_seen(datasets.train_for_epoch(5)) == list(range(SAMPLES))
    assert numbers_seen(datasets.train_for_epoch(5, skip=2)) == list(range(14, SAMPLES))


def test_a_list_of_shards_and_a_validation_source(numbered):
    datasets = load_datasets(
        {"train": ["train-03.npz", "train-00.npz"], "validation": "train-01.*", "shuffle": False},
        numbered,
        seed=1,
    )
    assert numbers_seen(datasets.train_for_epoch(0)) == [*range(36, 48), *range(0, 12)]
    assert numbers_seen(datasets.validation) == list(range(12, 24))


def test_memory_is_priced_before_reading(numbered):
    configure("1M")
    with pytest.raises(DataError) as caught:
        open_numbered(numbered, shuffle_buffer=1_000_000)
    assert "shuffle buffer of 1,000,000 samples" in caught.value.message
    suggested = int(caught.value.hint.split("set data.shuffle_buffer: ")[1].split()[0])
    open_numbered(numbered, shuffle_buffer=suggested)  # the buffer the hint offers fits
    with pytest.raises(DataError):
        open_numbered(numbered, shuffle_buffer=suggested + 1)  # and is the largest that does


def test_tfrecord_records_are_numbered_and_read_alike(tmp_path):
    x = np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1)
    write_tfrecords(tmp_path, x, np.arange(SAMPLES) % 3, 3, compression="GZIP")
    section = {"train": tfrecord_source("train-*.tfrecord.gz", [1]), "shuffle": False, "batch_size": 16}
    datasets = load_datasets(section, tmp_path, seed=1)
    assert numbers_seen(datasets.train_for_epoch(0)) == list(range(SAMPLES))
    labels = [int(v) for _, y in datasets.train_for_epoch(0) for v in y.numpy()]
    assert labels == [n % 3 for n in range(SAMPLES)]


# ----------------------------------------------------------------------------- training


SPEC = """\
layers:
  - Input: {{shape: [4, 4, 1]}}
  - Flatten: {{}}
  - Dense: {{units: 3, activation: softmax}}
compile:
  optimizer: {{SGD: {{learning_rate: 0.1}}}}
  loss: sparse_categorical_crossentropy
data:
  train: {train}
  batch_size: 8
  shuffle: false
train:
  epochs: 2
  seed: 5
"""


def final_weights(run: Path) -> list[np.ndarray]:
    with np.load(run / "checkpoints" / "last.npz") as archive:
        return [archive[name] for name in sorted(archive.files) if name.startswith("model")]


@pytest.mark.slow
def test_shards_and_tfrecord_train_to_the_weights_of_one_npz(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_project(tmp_path, samples=100)
    with np.load(tmp_path / "tiny.npz") as archive:
        x, y = archive["x"], archive["y"]
    shards = write_shards(tmp_path / "shards", x, y, 4)
    write_tfrecords(tmp_path / "records", x, y, 3, compression="GZIP")
    sources = {
        "one": "tiny.npz",
        "glob": "shards/train-*.npz",
        "list": "[" + ", ".join(f"shards/{path.name}" for path in shards) + "]",
        "tfrecord": "{path: records/*.gz, x: image, y: label, compression: GZIP, features: "
        "{image: {dtype: float32, shape: [4, 4, 1]}, label: {dtype: int64}}}",
    }
    for name, source in sources.items():
        (tmp_path / f"{name}.yaml").write_text(SPEC.format(train=source))
        result = CliRunner().invoke(cli, ["train", f"{name}.yaml", "--output", name, "--quiet"])
        assert result.exit_code == 0, result.output
    expected = final_weights(tmp_path / "one")
    for name in ("glob", "list", "tfrecord"):
        for a, b in zip(expected, final_weights(tmp_path / name), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def write_image_shards(folder: Path, x: np.ndarray, y: np.ndarray, parts: int) -> None:
    """Samples ``x`` (values in [0, 1)) as grayscale PNGs in ``parts`` image folders, a class subfolder per label."""
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    for part, (xs, ys) in enumerate(zip(np.array_split(x, parts), np.array_split(y, parts))):
        for index, (sample, label) in enumerate(zip(xs, ys)):
            (folder / f"part-{part}" / f"c{label}").mkdir(parents=True, exist_ok=True)
            pixels = (np.clip(sample, 0, 1) * 255).astype(np.uint8)
            (folder / f"part-{part}" / f"c{label}" / f"{index:03d}.png").write_bytes(tf.io.encode_png(pixels).numpy())


def sharded_project(folder: Path, kind: str) -> None:
    """The resumable tiny project of test_cli_train, its training data in shards (validation a file of its own)."""
    from tests.test_cli_train import EPOCHS, RESUMABLE, SAMPLES

    write_tiny_project(folder, epochs=EPOCHS, extra=RESUMABLE, samples=SAMPLES)
    with np.load(folder / "tiny.npz") as archive:
        x, y = archive["x"], archive["y"]
    np.savez(folder / "valid.npz", x=x[:32], y=y[:32])
    if kind == "npz":
        write_shards(folder / "shards", x[32:], y[32:], 6)
        source = "shards/*.npz"
    elif kind == "tfrecord":
        write_tfrecords(folder / "shards", x[32:], y[32:], 3)
        source = str(tfrecord_source("shards/*.tfrecord", [4, 4, 1])).replace("'", "")
    else:
        write_image_shards(folder / "shards", x[32:], y[32:], 3)
        source = "{path: shards/*, image_size: [4, 4], color_mode: grayscale, scale: 0.004}"
    spec = (folder / "tiny.yaml").read_text()
    spec = spec.replace("train: tiny.npz\n  validation: 0.25", f"train: {source}\n  validation: valid.npz")
    (folder / "tiny.yaml").write_text(spec.replace("batch_size: 8", "batch_size: 8\n  shuffle_buffer: 20"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["npz", "tfrecord", "images"])
def test_kill_9_mid_epoch_then_resume_is_exact(tmp_path, kind):
    from tests.test_cli_train import interrupt, seq

    sharded_project(tmp_path / "whole", kind)
    whole = seq("train", "tiny.yaml", "--output", "run", "--quiet", cwd=tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    sharded_project(tmp_path / "cut", kind)
    killed = interrupt(["tiny.yaml", "--output", "run", "--quiet"], tmp_path / "cut", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = seq("train", "tiny.yaml", "--output", "run", "--resume", "--quiet", cwd=tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_checkpoint(tmp_path / "whole" / "run", tmp_path / "cut" / "run")


@pytest.mark.slow
def test_peak_memory_stays_flat_as_the_shards_grow(tmp_path):
    """12 then 48 shards of 4 MB (one and four times the --max-memory of 48M) train with the same peak, within
    the noise of TensorFlow's own allocations (about 40 MB from run to run)."""
    from tests.test_bounds import bounded

    spec = SPEC.format(train="shards/*.npz").replace("[4, 4, 1]", "[1024]").replace("shuffle: false", "shuffle: true")
    spec = spec.replace("epochs: 2", "epochs: 1")
    peaks = {}
    for count in (12, 48):
        folder = tmp_path / str(count)
        rng = np.random.default_rng(0)
        for index in range(count):
            write_shards(
                folder / "shards", rng.random((1024, 1024), np.float32), rng.integers(0, 3, 1024), 1, f"s{index}"
            )
        (folder / "spec.yaml").write_text(spec.replace("batch_size: 8", "batch_size: 64\n  shuffle_buffer: 2048"))
        done = bounded(
            "train", "spec.yaml", "--output", "run", "--quiet", "--max-memory", "48M", cwd=folder, timeout=300
        )
        assert done["rc"] == 0, done["stderr"]
        peaks[count] = done["peak"]
    assert peaks[48] - peaks[12] < 64 << 20, peaks  # 144 MB more data than the smaller set


def test_resume_notices_a_shard_the_glob_matches_since(numbered):
    from seqcli.specfile import read_spec
    from seqcli.training.resume import changed_file, input_files

    (numbered / "spec.yaml").write_text(SPEC.format(train="train-*.npz"))
    spec = read_spec(numbered / "spec.yaml")
    files = input_files(spec)
    assert len(files) == SHARDS and changed_file(files, input_files(spec)) is None
    np.savez(numbered / "train-09.npz", x=np.zeros((2, 1), np.float32), y=np.zeros(2, np.int64))
    added = str(numbered.resolve() / "train-09.npz")
    assert changed_file(files, input_files(spec)) == f"{added} (a new file the data's glob matches)"


def test_a_file_named_like_a_glob_is_that_file(numbered):
    """``d[1].npz`` that exists is read as one file (in memory), as a shell would take it; one that does not
    is a glob."""
    from seqcli.data import load_arrays

    np.savez(numbered / "d[1].npz", x=np.ones((3, 1), np.float32), y=np.zeros(3, np.int64))
    x, _ = load_arrays("d[1].npz", numbered)
    assert x.shape == (3, 1)
    with pytest.raises(DataError, match="streamed"):
        load_arrays("train-0[0-1].npz", numbered)


# ----------------------------------------------------------------------------- native reads


def batches_of(datasets) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(x.numpy(), y.numpy()) for x, y in datasets.train_for_epoch(0)]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


@pytest.mark.parametrize(
    "x_dtype, y_kind",
    [
        ("uint8", "int32"),
        ("float64", "onehot"),
        (">f4", "int64"),
        ("bool", "int16"),
        ("int16", "float32"),
        ("float16", ">i2"),
        (">i8", "uint8"),
    ],
)
def test_shards_of_any_dtype_read_as_one_file_reads(tmp_path, x_dtype, y_kind, reading):
    """Shards read as raw records (any byte order, any numeric dtype) give the batches one .npz gives."""
    rng = np.random.default_rng(3)
    x = (rng.random((SAMPLES, 3, 2)) * 200).astype(x_dtype)
    y = rng.integers(0, 3, SAMPLES)
    y = np.eye(3, dtype=np.float32)[y] if y_kind == "onehot" else y.astype(y_kind)
    write_shards(tmp_path, x, y, SHARDS)
    np.savez(tmp_path / "all.npz", x=x, y=y)
    section = {"batch_size": 16, "shuffle": False}
    streamed = batches_of(load_datasets({**section, "train": "train-*.npz"}, tmp_path, seed=1))
    whole = batches_of(load_datasets({**section, "train": "all.npz"}, tmp_path, seed=1))
    for mine, theirs in zip(streamed, whole, strict=True):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)


def test_compressed_and_csv_shards_take_the_same_path_through_order_and_batches(tmp_path):
    """Shards that are not raw records (compressed .npz, CSV) are read by Python, in the same order."""
    x = np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1)
    for index, (xs, ys) in enumerate(zip(np.array_split(x, 3), np.array_split(np.arange(SAMPLES) % 3, 3))):
        np.savez_compressed(tmp_path / f"z-{index}.npz", x=xs, y=ys)
        lines = ["v,label"] + [f"{value},{label}" for value, label in zip(xs.reshape(-1), ys)]
        (tmp_path / f"c-{index}.csv").write_text("\n".join(lines) + "\n")
    write_shards(tmp_path, x, np.arange(SAMPLES) % 3, 3)
    section = {"batch_size": 7, "shuffle_buffer": 8}
    raw = load_datasets({**section, "train": "train-*.npz"}, tmp_path, seed=4)
    compressed = load_datasets({**section, "train": "z-*.npz"}, tmp_path, seed=4)
    csv = load_datasets({**section, "train": {"path": "c-*.csv", "label": "label"}}, tmp_path, seed=4)
    expected = numbers_seen(raw.train_for_epoch(2))
    assert numbers_seen(compressed.train_for_epoch(2)) == expected == numbers_seen(csv.train_for_epoch(2))
    assert numbers_seen(compressed.train_for_epoch(2, skip=3)) == expected[21:]


def test_the_order_does_not_depend_on_the_global_seed(numbered):
    import tensorflow as tf

    tf.random.set_seed(1)
    first = numbers_seen(open_numbered(numbered, shuffle_buffer=16).train_for_epoch(1))
    tf.random.set_seed(2)
    assert numbers_seen(open_numbered(numbered, shuffle_buffer=16).train_for_epoch(1)) == first


def failure_of(dataset):
    """The DataError a pipeline stops with, as whoever runs it gets it."""
    from seqcli.data.streams import take_failure

    with pytest.raises(Exception) as caught:
        numbers_seen(dataset)
    return take_failure(caught.value)


def test_a_shard_replaced_after_the_source_opened_is_refused_when_read(numbered, reading):
    datasets = open_numbered(numbered, shuffle=False)
    epoch = datasets.train_for_epoch(0)
    np.savez(numbered / "train-02.npz", x=np.zeros((30, 1), np.float32), y=np.zeros(30, np.int64))
    failure = failure_of(epoch)
    assert failure is not None and "train-02.npz changed while it was being trained on" in failure.message


def reading_a_large_shard(folder: Path, monkeypatch):
    """Batches of two large shards (of 1,000 samples, read 5 at a time), the first batch taken: the first shard
    is open."""
    read_in_chunks(monkeypatch, large=True)
    write_shards(folder, np.arange(2000, dtype=np.float32).reshape(-1, 1), np.zeros(2000, np.int64), 2)
    datasets = load_datasets({"train": "train-*.npz", "batch_size": 2, "shuffle": False}, folder, seed=3)
    batches = iter(datasets.train_for_epoch(0))
    next(batches)
    return batches


def test_a_shard_cut_while_it_is_read_is_refused(tmp_path, monkeypatch):
    """A large shard is read a chunk at a time, each read checked against the file the source opened."""
    batches = reading_a_large_shard(tmp_path, monkeypatch)
    path = tmp_path / "train-00.npz"
    path.write_bytes(path.read_bytes()[:-1000])
    failure = failure_of(batches)
    assert failure is not None and "train-00.npz changed while it was being trained on" in failure.message


def test_a_shard_swapped_for_a_fifo_while_it_is_read_is_refused_without_blocking(tmp_path, monkeypatch):
    batches = reading_a_large_shard(tmp_path, monkeypatch)
    fifo = tmp_path / "train-00.npz"
    os.mkfifo(tmp_path / "fifo")  # no writer: a blocking open would wait for one
    os.replace(tmp_path / "fifo", fifo)  # at once: a read that runs ahead never finds the shard missing
    done, rescued = threading.Event(), threading.Event()

    def rescue():  # a reader stuck in open() is let go, so that a regression fails instead of hanging
        if not done.wait(20):
            rescued.set()
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=rescue, daemon=True).start()
    failure = failure_of(batches)
    done.set()
    assert not rescued.is_set(), "reading the shard blocked on a FIFO"
    assert failure is not None and "train-00.npz changed while it was being trained on" in failure.message


def test_empty_shards_and_shards_of_whole_chunks(tmp_path, reading):
    """An empty shard is read as raw records like the others (it does not send the source to Python's reader)."""
    sizes = [10, 0, 5, 12]  # chunked: 5 samples a chunk
    x = np.arange(sum(sizes), dtype=np.float32).reshape(-1, 1)
    for index, (xs, ys) in enumerate(
        zip(np.split(x, np.cumsum(sizes)[:-1]), np.split(x[:, 0] % 2, np.cumsum(sizes)[:-1]))
    ):
        np.savez(tmp_path / f"train-{index:02d}.npz", x=xs, y=ys.astype(np.int64))
    datasets = load_datasets({"train": "train-*.npz", "batch_size": 4, "shuffle": False}, tmp_path, seed=3)
    assert numbers_seen(datasets.train_for_epoch(0)) == list(range(sum(sizes)))
    shuffled = load_datasets({"train": "train-*.npz", "batch_size": 4, "shuffle_buffer": 6}, tmp_path, seed=3)
    assert sorted(numbers_seen(shuffled.train_for_epoch(2))) == list(range(sum(sizes)))


def test_a_shard_swapped_for_a_link_elsewhere_is_refused_when_read(numbered, reading, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "other.npz"
    datasets = open_numbered(numbered, shuffle=False)
    (numbered / "train-03.npz").rename(elsewhere)
    (numbered / "train-03.npz").symlink_to(elsewhere)
    failure = failure_of(datasets.train_for_epoch(0))
    assert failure is not None and "train-03.npz" in failure.message


def test_a_value_that_is_not_finite_names_its_shard(numbered, reading):
    x = np.ones((12, 1), np.float32)
    x[4, 0] = np.nan
    np.savez(numbered / "train-01.npz", x=x, y=np.zeros(12, np.int64))
    failure = failure_of(open_numbered(numbered, shuffle=False).train_for_epoch(0))
    assert failure is not None and "train-01.npz" in failure.message and "sample 4" in failure.message


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_an_infinity_names_its_shard_even_beside_its_opposite(numbered, bad):
    x = np.ones((12, 1), np.float32)
    x[2, 0], x[7, 0] = bad, -bad  # their sum is NaN: still not finite
    np.savez(numbered / "train-02.npz", x=x, y=np.zeros(12, np.int64))
    failure = failure_of(open_numbered(numbered, shuffle=False).train_for_epoch(0))
    assert failure is not None and "train-02.npz" in failure.message and "sample 2" in failure.message


def test_finite_values_whose_sum_overflows_are_read(numbered):
    """The finite check sums a block first: a sum past float32's range is not a value that is not finite."""
    x = np.full((12, 1), np.finfo(np.float32).max, np.float32)
    np.savez(numbered / "train-01.npz", x=x, y=np.zeros(12, np.int64))
    batches = [batch_x for batch_x, _ in open_numbered(numbered, shuffle=False).train_for_epoch(0)]
    read = np.concatenate([np.asarray(batch) for batch in batches])
    assert len(read) == SAMPLES and np.count_nonzero(read == np.finfo(np.float32).max) == 12


def test_a_fraction_of_a_stream_is_split_off_by_file(numbered):
    """Whole shards drawn by the seed: no sample in both, every sample in one, the same files every time."""
    datasets = open_numbered(numbered, validation=0.4, shuffle=False)
    training, validation = numbers_seen(datasets.train_for_epoch(0)), numbers_seen(datasets.validation)
    assert sorted(training + validation) == list(range(SAMPLES))
    assert len(validation) == 24 and datasets.validation_count == 24 and datasets.train_count == 36
    assert {number // 12 for number in validation} == {number // 12 for number in validation[::12]}  # whole files
    again = open_numbered(numbered, validation={"fraction": 0.4}, shuffle=False)
    assert numbers_seen(again.validation) == validation
    other = load_datasets({"train": "train-*.npz", "batch_size": 7, "validation": 0.4}, numbered, seed=12)
    assert numbers_seen(other.validation) != validation  # another seed draws other files


# ----------------------------------------------------------------------------- image shards

IMAGE_PARTS = {"part-0": {"a": 3, "b": 2}, "part-1": {"a": 2, "b": 3}, "part-2": {"a": 2, "c": 4}}


def write_image_parts(root: Path, *, together: bool = False) -> None:
    """The images of :data:`IMAGE_PARTS`, each a few pixels of its own gray level: one folder of image folders
    per part, or (``together``) all of them in the one image folder ``root/all``, named so that each class
    lists them part by part."""
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()
    for part_index, (part, classes) in enumerate(IMAGE_PARTS.items()):
        for class_index, (name, count) in enumerate(classes.items()):
            folder = root / ("all" if together else part) / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.full((3, 2, 1), 40 * part_index + 10 * class_index + i, dtype=np.uint8)
                (folder / f"p{part_index}-{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())


def test_image_shards_are_one_source_whose_classes_are_the_union(tmp_path):
    write_image_parts(tmp_path)
    write_image_parts(tmp_path, together=True)
    sources = {
        "glob": "part-*",
        "list": ["part-0", "part-1", "part-2"],
        "one": "all",
    }
    seen = {}
    for name, path in sources.items():
        section = {"train": {"path": path, "image_size": [3, 2], "color_mode": "grayscale"}, "batch_size": 4}
        datasets = load_datasets(section, tmp_path, seed=3)
        assert datasets.class_names == ["a", "b", "c"], name
        seen[name] = [(x.numpy(), y.numpy()) for x, y in datasets.train_for_epoch(1)]
        resumed = [(x.numpy(), y.numpy()) for x, y in datasets.train_for_epoch(1, skip=2)]
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(resumed, seen[name][2:], strict=True)), name
    for name in ("glob", "list"):
        for (x, y), (x_one, y_one) in zip(seen[name], seen["one"], strict=True):
            np.testing.assert_array_equal(x, x_one, err_msg=name)
            np.testing.assert_array_equal(y, y_one, err_msg=name)


def test_two_workers_share_image_shards_by_folder_and_see_each_image_once(tmp_path):
    write_image_parts(tmp_path)
    train = {"path": ["part-0", "part-1"], "image_size": [3, 2], "color_mode": "grayscale"}
    seen, headers = [], []
    for index in range(2):
        datasets = load_datasets({"train": train, "batch_size": 10}, tmp_path, seed=3, workers=(2, index))
        headers.append(datasets.sharding)
        assert datasets.steps_per_epoch == 1
        seen.append(sorted(int(x[0, 0, 0]) for batch, _ in datasets.train_for_epoch(0) for x in batch.numpy()))
    assert headers[0] == "by file (1 of 2 image folders on worker 0 of 2)"
    assert len(seen[0]) == len(seen[1]) == 5 and set(seen[0]).isdisjoint(seen[1])
    assert all(value < 40 for value in seen[0]) and all(40 <= value < 80 for value in seen[1])
    # unequal shares: an epoch is the steps the larger share needs; the smaller starts its images again
    train["path"] = "part-*"
    for index, (images, mine) in enumerate([(11, {0, 2}), (5, {1})]):
        datasets = load_datasets({"train": train, "batch_size": 4}, tmp_path, seed=3, workers=(2, index))
        values = [int(x[0, 0, 0]) for batch, _ in datasets.train_for_epoch(1) for x in batch.numpy()]
        assert datasets.steps_per_epoch == 6 and len(values) == 12
        assert len(set(values)) == images and {value // 40 for value in values} == mine
        # a resumed epoch skips whole steps of this worker's share (2 samples a step), as streams do
        resumed = [int(x[0, 0, 0]) for batch, _ in datasets.train_for_epoch(1, skip=3) for x in batch.numpy()]
        assert resumed == values[6:]
    # fewer folders than workers: each reads all and keeps its part of each batch, as with one image folder
    section = {"train": {"path": "part-*", "image_size": [3, 2]}, "batch_size": 4}
    assert load_datasets(section, tmp_path, seed=3, workers=(4, 0)).sharding.startswith("by sample")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["part-0", "notes.npz"], "notes.npz is a file, but other parts of this source are folders"),
        ("part-*", "text folders cannot be read as shards"),
    ],
)
def test_image_shards_refused(tmp_path, path, expected):
    write_image_parts(tmp_path)
    np.savez(tmp_path / "notes.npz", x=np.zeros((2, 1)))
    section = {"train": {"path": path, **({"format": "text"} if path == "part-*" else {})}}
    with pytest.raises(DataError, match=expected):
        load_datasets(section, tmp_path, seed=3)


IMAGE_SPEC = """\
layers:
  - Input: {{shape: [3, 2, 1]}}
  - Flatten: {{}}
  - Dense: {{units: 3, activation: softmax}}
compile:
  optimizer: {{SGD: {{learning_rate: 0.1}}}}
  loss: sparse_categorical_crossentropy
data:
  train: {{path: {train}, image_size: [3, 2], color_mode: grayscale, scale: 0.01}}
  batch_size: 4
train:
  epochs: 2
  seed: 5
"""


def test_image_shards_train_to_the_weights_of_one_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image_parts(tmp_path)
    write_image_parts(tmp_path, together=True)
    for name, source in {"one": "all", "glob": "part-*", "list": "[part-0, part-1, part-2]"}.items():
        (tmp_path / f"{name}.yaml").write_text(IMAGE_SPEC.format(train=source))
        result = CliRunner().invoke(cli, ["train", f"{name}.yaml", "--output", name, "--quiet"])
        assert result.exit_code == 0, result.output
    expected = final_weights(tmp_path / "one")
    for name in ("glob", "list"):
        for a, b in zip(expected, final_weights(tmp_path / name), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def test_resume_notices_an_image_part_the_glob_matches_since_and_an_image_added_to_one(tmp_path):
    from seqcli.specfile import read_spec
    from seqcli.training.resume import changed_file, input_files

    write_image_parts(tmp_path)
    (tmp_path / "spec.yaml").write_text(IMAGE_SPEC.format(train="part-*"))
    spec = read_spec(tmp_path / "spec.yaml")
    files = input_files(spec)
    assert len(files) == len(IMAGE_PARTS) and changed_file(files, input_files(spec)) is None
    (tmp_path / "part-1" / "a" / "more.png").write_bytes((tmp_path / "part-1" / "a" / "p1-0.png").read_bytes())
    assert str(tmp_path.resolve() / "part-1") in changed_file(files, input_files(spec))
    files = input_files(spec)
    (tmp_path / "part-3" / "a").mkdir(parents=True)
    added = str(tmp_path.resolve() / "part-3")
    assert changed_file(files, input_files(spec)) == f"{added} (a new file the data's glob matches)"


@pytest.mark.parametrize("kind", ["whole", "large", "tfrecord"])
def test_no_pipeline_function_of_seqs_is_rewritten_by_autograph(tmp_path, monkeypatch, kind):
    """Every function seq hands tf.data is traced as written (``as_written``, the one door for them): autograph
    rewrites a function once a process, before the first epoch can start, and seq's branch on Python values
    only."""
    from tensorflow.python.autograph.impl import api

    rewritten: list[str] = []
    transform = api._TRANSPILER.transform

    def recorded(function, context):
        if getattr(function, "__module__", "").startswith("seqcli"):
            rewritten.append(function.__qualname__)
        return transform(function, context)

    monkeypatch.setattr(api._TRANSPILER, "transform", recorded)
    x = np.arange(SAMPLES, dtype=np.float32).reshape(-1, 1)
    if kind == "tfrecord":
        write_tfrecords(tmp_path, x, np.arange(SAMPLES) % 3, SHARDS)
        section = {"train": tfrecord_source("train-*.tfrecord", [1]), "batch_size": 7, "shuffle_buffer": 8}
    else:
        read_in_chunks(monkeypatch, large=kind == "large")
        write_shards(tmp_path, x, np.arange(SAMPLES) % 3, SHARDS)
        section = {"train": "train-*.npz", "batch_size": 7, "shuffle_buffer": 8}
    datasets = load_datasets(section, tmp_path, seed=11)
    seen = [numbers_seen(datasets.train_for_epoch(epoch)) for epoch in (0, 1)]
    seen.append(numbers_seen(datasets.train_epochs(0, 2)))  # the epochs in one dataset, each built in a function
    assert sorted(seen[0]) == sorted(seen[1]) == list(range(SAMPLES)) and seen[2] == seen[0] + seen[1]
    assert rewritten == []
