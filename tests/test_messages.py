"""Every message says what and where (issue 12 §6): reachable input never ends in 'unexpected <Exception>'."""

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seqcli.cli import cli
from seqcli.predict import predictions_csv
from tests.conftest import write_tiny_project


def run(*args, cwd: Path):
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(previous)


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


SET_CASES = [
    ("layers.Dense.units=3", "--set #1: layers is a list: 'Dense' cannot index it"),
    ("[0]=1", "--set #1: the spec is a mapping: [0] cannot index it"),
    ("layers[1].Flatten[0]=1", "--set #1: layers[1].Flatten is a mapping: [0] cannot index it"),
    ("train[2]=1", "--set #1: train is a mapping: [2] cannot index it"),
]


@pytest.mark.parametrize(("override", "message"), SET_CASES, ids=[c for c, _ in SET_CASES])
def test_malformed_set_paths_say_what_and_where(tmp_path, override, message):
    write_tiny_project(tmp_path, epochs=1)
    before = tree(tmp_path)
    result = run("train", "tiny.yaml", "--output", "run", "-q", "--set", override, cwd=tmp_path)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "unexpected" not in result.stderr
    assert tree(tmp_path) == before


def test_a_bad_crc_in_an_npz_names_the_file_and_array(trained, tmp_path):
    data = bytearray((trained / "tiny.npz").read_bytes())
    data[200] ^= 0xFF  # inside x.npy's stored bytes: the zip's CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    before = tree(tmp_path)
    result = run("predict", trained / "run", "--data", "bad.npz", "--output", "out.csv", cwd=tmp_path)
    assert result.exit_code == 1
    assert f"error: --data: cannot read array 'x' in {tmp_path / 'bad.npz'}: Bad CRC-32" in result.stderr
    assert tree(tmp_path) == before


def test_predicted_class_names_cannot_become_spreadsheet_formulas():
    values = np.array([[0.9, 0.1], [-0.2, 0.7]], np.float32)
    text = predictions_csv(values, ["=cmd|' /C calc'!A0", "@SUM(A1)"])
    assert text.splitlines() == [
        "class,class_name,output_0,output_1",
        "0,'=cmd|' /C calc'!A0,0.9,0.1",
        "1,'@SUM(A1),-0.2,0.7",
    ]
