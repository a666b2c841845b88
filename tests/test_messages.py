"""Every message says what and where (issue 12 §6): reachable input never ends in 'unexpected <Exception>'."""

import numpy as np
import pytest

from seqcli.predict import predictions_csv
from tests.conftest import run_in, snapshot, write_tiny_project

SET_CASES = [
    ("layers.Dense.units=3", "--set #1: layers is a list: 'Dense' cannot index it"),
    ("[0]=1", "--set #1: the spec is a mapping: [0] cannot index it"),
    ("layers[1].Flatten[0]=1", "--set #1: layers[1].Flatten is a mapping: [0] cannot index it"),
    ("train[2]=1", "--set #1: train is a mapping: [2] cannot index it"),
]


@pytest.mark.parametrize(("override", "message"), SET_CASES, ids=[c for c, _ in SET_CASES])
def test_malformed_set_paths_say_what_and_where(tmp_path, override, message):
    write_tiny_project(tmp_path, epochs=1)
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "train", "tiny.yaml", "--output", "run", "-q", "--set", override)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "unexpected" not in result.stderr
    assert snapshot(tmp_path) == before


def test_a_bad_crc_in_an_npz_names_the_file_and_array(trained, tmp_path):
    data = bytearray((trained / "tiny.npz").read_bytes())
    data[200] ^= 0xFF  # inside x.npy's stored bytes: the zip's CRC no longer matches
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "predict", trained / "run", "--data", "bad.npz", "--output", "out.csv")
    assert result.exit_code == 1
    damaged = f"error: --data: member 'x.npy' of {tmp_path / 'bad.npz'} is damaged: its CRC-32 checksum does not match"
    assert damaged in result.stderr
    assert snapshot(tmp_path) == before


def test_predicted_class_names_cannot_become_spreadsheet_formulas():
    values = np.array([[0.9, 0.1], [-0.2, 0.7]], np.float32)
    text = predictions_csv(values, ["=cmd|' /C calc'!A0", "@SUM(A1)"])
    assert text.splitlines() == [
        "class,class_name,output_0,output_1",
        "0,'=cmd|' /C calc'!A0,0.9,0.1",
        "1,'@SUM(A1),-0.2,0.7",
    ]
