import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
# The one console width of every CLI test: wide enough that no line a test asserts on wraps.
CONSOLE_COLUMNS = 200

# Each test file's area, a marker: `pytest -m spec` runs what a change to seqcli/specfile/ needs (CONTRIBUTING.md).
# A file matched by no prefix fails the run (test_every_test_file_has_an_area), so a new one is placed.
AREAS = {
    "spec": ("test_spec", "test_numbers", "test_round_trips", "test_fuzz", "test_cli_check", "test_cli_summary"),
    "build": (
        "test_build", "test_applications", "test_models", "test_safe_mode", "test_trainable", "test_compile",
        "test_keras_peer",
    ),
    "data": ("test_data", "test_bounds", "test_faults", "test_cli_text"),
    "training": ("test_training", "test_checkpoint", "test_rundir", "test_cli_train", "test_promises", "test_stages"),
    "distribute": ("test_distribute", "test_cli_train_multiworker"),
    "tune": ("test_cli_tune",),
    "export": ("test_cli_export", "test_cli_predict", "test_cli_evaluate", "test_cli_extract", "test_cli_freeze"),
    "cli": (
        "test_cli_meta", "test_cli_doors", "test_cli_color", "test_cli_init", "test_cli_import", "test_cli_plot",
        "test_cli_transfer", "test_ci_files", "test_layering", "test_messages", "test_hostile", "test_files",
        "test_outputs", "test_read_door",
    ),
}  # fmt: skip


def area_of(filename: str) -> str | None:
    stem = Path(filename).stem
    return next((area for area, prefixes in AREAS.items() if stem.startswith(prefixes)), None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        area = area_of(item.path.name)
        if area is not None:
            item.add_marker(getattr(pytest.mark, area))


@pytest.fixture(autouse=True)
def default_memory_budget():
    """--max-memory sets the process's budget; an in-process CLI call must not leave it to the next test."""
    from seqcli.budget import configure

    yield
    configure(None)


@pytest.fixture
def write_spec(tmp_path):
    """Write YAML text to a spec file in a temporary folder and return its path."""

    def write(text: str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


@pytest.fixture
def write_image_folder():
    """Write a folder of PNG images, one subfolder per class (``counts``: class name -> images), each image
    one gray level that tells its class and index apart; returns the folder."""

    def write(root: Path, counts: dict[str, int], size=(5, 7)) -> Path:
        from seqcli.keras_env import import_tensorflow

        tf = import_tensorflow()
        for class_index, (name, count) in enumerate(counts.items()):
            (root / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.full((*size, 3), 10 * class_index + i, dtype=np.uint8)
                (root / name / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
        return root

    return write


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A finished `seq train` run of the tiny project (write_tiny_project), shared read-only by the tests of
    the commands that use a run: its folder holds tiny.yaml, tiny.npz and run/."""
    directory = tmp_path_factory.mktemp("trained")
    write_tiny_project(directory)
    result = run_seq("train", directory / "tiny.yaml", "--output", directory / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return directory


# ----------------------------------------------------------------------------- the tiny project

TINY_SPEC = """\
name: tiny
layers:
  - Input: {{shape: [4, 4, 1]}}
  - Flatten: {{}}
{dropout}  - Dense: {{units: 3, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.05}}}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
data:
  train: tiny.npz
  validation: 0.25
  batch_size: 8
train:
  epochs: {epochs}
  seed: 3
{extra}"""


def write_tiny_project(
    directory: Path, *, epochs: int = 2, extra: str = "", samples: int = 128, dropout: float | None = 0.2
) -> Path:
    """A spec and 4x4 'images' of 3 classes (the brightest third of the image is the class): trains in
    a second. Returns the spec's path. The Dropout layer (``dropout=None``: none) puts a seed generator's
    state into checkpoints; under several replicas its masks differ from one device's."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, samples)
    x = rng.uniform(0, 0.3, (samples, 4, 4, 1)).astype(np.float32)
    for index, label in enumerate(y):
        x[index].reshape(-1)[label * 5 : (label + 1) * 5] += 0.7
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "tiny.npz", x=x, y=y)
    spec = directory / "tiny.yaml"
    layer = f"  - Dropout: {{rate: {dropout}}}\n" if dropout is not None else ""
    spec.write_text(TINY_SPEC.format(epochs=epochs, extra=extra, dropout=layer))
    return spec


def checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / "last.npz") as archive:
        return {name: archive[name] for name in archive.files if name != "meta"}


def assert_same_checkpoint(first: Path, second: Path) -> None:
    """Weights, optimizer state and metric totals all equal, to the bit."""
    a, b = checkpoint_arrays(first), checkpoint_arrays(second)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def spec_text(compile_yaml: str) -> str:
    """A two-layer spec with the given compile section (and anything after it)."""
    return "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, activation: softmax}\n" + compile_yaml


# ----------------------------------------------------------------------------- nothing on disk changed


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: a file's size, mtime and SHA-256, a link's target, that a folder is one.
    Equal snapshots before and after a command mean it created, changed and removed nothing there. (Not a
    folder's mtime: a probe file written and removed again, to test that an output can be written, leaves
    only that; nor the contents of a run's .seq-lock, which every command that takes the lock rewrites.)"""
    entries = {}
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        info = path.lstat()
        if path.is_symlink():
            entries[name] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[name] = ("dir",)
        elif path.name == ".seq-lock":  # the run's lock: whoever takes it writes its PID there, by design
            entries[name] = ("lock",)
        elif path.is_file():
            entries[name] = ("file", info.st_size, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            entries[name] = ("other", info.st_mode)
    return entries


PORT_TAKEN = "Could not start gRPC server"  # TensorFlow's words when a worker's port was taken meanwhile


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def with_free_ports(count: int, attempt, tries: int = 3):
    """``attempt(ports)`` returns ``(result, output)``; it is tried again on new ports when its output says
    a port was taken between the choice and the worker's bind (TensorFlow's gRPC server does not share a
    port, so the ports cannot stay held; another process on the machine can win the race)."""
    for _ in range(tries):
        result, output = attempt(free_ports(count))
        if PORT_TAKEN not in output:
            return result
    raise AssertionError(f"{tries} sets of ports were taken before the workers bound them:\n{output}")


# ----------------------------------------------------------------------------- running seq


def run_seq(*args, env: dict | None = None, catch_exceptions: bool = False, input=None):
    """``seq ARGS`` in-process (click's runner, stdout and stderr apart) on a console of
    :data:`CONSOLE_COLUMNS` columns, with ``env`` added to the environment; an exception seq did not turn
    into an error message propagates (a bug shows its traceback) unless ``catch_exceptions``."""
    from click.testing import CliRunner

    from seqcli.cli import cli

    runner = CliRunner(env={"COLUMNS": str(CONSOLE_COLUMNS), **(env or {})})
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=catch_exceptions, input=input)


def seq_process(*args, cwd: Path = ROOT, timeout: float = 300, env: dict | None = None):
    """``python -m seqcli ARGS`` in a process of its own, for what only a process boundary shows (signals,
    exit statuses, what a fresh interpreter imports, terminal colors); ``env`` added to the environment (a
    name set to None is taken out of it)."""
    merged = {**os.environ, "COLUMNS": str(CONSOLE_COLUMNS), **(env or {})}
    environment = {name: value for name, value in merged.items() if value is not None}
    command = [sys.executable, "-m", "seqcli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=environment)


def run_in(folder: Path, *args):
    """``seq ARGS`` in-process (:func:`run_seq`) with ``folder`` as the current folder, as a user in it would."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        return run_seq(*args)
    finally:
        os.chdir(previous)
