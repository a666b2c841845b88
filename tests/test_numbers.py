"""Numbers that cannot train are errors: non-finite data, labels that do not fit the loss,
non-finite or impossible spec values, and a loss that becomes NaN while training."""

import numpy as np
import pytest

from tests.conftest import run_in, snapshot, write_tiny_project


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (32, 4, 4, 1)).astype(np.float32), rng.integers(0, 3, 32)


def _nan_pixel(x, y):
    x = x.copy()
    x[5, 1, 2, 0] = np.nan
    return x, y


def _inf_pixel(x, y):
    x = x.astype(np.float64)
    x[9, 0, 0, 0] = -np.inf
    return x, y


def _nan_label(x, y):
    return x, np.where(np.arange(len(y)) == 7, np.nan, y.astype(np.float32))


def _negative_label(x, y):
    return x, np.where(np.arange(len(y)) == 7, -1, y)


def _fractional_label(x, y):
    return x, np.where(np.arange(len(y)) == 4, 1.5, y.astype(np.float32))


def _label_out_of_range(x, y):
    return x, np.where(np.arange(len(y)) == 6, 3, y)


DATA_CASES = [
    (_nan_pixel, "x in {file} holds a non-finite value (nan) at sample 5"),
    (_inf_pixel, "x in {file} holds a non-finite value (-inf) at sample 9"),
    (_nan_label, "y in {file} holds a non-finite value (nan) at sample 7"),
    (_negative_label, "label -1 of sample 7 is negative; class indices start at 0"),
    (_fractional_label, "label 1.5 of sample 4 is not a whole number; sparse_categorical_crossentropy"),
    (_label_out_of_range, "label 3 of sample 6 is out of range: the model outputs 3 class scores"),
]


@pytest.mark.parametrize(("change", "message"), DATA_CASES, ids=[c.__name__.strip("_") for c, _ in DATA_CASES])
def test_data_that_cannot_train_is_refused(tmp_path, arrays, change, message):
    write_tiny_project(tmp_path, epochs=1)
    x, y = change(*arrays)
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "train", "tiny.yaml", "--output", "run", "-q")
    assert result.exit_code == 1, result.output
    assert "tiny.yaml:12:10: data.train: " + message.format(file=tmp_path / "tiny.npz") in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before


def test_a_nan_csv_cell_names_the_file_line_and_column(tmp_path):
    rows = "".join(f"{i},1,2,{i % 2}\n" for i in range(12)).replace("3,1,2", "3,nan,2")
    (tmp_path / "t.csv").write_text("a,b,c,label\n" + rows)
    (tmp_path / "s.yaml").write_text(
        "layers:\n  - Input: {shape: [3]}\n  - Dense: {units: 2}\n"
        "compile: {optimizer: adam, loss: mse}\ndata: {train: t.csv}\n"
    )
    before = snapshot(tmp_path)
    result = run_in(tmp_path, "train", "s.yaml", "--output", "run", "-q")
    assert result.exit_code == 1
    expected = f"data.train: x in {tmp_path / 't.csv'} holds a non-finite value (nan) at line 5, column 'b'"
    assert expected in result.stderr
    assert snapshot(tmp_path) == before


def test_evaluate_refuses_nan_data(trained, tmp_path):
    x, y = _nan_pixel(*np.load(trained / "tiny.npz").values())
    np.savez(tmp_path / "bad.npz", x=x, y=y)
    result = run_in(tmp_path, "evaluate", trained / "run", "--data", "bad.npz")
    assert result.exit_code == 1
    assert f"--data: x in {tmp_path / 'bad.npz'} holds a non-finite value (nan) at sample 5" in result.stderr


SPEC_CASES = [
    ("  train: {path: tiny.npz, scale: .nan}", "tiny.yaml:12:34: data.train.scale: nan is not a finite number"),
    ("  optimizer: {Adam: {learning_rate: .nan}}", "tiny.yaml:8:37: compile.optimizer.Adam.learning_rate: nan is not"),
    ("  optimizer: {Adam: {learning_rate: .inf}}", "tiny.yaml:8:37: compile.optimizer.Adam.learning_rate: inf is not"),
    (
        "  optimizer: {Adam: {learning_rate: -1.0}}",
        "tiny.yaml:8:37: compile.optimizer.Adam.learning_rate: a learning rate must be above zero; received -1.0",
    ),
    (
        "  - Dense: {units: 9223372036854775808, activation: softmax}",
        "tiny.yaml:6:20: layers[3].Dense.units: 9223372036854775808 does not fit in 64 bits",
    ),
    (
        "  - Dense: {units: " + "9" * 5000 + ", activation: softmax}",
        "tiny.yaml:6:20: layers[3].Dense.units: a number of 5000 characters is too large for any spec value",
    ),
]


@pytest.mark.parametrize(
    ("line", "message"),
    SPEC_CASES,
    ids=["scale-nan", "lr-nan", "lr-inf", "lr-negative", "units-2**63", "units-5000-digits"],
)
def test_spec_numbers_that_cannot_train_fail_check_at_their_position(tmp_path, line, message):
    spec = write_tiny_project(tmp_path, epochs=1)
    lines = spec.read_text().splitlines()
    key = line.split(":")[0]
    index = next(i for i, text in enumerate(lines) if text.startswith(key + ":"))
    spec.write_text("\n".join(lines[:index] + [line] + lines[index + 1 :]) + "\n")
    before = snapshot(tmp_path)
    for command in (["check", "tiny.yaml"], ["train", "tiny.yaml", "--output", "run", "-q"]):
        result = run_in(tmp_path, *command)
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert "unexpected" not in result.output
    assert snapshot(tmp_path) == before


DIVERGING = """\
layers:
  - Input: {shape: [4]}
  - Dense: {units: 1}
compile:
  optimizer: {SGD: {learning_rate: 0.5}}
  loss: mse
data:
  train: reg.npz
  batch_size: 8
train:
  epochs: 4
  seed: 1
"""


def test_a_loss_that_becomes_non_finite_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    x = np.random.default_rng(0).normal(0, 10, (64, 4)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=x.sum(axis=1))
    (tmp_path / "s.yaml").write_text(DIVERGING)
    result = run_in(tmp_path, "train", "s.yaml", "--output", "run", "-q")
    assert result.exit_code == 1, result.output
    assert (
        "error: training stopped at epoch 2/4, step 8/8: the loss became inf; the last good checkpoint, "
        "run/checkpoints/last.npz (end of epoch 1/4), is kept"
    ) in result.stderr
    with np.load(tmp_path / "run" / "checkpoints" / "last.npz") as checkpoint:
        arrays = [checkpoint[name] for name in checkpoint.files if checkpoint[name].dtype.kind == "f"]
    assert arrays and all(np.isfinite(a).all() for a in arrays)
    assert not (tmp_path / "run" / "model.keras").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()
