"""`seq extract`: the guide's feature extractor, streamed to disk, equal to hand-written Keras."""

import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.modelbuild import model_from_spec
from seqcli.specfile import load_spec
from seqcli.verbs.extract import feature_extractor
from tests.bases import BASE_NAME, keras, save_tiny_mobilenet_weights, write_images
from tests.conftest import SPECS
from tests.conftest import run_seq as run

TINY = (
    "layers:\n  - Input: {shape: [32, 32, 3]}\n  - Rescaling: {scale: 0.00784313725, offset: -1}\n"
    "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: base.weights.h5}\n"
    "  - Dense: {units: 3}\n"
)


def saved_weights(spec_path, target):
    """Weights of the spec's model, saved as a training run would leave them."""
    model = model_from_spec(load_spec(spec_path))
    model.save_weights(target)
    return model


@pytest.fixture
def guide_data(tmp_path):
    x = np.random.default_rng(0).random((3, 250, 250, 3), dtype=np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    return tmp_path / "x.npz", x


def test_all_layers_equal_the_guides_feature_extractor(tmp_path, guide_data):
    data, x = guide_data
    spec = SPECS / "feature_extractor.yaml"
    model = saved_weights(spec, tmp_path / "w.weights.h5")
    result = run(
        "extract",
        str(spec),
        "--weights",
        str(tmp_path / "w.weights.h5"),
        "--data",
        str(data),
        "--all",
        "--output",
        str(tmp_path / "features.npz"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "conv2d: (3, 123, 123, 32) float32\nconv2d_1: (3, 121, 121, 32) float32\n"
        f"conv2d_2: (3, 119, 119, 32) float32\nWrote features of 3 samples to "
        f"{tmp_path / 'features.npz'}\n"
    )
    # The guide, by hand:
    k = keras()
    initial_model = k.Sequential(
        [
            k.Input(shape=(250, 250, 3)),
            k.layers.Conv2D(32, 5, strides=2, activation="relu"),
            k.layers.Conv2D(32, 3, activation="relu"),
            k.layers.Conv2D(32, 3, activation="relu"),
        ]
    )
    initial_model.load_weights(tmp_path / "w.weights.h5")
    extractor = k.Model(inputs=initial_model.inputs, outputs=[layer.output for layer in initial_model.layers])
    expected = extractor.predict(x, verbose=0)
    with np.load(tmp_path / "features.npz") as features:
        assert features.files == [layer.name for layer in model.layers]
        for name, want in zip(features.files, expected, strict=True):
            np.testing.assert_allclose(features[name], want, rtol=1e-6, atol=1e-6)


def test_one_named_layer(tmp_path, guide_data):
    data, x = guide_data
    spec = SPECS / "feature_extractor_named.yaml"
    model = saved_weights(spec, tmp_path / "w.weights.h5")
    result = run(
        "extract",
        str(spec),
        "--weights",
        str(tmp_path / "w.weights.h5"),
        "--data",
        str(data),
        "--layer",
        "intermediate_layer",
        "--output",
        str(tmp_path / "f.npz"),
    )
    assert result.exit_code == 0, result.output
    k = keras()
    by_hand = k.Model(inputs=model.inputs, outputs=model.get_layer(name="intermediate_layer").output)
    with np.load(tmp_path / "f.npz") as features:
        assert features.files == ["intermediate_layer"]
        np.testing.assert_allclose(features["intermediate_layer"], by_hand.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_format_json_lists_the_arrays_written(tmp_path, guide_data):
    data, _ = guide_data
    spec = SPECS / "feature_extractor_named.yaml"
    result = run(
        "extract",
        str(spec),
        "--data",
        str(data),
        "--layer",
        "intermediate_layer",
        "--output",
        str(tmp_path / "f.npz"),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "output": str(tmp_path / "f.npz"),
        "format": "npz",
        "count": 3,
        "arrays": {"intermediate_layer": {"shape": [3, 121, 121, 32], "dtype": "float32"}},
    }
    assert result.stderr.startswith("note: no --weights")
    with np.load(tmp_path / "f.npz") as features:
        assert features["intermediate_layer"].shape == (3, 121, 121, 32)


@pytest.mark.slow
def test_a_layer_inside_a_pretrained_base(tmp_path, write_spec):
    """keras-team/keras#16355, #16123: the obvious code fails with a disconnected graph; seq extract does not."""
    base = save_tiny_mobilenet_weights(tmp_path / "base.weights.h5", seed=2)
    spec = write_spec(TINY)
    model = saved_weights(spec, tmp_path / "w.weights.h5")
    write_images(tmp_path / "images.npz", 37)
    inner = f"{BASE_NAME}/block_1_expand"
    result = run(
        "extract",
        str(spec),
        "--weights",
        str(tmp_path / "w.weights.h5"),
        "--data",
        str(tmp_path / "images.npz"),
        "--layer",
        inner,
        "--layer",
        "dense",
        "--batch-size",
        "16",
        "--output",
        str(tmp_path / "features"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [f"{inner}: (37, 16, 16, 48) float32", "dense: (37, 3) float32"]
    k = keras()
    with pytest.raises(ValueError, match="is not connected to `inputs`"):  # the pain point: Graph disconnected
        k.Model(model.inputs, model.get_layer(BASE_NAME).get_layer("block_1_expand").output)
    x = np.load(tmp_path / "images.npz")["x"].astype("float32")
    scaled = model.layers[0](x)
    expected_inner = k.Model(base.inputs, base.get_layer("block_1_expand").output)(scaled)
    np.testing.assert_allclose(
        np.load(tmp_path / "features" / BASE_NAME / "block_1_expand.npy"), expected_inner, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(np.load(tmp_path / "features" / "dense.npy"), model(x), rtol=1e-5, atol=1e-5)


def test_layers_two_levels_down(tmp_path, write_spec):
    """A saved Sequential base holding a functional block: 'outer/block/conv' is reachable too."""
    k = keras()
    k.utils.set_random_seed(4)
    inputs = k.Input((8, 8, 1))
    block = k.Model(inputs, k.layers.ReLU(name="act")(k.layers.Conv2D(2, 3, name="conv")(inputs)), name="block")
    outer = k.Sequential([k.Input((8, 8, 1)), block, k.layers.Flatten(name="flat")], name="outer")
    outer.save(tmp_path / "outer.keras")
    spec = write_spec("layers:\n  - Input: {shape: [8, 8, 1]}\n  - Model: {path: outer.keras}\n  - Dense: {units: 2}\n")
    model = model_from_spec(load_spec(spec))
    extractor = feature_extractor(model, ["outer/block/conv", "outer/flat", "dense"])
    x = np.random.default_rng(1).random((5, 8, 8, 1), dtype=np.float32)
    conv, flat, dense = extractor.predict(x, verbose=0)
    np.testing.assert_allclose(conv, block.get_layer("conv")(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(flat, outer.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dense, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_npz_is_zip64_and_streams_every_batch(tmp_path, write_spec, monkeypatch):
    spec = write_spec(
        "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: hidden}\n  - Dense: {units: 2, name: out}\n"
    )
    x = np.arange(4 * 103, dtype=np.float32).reshape(103, 4)
    np.save(tmp_path / "x.npy", x)
    model = saved_weights(spec, tmp_path / "w.weights.h5")
    import seqcli.verbs.extract

    batches = []
    append = seqcli.verbs.extract._NpyStream.append

    def spy(self, array):
        batches.append((self.name, len(array)))
        append(self, array)

    monkeypatch.setattr(seqcli.verbs.extract._NpyStream, "append", spy)
    result = run(
        "extract",
        str(spec),
        "--weights",
        str(tmp_path / "w.weights.h5"),
        "--data",
        str(tmp_path / "x.npy"),
        "--all",
        "--batch-size",
        "10",
        "--output",
        str(tmp_path / "f.npz"),
    )
    assert result.exit_code == 0, result.output
    # Streamed: each layer's features arrive batch by batch (10 batches of 10, one of 3), never as a whole.
    assert sorted(batches) == sorted(
        [(name, 10) for name in ("hidden", "out") for _ in range(10)] + [("hidden", 3), ("out", 3)]
    )
    with zipfile.ZipFile(tmp_path / "f.npz") as archive:
        assert [info.filename for info in archive.infolist()] == ["hidden.npy", "out.npy"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        # ZIP64: each member's local header carries the ZIP64 extra field (id 0x0001), so a member may pass 4 GB
        for info in archive.infolist():
            archive.fp.seek(info.header_offset)
            local = archive.fp.read(30 + len(info.filename) + 40)
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            extra = local[30 + name_length : 30 + name_length + extra_length]
            assert extra[:2] == b"\x01\x00", info.filename
    with np.load(tmp_path / "f.npz") as features:
        np.testing.assert_allclose(features["out"], model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "spec.yaml", "w.weights.h5", "x.npy"]


HIDDEN = "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: hidden}\n  - Dense: {units: 2, name: out}\n"


def errors(result) -> str:
    """stderr less the note about --weights."""
    return "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("note: "))


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_folder_of_the_users_files_is_never_replaced(tmp_path, write_spec):
    spec = write_spec(HIDDEN)
    features = tmp_path / "features"
    (features / "sub").mkdir(parents=True)
    np.save(features / "x.npy", np.ones((6, 4), dtype=np.float32))
    (features / "spec.yaml").write_text(HIDDEN)
    (features / "sub" / "notes.txt").write_text("keep")
    before = tree(tmp_path)
    refused = run("extract", str(spec), "--data", str(features / "x.npy"), "--all", "--output", str(features))
    assert refused.exit_code == 1
    assert errors(refused) == (
        f"error: --output {features} holds an input of this command: {features / 'x.npy'}\n"
        "  hint: choose an --output folder that holds none of the spec, data or weights\n"
    )
    np.save(tmp_path / "x.npy", np.ones((6, 4), dtype=np.float32))
    before = tree(tmp_path)
    for extra in ([], ["--overwrite"]):
        result = run(
            "extract", str(spec), "--data", str(tmp_path / "x.npy"), "--all", "--output", str(features), *extra
        )
        assert result.exit_code == 1
        assert "holds spec.yaml, sub/, x.npy that seq did not write" in errors(result), errors(result)
        assert tree(tmp_path) == before and (features / "sub" / "notes.txt").read_text() == "keep"
    assert "nothing was removed" in errors(result)


def test_a_features_folder_of_seqs_own_is_replaced_with_overwrite(tmp_path, write_spec):
    spec = write_spec(HIDDEN)
    np.save(tmp_path / "x.npy", np.ones((6, 4), dtype=np.float32))
    features = tmp_path / "features"
    args = ["extract", str(spec), "--data", str(tmp_path / "x.npy"), "--output", str(features)]
    assert run(*args, "--all").exit_code == 0
    assert tree(features) == [".seq-lock", ".seq-run.json", "hidden.npy", "out.npy"]
    again = run(*args, "--layer", "hidden")
    assert again.exit_code == 1 and errors(again).startswith(f"error: {features} exists\n  hint: add --overwrite")
    replaced = run(*args, "--layer", "hidden", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert tree(features) == [".seq-lock", ".seq-run.json", "hidden.npy"]
    assert np.load(features / "hidden.npy").shape == (6, 3)
    (features / "mine.txt").write_text("keep")
    foreign = run(*args, "--layer", "hidden", "--overwrite")
    assert foreign.exit_code == 1
    assert errors(foreign).startswith(
        f"error: cannot overwrite {features}: it holds mine.txt that seq did not write; nothing was removed\n"
    )
    assert tree(features) == [".seq-lock", ".seq-run.json", "hidden.npy", "mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_existing_npz_is_replaced_only_with_overwrite(tmp_path, write_spec):
    spec = write_spec(HIDDEN)
    np.save(tmp_path / "x.npy", np.ones((6, 4), dtype=np.float32))
    (tmp_path / "f.npz").write_bytes(b"mine")
    args = ["extract", str(spec), "--data", str(tmp_path / "x.npy"), "--all", "--output", str(tmp_path / "f.npz")]
    refused = run(*args)
    assert refused.exit_code == 1 and errors(refused).startswith(f"error: {tmp_path / 'f.npz'} exists\n")
    assert (tmp_path / "f.npz").read_bytes() == b"mine"
    assert run(*args, "--overwrite").exit_code == 0
    with np.load(tmp_path / "f.npz") as features:
        assert sorted(features.files) == ["hidden", "out"]


def test_stale_staging_of_a_killed_extract_is_cleaned(tmp_path, write_spec):
    spec = write_spec(HIDDEN)
    np.save(tmp_path / "x.npy", np.ones((6, 4), dtype=np.float32))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".seq-tmp-{int(dead.stdout)}-features.abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "hidden.npy").write_bytes(b"half")
    live = tmp_path / f".seq-tmp-{os.getpid()}-other.abc123"  # a live process's: left alone
    live.write_bytes(b"in use")
    result = run("extract", str(spec), "--data", str(tmp_path / "x.npy"), "--all", "--output", str(tmp_path / "f"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["f", "spec.yaml", "x.npy", live.name])


def test_an_unbuilt_spec_takes_the_data_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 4), dtype=np.float32))
    result = run(
        "extract",
        str(SPECS / "unbuilt_stack.yaml"),
        "--data",
        str(tmp_path / "x.npy"),
        "--all",
        "--output",
        str(tmp_path / "f.npz"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dense: (5, 2) float32\ndense_1: (5, 3) float32\ndense_2: (5, 4) float32\n")


@pytest.mark.parametrize(
    "args,status,message",
    [
        (
            ["--layer", "conv2d_7"],
            1,
            "error: --layer 'conv2d_7': the model has no such layer\n  hint: did you mean 'conv2d_2'?\n",
        ),
        (["--layer", "conv2d", "--all"], 2, "Error: give --layer NAME (one or more) or --all\n"),
        ([], 2, "Error: give --layer NAME (one or more) or --all\n"),
    ],
)
def test_layer_choice_problems(tmp_path, args, status, message):
    np.save(tmp_path / "x.npy", np.ones((2, 250, 250, 3), dtype=np.float32))
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(SPECS / "feature_extractor.yaml"),
            "--data",
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / "f.npz"),
            *args,
        ],
    )
    assert result.exit_code == status
    assert result.stderr.endswith(message)
    assert not (tmp_path / "f.npz").exists()


def test_data_that_does_not_fit_the_model(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 8, 8, 3), dtype=np.float32))
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(SPECS / "feature_extractor.yaml"),
            "--data",
            str(tmp_path / "x.npy"),
            "--all",
            "--output",
            str(tmp_path / "f.npz"),
        ],
    )
    assert result.exit_code == 1
    assert (
        f"error: --data: samples in {tmp_path / 'x.npy'} have shape (8, 8, 3), but the model takes (250, 250, 3)"
    ) in result.stderr


def test_weights_from_a_keras_model_file(tmp_path, write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: hidden}\n")
    model = model_from_spec(load_spec(spec))
    model.save(tmp_path / "trained.keras")
    x = np.random.default_rng(3).random((7, 4), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    result = run(
        "extract",
        str(spec),
        "--weights",
        str(tmp_path / "trained.keras"),
        "--data",
        str(tmp_path / "x.npy"),
        "--layer",
        "hidden",
        "--output",
        str(tmp_path / "f.npz"),
    )
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "f.npz") as features:
        np.testing.assert_allclose(features["hidden"], model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/proc/f.npz", "error: cannot write /proc/f.npz: No such file or directory\n"),
        ("/proc/features/x", "error: cannot create the folder /proc/features for x: No such file or directory\n"),
        ("{tmp}/x.npy", "error: --output {tmp}/x.npy is a file, and this command writes a folder there\n"),
        ("{tmp}/x.npy/f.npz", "error: cannot create the folder {tmp}/x.npy for f.npz: {tmp}/x.npy is a file\n"),
    ],
)
def test_an_unwritable_output_is_reported_before_the_model_is_built(tmp_path, monkeypatch, output, message):
    import seqcli.modelbuild

    def must_not_build(*args, **kwargs):
        raise AssertionError("built the model before checking --output")

    monkeypatch.setattr(seqcli.modelbuild, "model_from_spec", must_not_build)
    np.save(tmp_path / "x.npy", np.ones((2, 4), dtype=np.float32))
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(SPECS / "unbuilt_stack.yaml"),
            "--data",
            str(tmp_path / "x.npy"),
            "--all",
            "--output",
            output.format(tmp=tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert message.format(tmp=tmp_path) in result.stderr and "  hint: " in result.stderr
    assert "unexpected" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_a_failed_write_keeps_the_previous_features(tmp_path, write_spec, monkeypatch):
    import seqcli.verbs.extract

    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: hidden}\n")
    np.save(tmp_path / "x.npy", np.ones((6, 4), dtype=np.float32))
    (tmp_path / "f.npz").write_bytes(b"previous")

    def full_disk(self, array):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(seqcli.verbs.extract._NpyStream, "append", full_disk)
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            str(spec),
            "--data",
            str(tmp_path / "x.npy"),
            "--all",
            "--output",
            str(tmp_path / "f.npz"),
            "--overwrite",
        ],
    )
    assert result.exit_code == 3  # a full disk: ExitStatus.ENVIRONMENT
    assert f"error: cannot write {tmp_path / 'f.npz'}: No space left on device\n" in result.stderr
    assert (tmp_path / "f.npz").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "spec.yaml", "x.npy"]


def test_a_relative_data_path_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["extract", str(SPECS / "unbuilt_stack.yaml"), "--data", "missing.npy", "--all", "--output", "f.npz"]
    )
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"error: --data: no such file or directory: {tmp_path / 'missing.npy'} "
        f"('missing.npy' is relative to the current folder, {tmp_path})\n"
        "  hint: check the path\n"
    )
