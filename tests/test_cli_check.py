"""`seq check`: the CI gate. Every shipped spec passes; failures annotate in every format."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.bases import GUIDE_TRANSFER
from tests.conftest import ROOT, SPECS
from tests.conftest import run_seq as run

BAD = "layers:\n  - Input: {shape: [8, 8, 1]}\n  - Conv2D: {filters: 2, kernel_size: 3}\n    expect: [8, 8, 2]\n"


@pytest.mark.slow
def test_every_shipped_spec_passes():
    specs = sorted(str(p) for p in SPECS.glob("*.yaml"))
    result = subprocess.run(
        [sys.executable, "-m", "seqcli", "check", *specs],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("pass") == len(specs)
    assert "Traceback" not in result.stderr


def test_json_contract(write_spec):
    bad = write_spec(BAD, "bad.yaml")
    result = run("check", str(SPECS / "seed_cnn.yaml"), str(bad), "--format", "json")
    assert result.exit_code == 1
    good, failed = json.loads(result.stdout)["specs"]
    assert good["ok"] and good["model"] == "seed_cnn" and good["params"] == 49002
    assert good["trainable_params"] == 49002 and good["output_shape"] == [None, 10]
    assert good["layers"][0] == {
        "index": 1,
        "name": "conv2d",
        "class": "Conv2D",
        "output_shape": [None, 123, 123, 32],
        "params": 2432,
        "trainable": True,
    }
    assert good["problems"] == []
    assert not failed["ok"]
    assert failed["problems"] == [
        {
            "line": 4,
            "column": 13,
            "path": "layers[1].expect",
            "message": "expected output shape (8, 8, 2), built (6, 6, 2)",
            "hint": "update 'expect' if the new shape is intended",
        }
    ]


def test_github_annotations(write_spec):
    bad = write_spec(BAD, "bad.yaml")
    result = run("check", str(bad), "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.strip() == (
        f"::error file={bad},line=4,col=13::layers[1].expect: expected output shape (8, 8, 2), built (6, 6, 2)"
        " (update 'expect' if the new shape is intended)"
    )


def test_junit_report(write_spec):
    bad = write_spec(BAD, "bad.yaml")
    result = run("check", str(SPECS / "input_object.yaml"), str(bad), "--format", "junit")
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout)
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.findall("testcase")[1].find("failure")
    assert failure.get("message").startswith(f"{bad}:4:13: layers[1].expect")


def test_text_failure_reports_on_stderr(write_spec):
    bad = write_spec(BAD, "bad.yaml")
    result = run("check", str(bad))
    assert result.exit_code == 1
    assert "FAIL (1)" in result.stdout
    assert result.stderr == (
        f"{bad}:4:13: layers[1].expect: expected output shape (8, 8, 2), built (6, 6, 2)\n"
        "    expect: [8, 8, 2]\n"
        "            ^\n"
        "  hint: update 'expect' if the new shape is intended\n"
    )


def test_missing_file_is_a_failure_not_a_crash(tmp_path):
    result = run("check", str(tmp_path / "nope.yaml"), "--format", "json")
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)["specs"]
    assert report["problems"][0]["message"] == "no such file"


def test_oversized_spec_is_refused_fast(write_spec):
    big = write_spec("layers:\n" + "  # padding\n" * 120_000, "big.yaml")
    result = run("check", str(big), "--format", "json")
    assert result.exit_code == 1
    assert "specs are limited to 1,000,000" in json.loads(result.stdout)["specs"][0]["problems"][0]["message"]


def test_freeze_section_problems_have_positions(write_spec):
    path = write_spec(GUIDE_TRANSFER + "freeze:\n  layers: [dense_1, dens_2]\n  all_but_last: 9\n")
    result = run("check", str(path))
    assert result.exit_code == 1
    assert f"{path}:9:21: freeze.layers[1]: 'dens_2' matches no layer\n" in result.stderr
    assert "  hint: did you mean 'dense_2'?" in result.stderr
    assert (
        f"{path}:10:17: freeze.all_but_last: all_but_last is 9, but the model has 4 top-level layers" in result.stderr
    )
