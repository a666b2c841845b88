import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


@pytest.fixture
def write_spec(tmp_path):
    """Write YAML text to a spec file in a temporary folder and return its path."""

    def write(text: str | bytes, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A finished `seq train` run of the tiny project (tests.test_train), shared read-only by the tests of
    the commands that use a run: its folder holds tiny.yaml, tiny.npz and run/."""
    from click.testing import CliRunner

    from seqcli.cli import cli
    from tests.test_train import write_tiny_project

    directory = tmp_path_factory.mktemp("trained")
    write_tiny_project(directory)
    result = CliRunner().invoke(cli, ["train", str(directory / "tiny.yaml"), "--output", str(directory / "run"),
                                      "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return directory
