"""seqcli.data: every source form, splits, per-epoch order, skip, streaming images, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from seqcli.data import DataError, Datasets, load_arrays, load_datasets, load_source, split_indices
from seqcli.keras_env import keras_home

REPO = Path(__file__).resolve().parent.parent


def labels_of(dataset) -> list[np.ndarray]:
    return [y.numpy() for _, y in dataset]


def flat(batches: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(batches)


@pytest.fixture
def numbered(tmp_path: Path) -> Path:
    """20 samples whose label is their index, so order and membership are visible."""
    x = np.arange(20 * 3, dtype=np.float64).reshape(20, 3)
    np.savez(tmp_path / "numbered.npz", x=x, y=np.arange(20))
    return tmp_path


def test_import_does_not_import_tensorflow():
    code = "import seqcli.data, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# ----------------------------------------------------------------------------- source forms


def test_npz_shorthand_converts_x_to_float32_and_scales(tmp_path):
    x = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1], dtype=np.uint8))
    data = {"train": {"path": "d.npz", "scale": 0.5}, "shuffle": False, "batch_size": 4}
    datasets = load_datasets(data, tmp_path, seed=0)
    assert (datasets.train_count, datasets.steps_per_epoch, datasets.input_shape) == (6, 2, (2, 2))
    xb, yb = next(iter(datasets.train))
    assert xb.dtype.name == "float32" and yb.dtype.name == "int64"
    np.testing.assert_allclose(xb.numpy(), x[:4] * 0.5)


def test_npz_mapping_names_its_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.ones((3, 2)), targets=np.array([0.5, 1.5, 2.5]))
    x, y = load_arrays({"path": "d.npz", "x": "images", "y": "targets"}, tmp_path)
    assert x.dtype == np.float32 and x.shape == (3, 2)
    assert y.dtype == np.float32 and y.tolist() == [0.5, 1.5, 2.5]


def test_npy_holds_inputs_only(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 3), dtype=np.int32))
    x, y = load_arrays("x.npy", tmp_path)
    assert x.dtype == np.float32 and y is None
    dataset, count = load_source("x.npy", tmp_path, batch_size=2, labels=False)
    assert count == 5 and [b.shape[0] for b in dataset] == [2, 2, 1]
    with pytest.raises(DataError, match="holds inputs only, but labels are needed"):
        load_datasets({"train": "x.npy"}, tmp_path, seed=0)


def test_npy_with_labels_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    np.save(tmp_path / "y.npy", np.array([3, 2, 1, 0]))
    datasets = load_datasets({"train": {"path": "x.npy", "y": "y.npy"}, "shuffle": False}, tmp_path, seed=0)
    assert flat(labels_of(datasets.train)).tolist() == [3, 2, 1, 0]


def test_csv_last_column_is_the_label(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,4.5,1\n\n5,6,2\n")
    x, y = load_arrays("t.csv", tmp_path)
    assert x.tolist() == [[1, 2], [3, 4.5], [5, 6]] and x.dtype == np.float32
    assert y.tolist() == [0, 1, 2] and y.dtype == np.int64


def test_csv_label_and_features_by_name(tmp_path):
    (tmp_path / "t.csv").write_text("price,a,b,c\n1.5,1,2,3\n2.5,4,5,6\n")
    x, y = load_arrays({"path": "t.csv", "label": "price", "features": ["c", "a"]}, tmp_path)
    assert x.tolist() == [[3, 1], [6, 4]]
    assert y.dtype == np.float32 and y.tolist() == [1.5, 2.5]


def test_image_directory_streams_with_class_names(tmp_path, write_image_folder):
    root = write_image_folder(tmp_path / "images", {"cats": 3, "dogs": 2})
    (root / "cats" / "notes.txt").write_text("not an image")
    data = {"train": {"path": "images", "image_size": [4, 6], "color_mode": "grayscale", "scale": 0.1}}
    datasets = load_datasets({**data, "shuffle": False, "batch_size": 2}, tmp_path, seed=0)
    assert datasets.class_names == ["cats", "dogs"]
    assert (datasets.train_count, datasets.input_shape) == (5, (4, 6, 1))
    batches = list(datasets.train)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 4, 6, 1), (2, 4, 6, 1), (1, 4, 6, 1)]
    assert flat([y.numpy() for _, y in batches]).tolist() == [0, 0, 0, 1, 1]
    np.testing.assert_allclose(batches[2][0].numpy(), 1.1, rtol=1e-5)  # dogs/1.png: 11 * 0.1


def test_image_directory_default_size_and_split(tmp_path, write_image_folder):
    write_image_folder(tmp_path / "images", {"a": 4, "b": 4})
    datasets = load_datasets({"train": "images", "validation": 0.25}, tmp_path, seed=3)
    assert (datasets.train_count, datasets.validation_count, datasets.input_shape) == (6, 2, (256, 256, 3))
    assert sum(len(y) for y in labels_of(datasets.validation)) == 2
    dataset, count = load_source("images", tmp_path, batch_size=8, labels=False)
    assert count == 8 and next(iter(dataset)).shape == (8, 256, 256, 3)


def test_separate_validation_source(numbered):
    np.savez(numbered / "val.npz", x=np.zeros((5, 3)), y=np.arange(5))
    datasets = load_datasets({"train": "numbered.npz", "validation": "val.npz"}, numbered, seed=0)
    assert (datasets.validation_count, datasets.validation_steps) == (5, 1)
    assert flat(labels_of(datasets.validation)).tolist() == [0, 1, 2, 3, 4]


def test_shipped_digits():
    path = REPO / "specs" / "data" / "digits.npz"
    assert path.stat().st_size < 200_000
    x, y = load_arrays("data/digits.npz", REPO / "specs")
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(10))


# ----------------------------------------------------------------------------- order


def test_validation_split_is_disjoint_and_deterministic(numbered):
    data = {"train": "numbered.npz", "validation": 0.3, "batch_size": 4}
    first = load_datasets(data, numbered, seed=7)
    train = set(flat(labels_of(first.train_for_epoch(0))).tolist())
    validation = set(flat(labels_of(first.validation)).tolist())
    assert (len(train), len(validation)) == (14, 6) and not train & validation
    assert train | validation == set(range(20))
    again = load_datasets(data, numbered, seed=7)
    assert set(flat(labels_of(again.validation)).tolist()) == validation
    other = load_datasets(data, numbered, seed=8)
    assert set(flat(labels_of(other.validation)).tolist()) != validation


def test_epoch_order_is_a_function_of_seed_and_epoch(numbered):
    import tensorflow as tf

    data = {"train": "numbered.npz", "batch_size": 6}
    first = load_datasets(data, numbered, seed=11)
    epoch2 = labels_of(first.train_for_epoch(2))
    tf.random.set_seed(99)  # the global seed does not matter
    second = load_datasets(data, numbered, seed=11)
    assert [b.tolist() for b in labels_of(second.train_for_epoch(2))] == [b.tolist() for b in epoch2]
    assert sorted(flat(epoch2).tolist()) == list(range(20))
    assert flat(labels_of(first.train_for_epoch(3))).tolist() != flat(epoch2).tolist()
    assert flat(labels_of(first.train)).tolist() == flat(labels_of(first.train_for_epoch(0))).tolist()
    other_seed = load_datasets(data, numbered, seed=12)
    assert flat(labels_of(other_seed.train_for_epoch(2))).tolist() != flat(epoch2).tolist()


def test_no_shuffle_keeps_stored_order(numbered):
    datasets = load_datasets({"train": "numbered.npz", "shuffle": False}, numbered, seed=0)
    assert flat(labels_of(datasets.train_for_epoch(5))).tolist() == list(range(20))


def test_skip_drops_the_first_batches(numbered):
    datasets = load_datasets({"train": "numbered.npz", "batch_size": 3}, numbered, seed=5)
    full = labels_of(datasets.train_for_epoch(4))
    assert len(full) == datasets.steps_per_epoch == 7
    skipped = labels_of(datasets.train_for_epoch(4, skip=5))
    assert [b.tolist() for b in skipped] == [b.tolist() for b in full[5:]]
    assert labels_of(datasets.train_for_epoch(4, skip=9)) == []


def test_skip_on_streamed_images(tmp_path, write_image_folder):
    write_image_folder(tmp_path / "images", {"a": 3, "b": 4})
    datasets = load_datasets({"train": {"path": "images", "image_size": [2, 2]}, "batch_size": 2}, tmp_path, seed=1)
    full = [b.tolist() for b in labels_of(datasets.train_for_epoch(1))]
    assert [b.tolist() for b in labels_of(datasets.train_for_epoch(1, skip=2))] == full[2:]


def test_train_epochs_runs_epochs_back_to_back(numbered):
    datasets = load_datasets({"train": "numbered.npz", "batch_size": 8}, numbered, seed=2)
    expected = labels_of(datasets.train_for_epoch(1))[1:] + labels_of(datasets.train_for_epoch(2))
    got = labels_of(datasets.train_epochs(1, 3, skip=1))
    assert [b.tolist() for b in got] == [b.tolist() for b in expected]


def test_split_indices_is_pure():
    train, validation = split_indices(10, 0.2, seed=4)
    assert len(validation) == 2 and sorted([*train, *validation]) == list(range(10))
    assert split_indices(10, 0.2, seed=4)[1].tolist() == validation.tolist()


def test_datasets_fit_a_keras_model(numbered):
    import keras

    datasets = load_datasets({"train": "numbered.npz", "validation": 0.2, "batch_size": 4}, numbered, seed=0)
    model = keras.Sequential([keras.Input(datasets.input_shape), keras.layers.Dense(20)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(datasets.train, validation_data=datasets.validation, epochs=1, verbose=0)
    assert "val_loss" in history.history


def test_hand_built_datasets_fall_back_to_train():
    import tensorflow as tf

    train = tf.data.Dataset.range(5).batch(2)
    batches = Datasets.of(train).train_for_epoch(3, skip=1).as_numpy_iterator()
    assert [b.tolist() for b in batches] == [[2, 3], [4]]


# ----------------------------------------------------------------------------- Keras datasets


def write_fake_mnist(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    images = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)
    np.savez(
        path,
        x_train=images,
        y_train=np.array([1, 2, 3, 4], np.uint8),
        x_test=images[:2],
        y_test=np.array([5, 6], np.uint8),
    )


def test_keras_dataset_from_the_cache(tmp_path, monkeypatch):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))  # where get_file looks, $KERAS_HOME
    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)  # a fake file's hash
    write_fake_mnist(tmp_path / "datasets" / "mnist.npz")
    datasets = load_datasets({"train": {"dataset": "mnist", "scale": 1 / 255}, "shuffle": False}, tmp_path, seed=0)
    assert (datasets.train_count, datasets.input_shape) == (4, (28, 28, 1))
    assert flat(labels_of(datasets.train)).tolist() == [1, 2, 3, 4]
    dataset, count = load_source("mnist:test", tmp_path, batch_size=8)
    assert count == 2 and flat(labels_of(dataset)).tolist() == [5, 6]


def test_keras_dataset_offline(tmp_path, monkeypatch):
    from keras.src.datasets import mnist

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example/mnist.npz: None -- name resolution failed")

    monkeypatch.setattr(mnist, "get_file", offline)
    with pytest.raises(DataError) as caught:
        load_datasets({"train": "mnist"}, tmp_path, seed=0)
    text = caught.value.render()
    assert "data.train: cannot load Keras dataset 'mnist'" in text
    assert "looked for mnist.npz in" in text and "datasets" in text
    assert "name resolution failed" in text
    assert "keras.datasets.mnist.load_data()" in text and "KERAS_HOME" in text


# ----------------------------------------------------------------------------- errors


def make_errors(root: Path):
    np.savez(root / "bad_names.npz", inputs=np.zeros((3, 2)), labels=np.zeros(3))
    np.savez(root / "short_y.npz", x=np.zeros((4, 2)), y=np.zeros(3))
    np.savez(root / "ok.npz", x=np.zeros((10, 2)), y=np.zeros(10))
    np.savez(root / "wide.npz", x=np.zeros((10, 5)), y=np.zeros(10))
    (root / "cell.csv").write_text("a,b,y\n1,2,0\n3,x4,1\n")
    (root / "ragged.csv").write_text("a,b,y\n1,2,0\n3,1\n")
    (root / "empty.csv").write_text("")
    (root / "latin1.csv").write_bytes("a,b,y\n1,2,0\n3,caf\u00e9,1\n".encode("latin-1"))
    (root / "notes.dat").write_text("hello")
    (root / "no_classes").mkdir()
    (root / "no_images" / "cats").mkdir(parents=True)
    (root / "no_images" / "cats" / "readme.md").write_text("")


ERRORS = [
    (
        {"train": "missing.npz"},
        "data.train: no such file or directory: {root}/missing.npz "
        "('missing.npz' is relative to the spec file's folder, {root})",
    ),
    ({"train": "mnst"}, "hint: did you mean 'mnist'?"),
    (
        {"train": "bad_names.npz"},
        "data.train: {root}/bad_names.npz has no array 'x' (its arrays: 'inputs', 'labels')",
    ),
    (
        {"train": {"path": "bad_names.npz", "x": "inputs"}},
        "has no array 'y' (its arrays: 'inputs', 'labels')",
    ),
    (
        {"train": "short_y.npz"},
        "x and y in {root}/short_y.npz have different lengths: x has 4 samples, y has 3",
    ),
    ({"train": "cell.csv"}, "data.train: {root}/cell.csv:3: column 2 is not a number"),
    ({"train": "ragged.csv"}, "{root}/ragged.csv:3: row has 2 cells, the header has 3"),
    ({"train": "empty.csv"}, "empty.csv is empty; a CSV source needs a header row"),
    (
        {"train": "latin1.csv"},
        "data.train: {root}/latin1.csv:3: not UTF-8 text: byte 0xe9 at column 6\n  hint: save the CSV as UTF-8",
    ),
    (
        {"train": {"path": "cell.csv", "label": "lable"}},
        "data.train.label: {root}/cell.csv has no column 'lable'",
    ),
    ({"train": "notes.dat"}, "cannot tell the format of {root}/notes.dat from its extension '.dat'"),
    ({"train": "no_classes"}, "data.train: image directory {root}/no_classes has no class subfolders"),
    ({"train": "no_images"}, "image directory {root}/no_images has no images in its subfolders (cats)"),
    ({"train": "ok.npz", "validation": 0.01}, "leaves 0 for validation and 10 for training"),
    (
        {"train": "ok.npz", "validation": "wide.npz"},
        "data.validation: samples have shape (5,), but data.train's have shape (2,)",
    ),
    ({"train": {"path": "ok.npz", "dataset": "mnist"}}, "give either `path` or `dataset`, not both"),
    ({"validation": 0.2}, "data.validation is a fraction of data.train, but there is no data.train"),
    ({"train": "ok.npz", "batch_size": 0}, "invalid data settings: data.batch_size"),
]


@pytest.mark.parametrize(("data", "expected"), ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_errors(tmp_path, data, expected):
    make_errors(tmp_path)
    with pytest.raises(DataError) as caught:
        load_datasets(data, tmp_path, seed=0)
    assert expected.format(root=tmp_path) in caught.value.render()


def test_load_arrays_refuses_image_directories(tmp_path, write_image_folder):
    write_image_folder(tmp_path / "images", {"a": 1})
    with pytest.raises(DataError, match="is an image directory; it is streamed from disk"):
        load_arrays("images", tmp_path)


def test_a_missing_command_line_source_is_relative_to_the_current_folder(tmp_path):
    with pytest.raises(DataError) as caught:
        load_source("missing.npz", tmp_path, batch_size=2, where="--data")
    assert caught.value.message == (
        f"--data: no such file or directory: {tmp_path / 'missing.npz'} "
        f"('missing.npz' is relative to the current folder, {tmp_path})"
    )


def test_csv_with_a_byte_order_mark(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbfa,y\n1,0\n2,1\n")
    x, y = load_arrays("t.csv", tmp_path)
    assert x.tolist() == [[1.0], [2.0]] and y.tolist() == [0, 1]


# ----------------------------------------------------------------------------- caching, Keras home


def is_cached(dataset) -> bool:
    while dataset is not None:
        if type(dataset).__name__ == "CacheDataset":
            return True
        dataset = getattr(dataset, "_input_dataset", None)
    return False


@pytest.mark.parametrize(
    ("data", "limit", "cached"),
    [
        ({"train": "numbered.npz", "validation": 0.25}, 1 << 30, True),
        ({"validation": "numbered.npz"}, 1 << 30, True),
        ({"train": "numbered.npz", "validation": 0.25, "cache": False}, 1 << 30, False),
        ({"train": "numbered.npz", "validation": 0.25}, 5 * 3 * 4 - 1, False),
    ],
)
def test_in_memory_validation_is_cached_when_it_fits(numbered, monkeypatch, data, limit, cached):
    import seqcli.data.pipeline

    monkeypatch.setattr(seqcli.data.pipeline, "CACHE_LIMIT_BYTES", limit)
    datasets = load_datasets(data, numbered, seed=0)
    assert is_cached(datasets.validation) == cached
    assert not is_cached(datasets.train)
    first, again = flat(labels_of(datasets.validation)), flat(labels_of(datasets.validation))
    assert len(first) == datasets.validation_count and first.tolist() == again.tolist()


def test_images_validation_is_cached_when_it_fits(tmp_path, write_image_folder):
    write_image_folder(tmp_path / "images", {"a": 2, "b": 2})
    data = {"train": {"path": "images", "image_size": [5, 7]}, "validation": 0.5}
    assert is_cached(load_datasets(data, tmp_path, seed=0).validation)


def test_keras_home_is_where_get_file_downloads(tmp_path, monkeypatch):
    from keras.src.backend import config

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    assert keras_home() == tmp_path
    monkeypatch.setattr(config, "_KERAS_DIR", "/proc/no-keras-home")  # not writable: get_file uses /tmp/.keras
    assert keras_home() == Path("/tmp/.keras")


def write_noisy_images(root: Path, counts: dict[str, int]) -> Path:
    """PNGs of random pixels, 9x11, so that resizing them gives fractional values."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
            (root / name / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def epochs_of(datasets, epochs=(0, 1, 3), skip=2) -> list[list[np.ndarray]]:
    return [[x.numpy() for x, _ in datasets.train_for_epoch(epoch, skip if epoch == 3 else 0)] for epoch in epochs]


@pytest.mark.parametrize("memory_share", [0.5, 0.0])  # decoded set in memory, then in a temporary file
def test_images_are_decoded_once_with_the_batches_of_streaming(tmp_path, monkeypatch, memory_share):
    import seqcli.data.images

    monkeypatch.setattr(seqcli.data.images, "MEMORY_SHARE", memory_share)
    monkeypatch.setattr(seqcli.data.scratch, "DISK_HEADROOM", 0)
    root = write_noisy_images(tmp_path / "images", {"a": 5, "b": 4})
    data = {"train": {"path": "images", "image_size": [6, 5], "scale": 0.5}, "validation": 0.2, "batch_size": 3}
    streamed = epochs_of(load_datasets({**data, "cache": False}, tmp_path, seed=7))
    decoded = load_datasets(data, tmp_path, seed=7)
    assert decoded.train is not None  # decoded on first use
    shutil.rmtree(root)  # decoded once: training never reads the files again
    for epoch, expected in zip(decoded_epochs := epochs_of(decoded), streamed):
        assert len(epoch) == len(expected)
        for got, want in zip(epoch, expected):
            np.testing.assert_array_equal(got, want)
    assert decoded_epochs[0][0].shape == (3, 6, 5, 3)
    assert len(flat([x for x, _ in decoded.validation])) == 2


def test_images_decoded_first_by_all_epochs_at_once(tmp_path):
    """train_epochs builds its epochs inside a traced flat_map: the decoding it triggers still runs eagerly."""
    write_noisy_images(tmp_path / "images", {"a": 3, "b": 3})
    data = {"train": {"path": "images", "image_size": [4, 4]}, "batch_size": 2}
    first = [x.numpy() for x, _ in load_datasets(data, tmp_path, seed=3).train_epochs(0, 2)]
    again = load_datasets(data, tmp_path, seed=3)
    expected = [x.numpy() for epoch in (0, 1) for x, _ in again.train_for_epoch(epoch)]
    assert len(first) == len(expected) == 6
    for got, want in zip(first, expected):
        np.testing.assert_array_equal(got, want)


def test_a_broken_image_first_reached_by_all_epochs_at_once_is_named(tmp_path):
    root = write_noisy_images(tmp_path / "images", {"a": 2, "b": 2})
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (4).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    (root / "b" / "1.png").write_bytes(header + b"then no image data")  # its size reads; its pixels do not
    datasets = load_datasets({"train": {"path": "images", "image_size": [4, 4]}}, tmp_path, seed=0)
    with pytest.raises(DataError, match=r"data.train: cannot decode image .*/b/1\.png"):
        datasets.train_epochs(0, 2)


def test_images_on_disk_are_a_file_with_no_name_that_nothing_outlives(tmp_path, monkeypatch):
    """The decoded set lives in a file with no name once it is mapped, so a process killed with SIGKILL
    leaves nothing to clean (the kernel frees the blocks): no name in the folder, the mapping still there."""
    import seqcli.data.images

    monkeypatch.setattr(seqcli.data.images, "MEMORY_SHARE", 0.0)
    monkeypatch.setattr(seqcli.data.scratch, "DISK_HEADROOM", 0)
    write_noisy_images(tmp_path / "images", {"a": 2, "b": 2})
    # TensorFlow writes the modules autograph generates into the temporary folder the first time a process
    # converts a function: a pipeline built once before, elsewhere, leaves the scratch folder to seq alone.
    assert load_datasets({"train": {"path": "images", "image_size": [4, 4]}}, tmp_path, seed=0).train is not None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    datasets = load_datasets({"train": {"path": "images", "image_size": [4, 4]}}, tmp_path, seed=0)
    assert datasets.train is not None
    assert list((tmp_path / "scratch").iterdir()) == []
    maps = Path("/proc/self/maps").read_text()
    assert f"{tmp_path / 'scratch'}/seq-images-" in maps and "decoded.npy (deleted)" in maps  # on disk, unnamed


def test_an_image_that_cannot_be_decoded_is_named(tmp_path):
    root = write_noisy_images(tmp_path / "images", {"a": 2, "b": 2})
    (root / "b" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"data.train: cannot decode image .*/b/1\.png"):
        _ = load_datasets({"train": {"path": "images", "image_size": [4, 4]}}, tmp_path, seed=0).train


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "iris", "digits", "diabetes"])
def test_bundled_tables_split_the_same_way_every_time_keeping_class_shares(name):
    from seqcli.data.bundled_datasets import BUNDLED_DATASETS, load_table
    from seqcli.data.sources import open_source

    x, y = load_table(name)
    train = open_source(f"{name}:train", Path("."), "data.train", labels=True)
    test = open_source(f"{name}:test", Path("."), "data.test", labels=True)
    assert train.count + test.count == len(x) and abs(test.count - 0.2 * len(x)) <= len(np.unique(y))
    rows = {tuple(row) for row in x.tolist()}
    assert {tuple(row) for row in train.x.tolist()} | {tuple(row) for row in test.x.tolist()} == rows
    assert train.x.dtype == np.float32 and train.x.shape[1:] == x.shape[1:]
    again = open_source(f"{name}:test", Path("."), "data.test", labels=True)
    np.testing.assert_array_equal(again.x, test.x)
    if BUNDLED_DATASETS[name][1]:  # a class target: each class keeps its share in the test split, to a sample
        for value in np.unique(y):
            assert abs((test.y == value).sum() - 0.2 * (y == value).sum()) <= 0.5


def test_a_bundled_table_without_scikit_learn_says_what_to_install(monkeypatch):
    from seqcli.data.sources import open_source
    from seqcli.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingDependency, match="ships inside scikit-learn") as caught:
        open_source("iris:train", Path("."), "data.train", labels=True)
    assert "pip install scikit-learn" in caught.value.hint
