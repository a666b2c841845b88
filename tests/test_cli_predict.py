"""`seq predict`: outputs for every sample of a source, written atomically as .npy or .csv."""

from __future__ import annotations

import numpy as np
import pytest

from seqcli.verbs.predict import predictions_csv
from tests.conftest import run_seq as run


def test_predict_npy_matches_the_model(trained, tmp_path):
    import keras

    result = run("predict", trained / "run", "--data", trained / "tiny.npz", "--output", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote 128 predictions of shape (3,) to {tmp_path / 'p.npy'}\n"
    predictions = np.load(tmp_path / "p.npy")
    model = keras.saving.load_model(trained / "run" / "model.keras")
    expected = model.predict(np.load(trained / "tiny.npz")["x"], verbose=0)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6)


def test_predict_csv_has_the_class_then_the_outputs(trained, tmp_path):
    np.save(tmp_path / "inputs.npy", np.load(trained / "tiny.npz")["x"][:5])
    result = run(
        "predict",
        trained / "run" / "model.keras",
        "--data",
        tmp_path / "inputs.npy",
        "--output",
        tmp_path / "out" / "p.csv",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "p.csv").read_text().splitlines()
    assert lines[0] == "class,probability,output_0,output_1,output_2" and len(lines) == 6
    for line in lines[1:]:
        cells = line.split(",")
        outputs = [float(c) for c in cells[2:]]
        assert int(cells[0]) == int(np.argmax(outputs)) and sum(outputs) == pytest.approx(1, abs=1e-5)
        assert float(cells[1]) == pytest.approx(max(outputs), rel=1e-6)


def test_csv_rows():
    values = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    expected = "class,class_name,probability,output_0,output_1\n1,dog,0.9,0.1,0.9\n0,cat,0.8,0.8,0.2\n"
    assert predictions_csv(values, ["cat", "dog"]) == expected
    assert predictions_csv(np.array([[1.5], [2.0]])) == "output\n1.5\n2\n"
    logits = np.array([[0.0, np.log(3.0)]], np.float32)  # not probabilities: a softmax gives 0.25, 0.75
    assert predictions_csv(logits, top_k=2).splitlines()[1].split(",")[:4] == ["1", "0.75", "0", "0.25"]
    binary = np.array([[0.2], [0.9]], np.float32)  # one sigmoid output and two recorded names
    assert predictions_csv(binary, ["no", "yes"]).splitlines()[1:] == ["0,no,0.8,0.2", "1,yes,0.9,0.9"]


def test_output_format_is_checked_first(trained, tmp_path):
    result = run("predict", trained / "run", "--data", trained / "tiny.npz", "--output", tmp_path / "p.txt")
    assert result.exit_code == 1
    assert (
        "error: cannot tell the output format" in result.stderr
        and "end --output with .npy, .csv or .json" in result.stderr
    )
    assert not (tmp_path / "p.txt").exists()


def test_an_unwritable_output_is_reported_before_predicting(trained):
    result = run("predict", trained / "run", "--data", trained / "tiny.npz", "--output", "/proc/p.npy")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: cannot write /proc/p.npy: No such file or directory\n  hint: choose another --output"
    ), result.stderr
    taken = run("predict", trained / "run", "--data", trained / "tiny.npz", "--output", trained / "tiny.npz" / "p.npy")
    assert taken.exit_code == 1 and f"{trained / 'tiny.npz'} is a file" in taken.stderr


def test_a_failed_write_keeps_what_was_there(trained, tmp_path, monkeypatch):
    from seqcli.verbs import predict

    (tmp_path / "p.npy").write_bytes(b"earlier")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict.np, "save", full_disk)
    result = run(
        "predict", trained / "run", "--data", trained / "tiny.npz", "--output", tmp_path / "p.npy", "--overwrite"
    )
    assert result.exit_code == 1
    stages, error = result.stderr.split("error: ", 1)
    assert error.startswith(f"cannot write {tmp_path / 'p.npy'}: No space left on device")
    assert stages.splitlines() == [
        f"predict: loading {trained / 'run' / 'model.keras'}",
        f"predict: predicting 128 samples of {trained / 'tiny.npz'}",
        f"predict: writing {tmp_path / 'p.npy'}",
    ]
    assert (tmp_path / "p.npy").read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["p.npy"]


# ----------------------------------------------------------------------------- never replace what is not ours


def test_an_existing_output_is_replaced_only_with_overwrite(trained, tmp_path):
    np.save(tmp_path / "x.npy", np.load(trained / "tiny.npz")["x"][:4])
    (tmp_path / "p.csv").write_text("mine\n")
    refused = run("predict", trained / "run", "--data", tmp_path / "x.npy", "--output", tmp_path / "p.csv")
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"error: {tmp_path / 'p.csv'} exists\n  hint: add --overwrite to replace it, or choose another --output\n"
    )
    assert (tmp_path / "p.csv").read_text() == "mine\n"
    replaced = run(
        "predict", trained / "run", "--data", tmp_path / "x.npy", "--output", tmp_path / "p.csv", "--overwrite"
    )
    assert replaced.exit_code == 0, replaced.output
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 5


@pytest.mark.parametrize("which", ["data", "model"])
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(trained, tmp_path, which):
    np.save(tmp_path / "x.npy", np.load(trained / "tiny.npz")["x"][:4])
    model = tmp_path / "m.npy" if which == "model" else trained / "run"
    if which == "model":  # a model named like an output: refused as the input it is, before it is loaded
        (tmp_path / "m.npy").write_bytes(b"model")
    output = tmp_path / ("x.npy" if which == "data" else "m.npy")
    before = output.read_bytes()
    result = run("predict", model, "--data", tmp_path / "x.npy", "--output", output, "--overwrite")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --output {output} is an input of this command\n"), result.stderr
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"x.npy", output.name})


def test_an_output_among_a_list_of_shards_is_refused(trained, tmp_path):
    x = np.load(trained / "tiny.npz")["x"][:4]
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, x)
    before = (tmp_path / "b.npy").read_bytes()
    data = f"{{path: [{tmp_path / 'a.npy'}, {tmp_path / 'b.npy'}]}}"
    result = run("predict", trained / "run", "--data", data, "--output", tmp_path / "b.npy", "--overwrite")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: --output {tmp_path / 'b.npy'} is an input of this command\n"), (
        result.stderr
    )
    assert (tmp_path / "b.npy").read_bytes() == before
