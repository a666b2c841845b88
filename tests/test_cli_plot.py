"""`seq plot`: architecture diagrams drawn with matplotlib (no Graphviz), a run's training curves, and a tuning
study's objective over trials."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from seqcli.tune.folder import StudyFolder
from seqcli.tune.outputs import best_so_far
from tests.conftest import SPECS
from tests.conftest import run_seq as run

PNG = b"\x89PNG\r\n\x1a\n"


def svg_texts(path) -> list[str]:
    text = path.read_text()
    return [
        re.sub(r"<[^>]+>", "", t).replace("&#x27;", "'").strip()
        for t in re.findall(r"<text[^>]*>(.*?)</text>", text, flags=re.S)
    ]


def test_a_spec_becomes_one_box_per_layer_with_frozen_marked(tmp_path):
    output = tmp_path / "model.svg"
    result = run("plot", SPECS / "freeze_all_but_last.yaml", "--output", output)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the architecture (4 layers) to {output}\n"
    texts = svg_texts(output)
    assert texts[0] == "Input (None, 784)"
    assert texts[1:9] == [
        "dense  (Dense)",
        "output (None, 32)  ·  25,120 params  ·  frozen",
        "dense_1  (Dense)",
        "output (None, 32)  ·  1,056 params  ·  frozen",
        "dense_2  (Dense)",
        "output (None, 32)  ·  1,056 params  ·  frozen",
        "dense_3  (Dense)",
        "output (None, 10)  ·  330 params",
    ]
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
    svg = run("plot", trained / "run", "--curves", "--output", tmp_path / "c.svg")
    assert svg.exit_code == 0, svg.output
    ticks = re.findall(r'<g id="xtick_\d+">.*?<text[^>]*>([^<]*)</text>', (tmp_path / "c.svg").read_text(), re.S)
    assert ticks and all(tick.strip().isdigit() for tick in ticks), ticks  # epochs are whole numbers
    not_a_run = run("plot", SPECS / "three_layers.yaml", "--curves", "--output", tmp_path / "c.png")
    assert not_a_run.exit_code == 1 and "is not a run folder with a history.csv" in not_a_run.stderr


def test_an_svg_is_the_same_bytes_every_time_with_no_date(trained, tmp_path):
    for source, name in ((SPECS / "seed_cnn.yaml", "model"), (trained / "run", "curves")):
        first, second = tmp_path / f"{name}-1.svg", tmp_path / f"{name}-2.svg"
        assert run("plot", source, "--output", first).exit_code == 0
        assert run("plot", source, "--output", second).exit_code == 0
        assert first.read_bytes() == second.read_bytes(), name
        assert "<dc:date>" not in first.read_text(), name


def test_errors(tmp_path, write_spec, monkeypatch):
    wrong = run("plot", SPECS / "three_layers.yaml", "--output", tmp_path / "m.jpg")
    assert wrong.exit_code == 1
    assert wrong.stderr == (
        f"error: cannot tell the image format of {tmp_path / 'm.jpg'}\n  hint: end --output with .png or .svg\n"
    )
    bad = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {unitz: 3}\n")
    result = run("plot", bad, "--output", tmp_path / "m.png")
    assert result.exit_code == 1 and "layers[1].Dense.unitz: unknown argument for Dense" in result.stderr
    monkeypatch.setattr("shutil.which", lambda name: None)
    graphviz = run("plot", SPECS / "three_layers.yaml", "--engine", "graphviz", "--output", tmp_path / "m.png")
    assert graphviz.exit_code == 3  # the machine lacks a program: ExitStatus.ENVIRONMENT
    assert graphviz.stderr.startswith("error: --engine graphviz needs Graphviz's 'dot' program, which is not on PATH")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_an_existing_image_needs_overwrite_and_the_source_is_never_the_output(tmp_path):
    (tmp_path / "m.svg").write_text("mine")
    refused = run("plot", SPECS / "seed_cnn.yaml", "--output", tmp_path / "m.svg")
    assert refused.exit_code == 1 and "add --overwrite" in refused.stderr
    assert (tmp_path / "m.svg").read_text() == "mine"
    assert run("plot", SPECS / "seed_cnn.yaml", "--output", tmp_path / "m.svg", "--overwrite").exit_code == 0
    assert (tmp_path / "m.svg").read_text().startswith("<?xml")


# ----------------------------------------------------------------------------- a tuning study

TRIALS_CSV = """\
trial,state,value,compile.optimizer.Adam.learning_rate,epochs,seconds,run,note
0,complete,0.5,0.01,2,1.0,trial-0000,
1,complete,0.7,0.02,2,1.0,trial-0001,
2,complete,0.3,0.03,2,1.0,trial-0002,
3,pruned,0.9,0.04,1,0.5,trial-0003,
4,complete,0.4,0.05,2,1.0,trial-0004,
5,failed,,0.06,,,trial-0005,ValueError
"""


def write_study(folder, direction="minimize"):
    folder.mkdir()
    (folder / "trials.csv").write_text(TRIALS_CSV)
    (folder / "study.json").write_text(json.dumps({"objective": "val_loss", "direction": direction, "total": 6}))
    return folder


@pytest.mark.parametrize(
    ("direction", "line"),
    [
        ("minimize", [(0, 0.5), (1, 0.5), (2, 0.3), (4, 0.3)]),
        ("maximize", [(0, 0.5), (1, 0.7), (2, 0.7), (4, 0.7)]),
    ],
)
def test_a_study_folder_draws_the_objective_and_the_best_so_far(tmp_path, direction, line):
    study = write_study(tmp_path / "study", direction)
    result = run("plot", study, "--output", tmp_path / "objective.svg")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the objective over 6 trials to {tmp_path / 'objective.svg'}\n"
    texts = svg_texts(tmp_path / "objective.svg")
    assert f"val_loss over trials ({direction})" in texts
    assert {"complete", "pruned", "best so far", "trial", "val_loss"} <= set(texts)
    rows, objective, read_direction = StudyFolder(study).read()
    assert (objective, read_direction) == ("val_loss", direction)
    assert best_so_far(rows, direction) == line
    png = run("plot", study, "--output", tmp_path / "objective.png")
    assert png.exit_code == 0 and (tmp_path / "objective.png").read_bytes().startswith(PNG)


def test_a_study_folder_without_its_description_or_values_is_refused(tmp_path):
    study = write_study(tmp_path / "study")
    (study / "study.json").unlink()
    result = run("plot", study, "--output", tmp_path / "o.png")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {study} is not a study folder: it has no study.json\n")
    write_study(tmp_path / "empty")
    (tmp_path / "empty" / "trials.csv").write_text(TRIALS_CSV.splitlines()[0] + "\n5,failed,,0.06,,,trial-0005,x\n")
    empty = run("plot", tmp_path / "empty", "--output", tmp_path / "o.png")
    assert empty.exit_code == 1 and "holds no trial with a value yet" in empty.stderr
    assert not (tmp_path / "o.png").exists()


def test_the_curves_of_a_history_of_200_quantities_stay_one_bounded_figure(trained, tmp_path):
    import shutil
    import struct

    shutil.copytree(trained / "run", tmp_path / "run")
    names = [f"m{index}" for index in range(200)]
    (tmp_path / "run" / "history.csv").write_text("epoch," + ",".join(names) + "\n1" + ",0.5" * 200 + "\n")
    result = run("plot", tmp_path / "run", "--output", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the curves (the first 12 of 200 quantities) to {tmp_path / 'c.png'}\n"
    width, height = struct.unpack(">II", (tmp_path / "c.png").read_bytes()[16:24])
    assert width <= 2000 and height <= 1100, (width, height)


def test_long_layer_and_model_names_widen_the_canvas_instead_of_being_cut(tmp_path, write_spec):
    """A name seq accepts (up to NAME_LIMIT characters) is drawn whole: the canvas grows to the widest text."""
    from matplotlib.image import imread

    from seqcli.display import NAME_LIMIT

    name = "very_long_model_name_" * 5
    layer = "a_layer_with_a_long_descriptive_name_" * 3
    assert len(layer) <= NAME_LIMIT
    spec = write_spec(f"name: {name}\nlayers:\n  - Input: {{shape: [4]}}\n  - Dense: {{units: 3, name: {layer}}}\n")
    short = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3}\n", "short.yaml")
    for source, output in ((spec, tmp_path / "long.png"), (short, tmp_path / "short.png")):
        assert run("plot", source, "--output", output).exit_code == 0
    pixels = imread(tmp_path / "long.png")[:, :, :3]
    assert pixels.shape[1] > imread(tmp_path / "short.png").shape[1]  # wider than the 616 px of short names
    edges = np.concatenate([pixels[:, :3], pixels[:, -3:]], axis=1)
    assert edges.min() > 0.95, "text reaches the edge of the canvas: it is cut"
    assert run("plot", spec, "--output", tmp_path / "long.svg").exit_code == 0
    assert f"{layer}  (Dense)" in svg_texts(tmp_path / "long.svg")
