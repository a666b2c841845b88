"""`seq plot`: architecture diagrams drawn with matplotlib (no Graphviz), and a run's training curves."""

from __future__ import annotations

import re

from click.testing import CliRunner

from seqcli.cli import cli
from tests.conftest import SPECS

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def svg_texts(path) -> list[str]:
    text = path.read_text()
    return [re.sub(r"<[^>]+>", "", t).replace("&#x27;", "'").strip()
            for t in re.findall(r"<text[^>]*>(.*?)</text>", text, flags=re.S)]


def test_a_spec_becomes_one_box_per_layer_with_frozen_marked(tmp_path):
    output = tmp_path / "model.svg"
    result = run("plot", SPECS / "freeze_all_but_last.yaml", "--output", output)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the architecture (4 layers) to {output}\n"
    texts = svg_texts(output)
    assert texts[0] == "Input (None, 784)"
    assert texts[1:9] == ["dense  (Dense)", "output (None, 32)  ·  25,120 params  ·  frozen",
                          "dense_1  (Dense)", "output (None, 32)  ·  1,056 params  ·  frozen",
                          "dense_2  (Dense)", "output (None, 32)  ·  1,056 params  ·  frozen",
                          "dense_3  (Dense)", "output (None, 10)  ·  330 params"]
    assert texts[-1] == "freeze_all_but_last   27,562 params, 330 trainable"


def test_a_pretrained_base_is_one_box(tmp_path):
    result = run("plot", SPECS / "xception_head.yaml", "--output", tmp_path / "head.svg")
    assert result.exit_code == 0, result.output
    texts = svg_texts(tmp_path / "head.svg")
    assert "xception  (Xception, 132 layers)" in texts
    assert "output (None, 2048)  ·  20,861,480 params  ·  frozen" in texts
    assert not any("block1" in t for t in texts)


def test_a_saved_model_and_png(trained, tmp_path):
    output = tmp_path / "tiny.png"
    result = run("plot", trained / "run" / "model.keras", "--output", output)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the architecture (3 layers) to {output}\n"
    assert output.read_bytes().startswith(PNG)
    svg = tmp_path / "tiny.svg"
    assert run("plot", trained / "run" / "model.keras", "--output", svg).exit_code == 0
    assert "dropout  (Dropout)" in svg_texts(svg) and "output (None, 3)  ·  51 params" in svg_texts(svg)


def test_a_run_directory_draws_its_curves(trained, tmp_path):
    output = tmp_path / "curves.png"
    result = run("plot", trained / "run", "--output", output)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the curves to {output}\n" and output.read_bytes().startswith(PNG)
    flagged = run("plot", trained / "run", "--curves", "--output", tmp_path / "c.svg")
    assert flagged.exit_code == 1 and "training curves are drawn as PNG" in flagged.stderr
    not_a_run = run("plot", SPECS / "three_layers.yaml", "--curves", "--output", tmp_path / "c.png")
    assert not_a_run.exit_code == 1 and "is not a run folder with a history.csv" in not_a_run.stderr


def test_errors(tmp_path, write_spec, monkeypatch):
    wrong = run("plot", SPECS / "three_layers.yaml", "--output", tmp_path / "m.jpg")
    assert wrong.exit_code == 1
    assert wrong.stderr == (f"error: cannot tell the image format of {tmp_path / 'm.jpg'}\n"
                            "  hint: end --output with .png or .svg\n")
    bad = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {unitz: 3}\n")
    result = run("plot", bad, "--output", tmp_path / "m.png")
    assert result.exit_code == 1 and "layers[1].Dense.unitz: unknown argument for Dense" in result.stderr
    monkeypatch.setattr("shutil.which", lambda name: None)
    graphviz = run("plot", SPECS / "three_layers.yaml", "--engine", "graphviz", "--output", tmp_path / "m.png")
    assert graphviz.exit_code == 1
    assert graphviz.stderr.startswith("error: --engine graphviz needs Graphviz's 'dot' program, which is not on PATH")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_an_existing_image_needs_overwrite_and_the_source_is_never_the_output(tmp_path):
    (tmp_path / "m.svg").write_text("mine")
    refused = run("plot", SPECS / "seed_cnn.yaml", "--output", tmp_path / "m.svg")
    assert refused.exit_code == 1 and "add --overwrite" in refused.stderr
    assert (tmp_path / "m.svg").read_text() == "mine"
    assert run("plot", SPECS / "seed_cnn.yaml", "--output", tmp_path / "m.svg", "--overwrite").exit_code == 0
    assert (tmp_path / "m.svg").read_text().startswith("<?xml")
