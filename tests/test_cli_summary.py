"""`seq summary`: the guide's model.summary(), with expectations, incremental debugging and JSON."""

import json

from click.testing import CliRunner

from seqcli.cli import cli
from tests.bases import BASE_NAME, GUIDE_TRANSFER, TINY_BASE
from tests.conftest import SPECS
from tests.conftest import run_seq as run


def test_summary_table():
    result = run("summary", str(SPECS / "three_layers.yaml"))
    assert result.exit_code == 0
    assert "".join(line.rstrip() + "\n" for line in result.stdout.splitlines()) == (
        "Model: sequential\n"
        "┏━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━┓\n"
        "┃ # ┃ Layer  ┃ Class ┃ Output shape ┃ Params ┃ Trainable ┃ Expect ┃\n"
        "┡━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━┩\n"
        "│ 1 │ layer1 │ Dense │ (None, 2)    │      8 │ yes       │        │\n"
        "│ 2 │ layer2 │ Dense │ (None, 3)    │      9 │ yes       │        │\n"
        "│ 3 │ layer3 │ Dense │ (None, 2)    │      8 │ yes       │        │\n"
        "└───┴────────┴───────┴──────────────┴────────┴───────────┴────────┘\n"
        "Total params: 25 (100 B)\n"
        "Trainable params: 25\n"
        "Non-trainable params: 0\n"
        "Input shape: (None, 3) (from Input)\n"
        "Memory estimate: 1.64 KB to train (weights 100 B, optimizer 300 B, a batch of 32 1.25 KB)\n"
    )


def test_upto_shows_the_model_so_far():
    """The guide: 'Can we guess what the current output shape is at this point? Let's just print it.'"""
    result = run("summary", str(SPECS / "seed_cnn.yaml"), "--upto", "3", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["output_shape"] == [None, 40, 40, 32]
    by_name = run("summary", str(SPECS / "seed_cnn.yaml"), "--upto", "max_pooling2d_2", "--format", "json")
    assert json.loads(by_name.stdout)["output_shape"] == [None, 2, 2, 32]


def test_unbuilt_model_says_how_to_fix():
    result = run("summary", str(SPECS / "unbuilt_stack.yaml"))
    assert result.exit_code == 0
    assert "The model is unbuilt" in result.stdout and "--input-shape" in result.stdout
    built = run("summary", str(SPECS / "unbuilt_stack.yaml"), "--input-shape", "4", "--format", "json")
    assert json.loads(built.stdout)["params"] == 35


def test_expect_mismatch_is_highlighted_and_fails(write_spec):
    path = write_spec("layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3}\n    expect: [2]\n")
    result = run("summary", str(path))
    assert result.exit_code == 1
    assert "want (2,)" in result.stdout
    assert f"{path}:4:13: layers[1].expect: expected output shape (2,), built (3,)" in result.stderr


def test_set_overrides_a_value():
    result = run("summary", str(SPECS / "three_layers.yaml"), "--set", "layers[3].Dense.units=5", "--format", "json")
    assert json.loads(result.stdout)["output_shape"] == [None, 5]


def test_bad_input_shape_option_is_a_usage_error():
    result = run("summary", str(SPECS / "unbuilt_stack.yaml"), "--input-shape", "a,b")
    assert result.exit_code == 2
    assert "expected sizes separated by commas" in result.stderr


def test_input_shape_option_that_contradicts_the_spec_is_an_error():
    result = run("summary", str(SPECS / "three_layers.yaml"), "--input-shape", "5")
    assert result.exit_code == 1
    assert "layers[0]: --input-shape (5,) conflicts with the spec's input shape (3,)" in result.stderr


# ----------------------------------------------------------------------------- a freeze: section


def test_summary_shows_trainable_before_and_after(write_spec):
    path = write_spec(GUIDE_TRANSFER + "freeze:\n  all_but_last: 1\n")
    result = run("summary", str(path))
    assert result.exit_code == 0
    assert "".join(line.rstrip() + "\n" for line in result.stdout.splitlines()) == (
        "Model: guide_transfer\n"
        "┏━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━┓\n"
        "┃ # ┃ Layer   ┃ Class ┃ Output shape ┃ Params ┃ Trainable ┃ Expect ┃\n"
        "┡━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━┩\n"
        "│ 1 │ dense   │ Dense │ (None, 32)   │ 25,120 │ yes → no  │        │\n"
        "│ 2 │ dense_1 │ Dense │ (None, 32)   │  1,056 │ yes → no  │        │\n"
        "│ 3 │ dense_2 │ Dense │ (None, 32)   │  1,056 │ yes → no  │        │\n"
        "│ 4 │ dense_3 │ Dense │ (None, 10)   │    330 │ yes       │        │\n"
        "└───┴─────────┴───────┴──────────────┴────────┴───────────┴────────┘\n"
        "Total params: 27,562 (107.66 KB)\n"
        "Trainable params: 27,562 → 330 after freeze:\n"
        "Non-trainable params: 0 → 27,232 after freeze:\n"
        "Input shape: (None, 784) (from Input)\n"
        "Frozen: 3 of 4 layers; trainable params 27,562 → 330 (of 27,562)\n"
        "Memory estimate: 222.78 KB to train (weights 107.66 KB, optimizer 3.87 KB, a batch of 32 111.25 KB)\n"
    )


def test_summary_of_a_partly_frozen_base_states_batchnorm_inference(write_spec):
    path = write_spec(TINY_BASE + f"freeze:\n  layers: ['{BASE_NAME}']\n  unfreeze: ['{BASE_NAME}/Conv_1*']\n")
    result = CliRunner(env={"COLUMNS": "140"}).invoke(cli, ["summary", str(path)])
    assert result.exit_code == 0
    assert f"│ 1 │ {BASE_NAME} │ MobileNetV2 (154 layers) │ (None, 1280) │ 410,208 │ yes → partly │" in result.stdout
    assert "51 BatchNormalization layers are frozen: they run in inference mode" in " ".join(result.stdout.split())
