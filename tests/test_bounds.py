"""Bounded memory and time for every input: zip bombs, lying .npy headers, CSVs, FIFOs
and devices, models too big for the memory budget, too many virtual CPUs.

Cases about size run the CLI in a subprocess under an address-space limit (RLIMIT_AS, 3 GB: TensorFlow
trains a tiny model in it) with a timeout, and assert its peak resident memory, so that a regression fails
instead of swapping the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from seqcli.budget import ENVIRONMENT, LimitError, parse_size
from tests.conftest import run_seq as run

ADDRESS_SPACE = 3 << 30
PEAK_LIMIT = 1500 << 20  # TensorFlow and a tiny model: about 700 MB
RUNNER = """
import json, resource, subprocess, sys
limit, timeout, available = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
code = ("import sys, seqcli.budget as l\\n"
        + (f"l.available_memory = lambda: {int(available)}\\n" if available != "-" else "")
        + "from seqcli.cli import main\\nsys.argv = ['seq'] + sys.argv[1:]\\nmain()\\n")
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    p = subprocess.run([sys.executable, "-c", code, *sys.argv[4:]], preexec_fn=cap, capture_output=True, text=True,
                       timeout=timeout)
    rc, err = p.returncode, p.stderr
except subprocess.TimeoutExpired as error:
    rc, err = "timeout", str(error.stderr)
print(json.dumps({"rc": rc, "peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "stderr": err}))
"""


def bounded(*args, cwd: Path, available: int | None = None, timeout: float = 120) -> dict:
    """``seq ARGS`` in a subprocess under RLIMIT_AS: its exit status, stderr and peak RSS in bytes.
    ``available`` pretends the machine has that much memory available (the default budget's base)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(ENVIRONMENT, None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(ADDRESS_SPACE),
            str(timeout),
            "-" if available is None else str(available),
            *map(str, args),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )
    return json.loads(done.stdout)


def zeros_npz(path: Path, samples: int, shape=(8, 8, 1)) -> Path:
    """A zip bomb: an .npz of float32 zeros, deflated (about 1000 times smaller on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "<f4", "fortran_order": False, "shape": (samples, *shape)}
            )
            chunk = bytes(16 << 20)
            left = samples * int(np.prod(shape)) * 4
            while left > 0:
                handle.write(chunk[:left])
                left -= len(chunk)
        with archive.open("y.npy", "w") as handle:
            np.lib.format.write_array(handle, np.zeros(samples, np.int64))
    return path


TINY_SPEC = """layers:
  - Flatten: {}
  - Dense: {units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
data: {train: DATA, batch_size: 8}
"""


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """1.5 GB of zeros in an .npz of a few MB."""
    return zeros_npz(tmp_path_factory.mktemp("bomb") / "bomb.npz", samples=(1536 << 20) // 256)


def write_project(folder: Path, data: str, spec: str = TINY_SPEC) -> Path:
    path = folder / "spec.yaml"
    path.write_text(spec.replace("DATA", data))
    return path


# ----------------------------------------------------------------------------- before reading


@pytest.mark.slow
def test_npz_bomb_is_refused_before_it_is_read(bomb, tmp_path):
    assert bomb.stat().st_size < 16 << 20
    write_project(tmp_path, str(bomb))
    result = bounded(
        "train", "spec.yaml", "--output", "run", "--max-memory", "512M", "--allow-path", bomb.parent, cwd=tmp_path
    )
    assert result["rc"] == 1, result
    assert f"data.train: {bomb} would take 1.55 GB when read (2 members" in result["stderr"]
    assert "over the memory limit" in result["stderr"] and "limit is 512.00 MB (--max-memory)" in result["stderr"]
    assert result["peak"] < PEAK_LIMIT
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_npz_bomb_against_the_default_budget(bomb, tmp_path):
    """Without --max-memory the budget is 70% of the memory available: here 1 GB."""
    write_project(tmp_path, str(bomb))
    result = bounded(
        "train", "spec.yaml", "--output", "run", "--allow-path", bomb.parent, cwd=tmp_path, available=1 << 30
    )
    assert result["rc"] == 1, result
    assert "over the memory limit" in result["stderr"]
    assert "the limit is 716.80 MB (70% of the memory available now)" in result["stderr"]
    assert result["peak"] < PEAK_LIMIT


@pytest.mark.slow
def test_shape_mismatch_is_found_from_the_header_of_a_big_npz(bomb, tmp_path):
    """The model takes (4,), the .npz holds 1.5 GB of (8, 8, 1) samples: reported from the header (5.5 GB
    peak before, when the mismatch was found after reading everything)."""
    spec = write_project(tmp_path, str(bomb), TINY_SPEC.replace("layers:\n", "layers:\n  - Input: {shape: [4]}\n"))
    result = bounded(
        "train", "spec.yaml", "--output", "run", "--allow-path", bomb.parent, cwd=tmp_path, available=16 << 30
    )
    assert result["rc"] == 1, result
    assert (
        "layers[0].Input.shape: the model takes inputs of shape (4,), but data.train's samples have shape "
        "(8, 8, 1)" in result["stderr"]
    )
    assert spec.exists() and result["peak"] < PEAK_LIMIT


def test_a_forged_member_size_is_refused(trained, tmp_path):
    """A central directory that claims 1 TB for a few bytes: deflate cannot produce that."""
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\0" * 1000)
        archive.filelist[0].file_size = 1 << 40
    result = run("predict", trained / "run", "--data", path, "--output", tmp_path / "p.npy")
    assert result.exit_code == 1
    assert f"--data: {path}: member 'x.npy' declares 1.00 TB from" in result.stderr
    assert "more than deflate can produce" in result.stderr


def test_keras_bomb_as_a_base_is_a_positioned_problem_in_check(tmp_path, write_spec):
    """A .keras whose config.json inflates to 100 MB (the real case reached 6.7 GB in seq check)."""
    with zipfile.ZipFile(tmp_path / "base.keras", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b" " * (100 << 20))
    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Model: {path: base.keras}\n")
    result = run("check", spec)
    assert result.exit_code == 1
    assert (
        f"{spec}:3:5: layers[1].Model: the config.json of {tmp_path / 'base.keras'} declares 100.00 MB; "
        "a model's config is at most 64.00 MB" in result.stderr
    )


@pytest.mark.slow
def test_npy_header_claiming_an_impossible_size(tmp_path):
    path = tmp_path / "liar.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 8, 8, 1)}
        )
        handle.write(bytes(256))
    write_project(tmp_path, "liar.npy")
    result = bounded("extract", "spec.yaml", "--data", "liar.npy", "--all", "--output", "f.npz", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert (
        "liar.npy claims shape (1000000000000, 8, 8, 1) of float32 (232.83 TB), but holds 256 B "
        "of data" in result["stderr"]
    )
    assert result["peak"] < PEAK_LIMIT


def test_npz_member_header_larger_than_the_member(trained, tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
        handle.write(bytes(80))
    result = run("predict", trained / "run", "--data", path, "--output", tmp_path / "p.npy")
    assert result.exit_code == 1
    assert (
        f"--data: array 'x' in {path} claims shape (1000000000,) of float64 (7.45 GB), but holds 80 B" in result.stderr
    )


def test_csv_shape_is_checked_after_the_header(tmp_path, write_spec):
    """The header says 3 features, the model takes 5: reported before any row (here a bad one) is read."""
    (tmp_path / "t.csv").write_text("a,b,c,label\n1,2,3,0\nx,y,z,oops\n")
    spec = write_spec(
        "layers:\n  - Input: {shape: [5]}\n  - Dense: {units: 2}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\ndata: {train: t.csv}\n"
    )
    result = run("train", spec, "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert (
        f"{spec}:2:20: layers[0].Input.shape: the model takes inputs of shape (5,), but data.train's samples "
        "have shape (3,)" in result.stderr
    )
    assert "oops" not in result.stderr


def test_csv_is_read_within_the_budget(tmp_path, write_spec):
    rows = "\n".join("1,2,3,0" for _ in range(40_000))
    (tmp_path / "t.csv").write_text("a,b,c,label\n" + rows + "\n")
    spec = write_spec(
        "layers:\n  - Dense: {units: 2}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\ndata: {train: t.csv}\n"
    )
    result = run("train", spec, "--output", tmp_path / "run", "--max-memory", "200K")
    assert result.exit_code == 1
    assert (
        f"data.train: {tmp_path / 't.csv'} holds more than 200.00 KB of numbers (stopped reading at line "
        in result.stderr
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifos_and_devices_are_refused_at_once(tmp_path, kind):
    if kind == "fifo":
        data = tmp_path / "pipe.npy"
        os.mkfifo(data)
        expected = f"--data: {data} is a FIFO (named pipe), not a regular file"
    else:
        data = Path("/dev/zero")
        expected = "--data: /dev/zero is a character device, not a regular file"
    write_project(tmp_path, "unused.npz")
    result = bounded("extract", "spec.yaml", "--data", data, "--all", "--output", "f.npz", cwd=tmp_path, timeout=60)
    assert result["rc"] == 1, result
    assert expected in result["stderr"]


# ----------------------------------------------------------------------------- before allocating


BIG_DENSE = """layers:
  - Dense: {units: 3000000}
compile: {optimizer: adam, loss: mse}
data: {train: wide.npz, batch_size: 8}
"""


@pytest.mark.slow
def test_a_model_over_the_budget_is_refused_with_its_estimate(tmp_path):
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 4096), np.float32), y=np.zeros((4, 3000000), np.float32))
    write_project(tmp_path, "wide.npz", BIG_DENSE)
    result = bounded("train", "spec.yaml", "--output", "run", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert "error: training this model needs about 183.24 GB, over the memory limit of" in result["stderr"]
    assert (
        "Memory estimate: 183.24 GB to train (weights 45.79 GB, optimizer 137.36 GB, a batch of 8 " in result["stderr"]
    )
    assert result["peak"] < PEAK_LIMIT


@pytest.mark.slow
def test_extract_refuses_a_model_over_the_budget(tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((4, 4096), np.float32))
    write_project(tmp_path, "wide.npz", BIG_DENSE)
    result = bounded("extract", "spec.yaml", "--data", "wide.npy", "--all", "--output", "f.npz", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert "error: extracting with this model needs about 45.88 GB, over the memory limit" in result["stderr"]
    assert result["peak"] < PEAK_LIMIT


@pytest.mark.slow
def test_a_huge_input_on_small_data_reports_the_shape_first(tmp_path):
    np.savez(tmp_path / "small.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.zeros(4, np.int64))
    spec = write_project(
        tmp_path, "small.npz", TINY_SPEC.replace("layers:\n", "layers:\n  - Input: {shape: [100000, 100000, 3]}\n")
    )
    result = bounded("train", "spec.yaml", "--output", "run", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert (
        f"{spec}:2:20: layers[0].Input.shape: the model takes inputs of shape (100000, 100000, 3), but "
        "data.train's samples have shape (8, 8, 1)" in result["stderr"].replace("spec.yaml", str(spec))
    )
    assert result["peak"] < PEAK_LIMIT


@pytest.mark.slow
def test_a_huge_image_size_is_refused_with_its_estimate(tmp_path, write_image_folder):
    write_image_folder(tmp_path / "images", {"a": 1, "b": 1})
    spec = TINY_SPEC.replace(
        "data: {train: DATA, batch_size: 8}", "data: {train: {path: images, image_size: [20000, 20000]}, batch_size: 8}"
    )
    write_project(tmp_path, "", spec)
    result = bounded("train", "spec.yaml", "--output", "run", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert "error: training this model needs about 125.17 GB" in result["stderr"]
    assert result["peak"] < PEAK_LIMIT


# Every path that makes a model's weights, each of which must ask the one memory check of a weightless build.
MEMORY_PATHS = {
    "train": ["train", "tiny.yaml", "--output", "trained"],
    "extract": ["extract", "tiny.yaml", "--data", "x.npy", "--all", "--output", "features.npz"],
    "freeze a spec": ["freeze", "tiny.yaml", "--all-but-last", "1", "--output", "frozen.keras"],
    "plot a confusion matrix": ["plot", "model.keras", "--confusion", "--data", "tiny.npz", "--output", "c.png"],
    "predict": ["predict", "model.keras", "--data", "x.npy", "--output", "p.npy", "--batch-size", "4"],
    "evaluate": ["evaluate", "model.keras", "--data", "tiny.npz"],
}


@pytest.fixture(scope="module")
def memory_project(tmp_path_factory) -> Path:
    from seqcli.models import save_model
    from tests.conftest import write_tiny_project

    folder = tmp_path_factory.mktemp("memory")
    write_tiny_project(folder)
    np.save(folder / "x.npy", np.load(folder / "tiny.npz")["x"][:8])
    import keras

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    save_model(model, folder / "model.keras")
    return folder


def refusing_memory_check(model, *, batch_size, what, optimizer=None, training=False):
    raise LimitError(f"{what}: refused by the planted memory check")


@pytest.mark.parametrize("path", MEMORY_PATHS)
def test_every_path_that_makes_weights_asks_the_one_memory_check(memory_project, monkeypatch, path):
    """Plant a memory check that refuses every model: each path must then refuse before making weights, so a
    path that skips the check (or compares an estimate of its own) fails here."""
    from seqcli.memory import check_model_memory
    from tests.conftest import run_in

    monkeypatch.setattr(check_model_memory, "__code__", refusing_memory_check.__code__)
    before = sorted(os.listdir(memory_project))
    result = run_in(memory_project, *MEMORY_PATHS[path])
    assert result.exit_code == 1, result.output
    assert "refused by the planted memory check" in result.stderr
    assert sorted(os.listdir(memory_project)) == before  # nothing written


@pytest.mark.slow
def test_too_many_virtual_cpus(tmp_path):
    np.savez(tmp_path / "small.npz", x=np.zeros((16, 4), np.float32), y=np.zeros(16, np.int64))
    spec = write_project(tmp_path, "small.npz")
    result = bounded("train", "spec.yaml", "--output", "run", "--virtual-cpus", "1000", cwd=tmp_path)
    assert result["rc"] == 1, result
    assert "distribute.virtual_cpus: 1000 virtual CPUs is more than this machine can use" in result["stderr"]
    assert result["peak"] < PEAK_LIMIT
    result = bounded(
        "train", "spec.yaml", "--output", "run", "--virtual-cpus", "8", "--set", "data.batch_size=4", cwd=tmp_path
    )
    assert result["rc"] == 1, result
    assert "8 virtual CPUs cannot share batches of 4 samples: each replica needs at least one" in result["stderr"]
    assert spec.exists() and not (tmp_path / "run").exists()


def test_predict_and_freeze_refuse_over_a_small_budget(trained, tmp_path):
    result = run(
        "predict", trained / "run", "--data", trained / "tiny.npz", "--output", tmp_path / "p.npy", "--max-memory", "1K"
    )
    assert result.exit_code == 1
    assert f"error: model: {trained / 'run' / 'model.keras'} would take 20.22 KB when read" in result.stderr
    assert "the limit is 1.00 KB (--max-memory)" in result.stderr
    result = run(
        "predict",
        trained / "run",
        "--data",
        trained / "tiny.npz",
        "--output",
        tmp_path / "p.npy",
        "--max-memory",
        "30K",
        "--batch-size",
        "100000",
    )
    assert result.exit_code == 1
    assert f"error: running {trained / 'run' / 'model.keras'} needs about" in result.stderr
    result = run(
        "freeze", trained / "tiny.yaml", "--all-but-last", "1", "--output", tmp_path / "f.keras", "--max-memory", "100"
    )
    assert result.exit_code == 1 and "error: freezing this model needs about" in result.stderr
    assert not (tmp_path / "p.npy").exists() and not (tmp_path / "f.keras").exists()


def test_max_memory_must_be_a_size(tmp_path):
    result = run("predict", tmp_path, "--data", "x.npy", "--output", tmp_path / "p.npy", "--max-memory", "lots")
    assert result.exit_code == 2
    assert (
        "Invalid value for '--max-memory': expected a size such as 8G, 512M or 1.5GB; received 'lots'" in result.stderr
    )


# ----------------------------------------------------------------------------- summary and check show it


def test_check_shows_the_estimate_and_never_refuses(tmp_path, write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [4096]}\n  - Dense: {units: 3000000}\n")
    result = run("check", spec, "--format", "json")
    assert result.exit_code == 0, result.output
    memory = json.loads(result.stdout)["specs"][0]["memory"]
    assert memory == {
        "total": memory["weights"] * 4 + memory["activations"],
        "weights": 49_164_000_000,
        "optimizer": 49_164_000_000 * 3,
        "activations": 32 * (4096 + 3_000_000) * 4,
        "batch_size": 32,
        "training": True,
    }


def test_expect_max_memory_fails_with_a_position(write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [4096]}\n  - Dense: {units: 3000000}\nexpect:\n  max_memory: 2G\n")
    result = run("check", spec)
    assert result.exit_code == 1
    assert f"{spec}:5:15: expect.max_memory: training needs about 183.51 GB, over the limit of 2G" in result.stderr
    bad = write_spec("layers:\n  - Input: {shape: [4]}\nexpect:\n  max_memory: 2 gigs\n", "bad.yaml")
    result = run("check", bad)
    assert result.exit_code == 1
    assert f"{bad}:4:15: expect.max_memory:" in result.stderr and "expected a size such as 8G" in result.stderr


def test_summary_table_shows_the_estimate(write_spec):
    spec = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 2}\n")
    result = run("summary", spec)
    assert result.exit_code == 0
    assert "Memory estimate: 928 B to train (weights 40 B, optimizer 120 B, a batch of 32 768 B)" in result.stdout


def test_parse_size():
    assert parse_size("8G") == 8 << 30
    assert parse_size("1.5GB") == 3 << 29
    assert parse_size("512MiB") == 512 << 20
    assert parse_size(1000) == 1000
    for bad in ("", "G", "-1G", "0", "8X", True):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
