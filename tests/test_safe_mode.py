"""Safe mode on every path that loads a model: a ``.keras`` file with a Lambda layer whose
code would leave a marker file when it runs. Paths that load a whole model refuse it; paths that read only
weights from it (``--weights``) load them without running any of its code. Either way the marker never appears."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_seq, snapshot

SPEC = (
    "layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 3, name: dense}\n"
    "compile: {optimizer: adam, loss: mse}\ndata: {train: d.npz, batch_size: 2}\ntrain: {epochs: 1, seed: 1}\n"
)
BASE_SPEC = SPEC.replace("  - Dense: {units: 3, name: dense}\n", "  - Model: {path: lambda.keras}\n")
REFUSED = "hint: safe mode refuses models that run code when loaded (e.g. Lambda layers); seq never turns it off"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """lambda.keras (Input 4, a Lambda that touches RAN, Dense 3 'dense'), specs and data beside it."""
    import keras

    folder = tmp_path_factory.mktemp("safe")
    marker = folder / "RAN"
    code = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x * 2)[1]")  # noqa: S307
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(code, name="double"), keras.layers.Dense(3, name="dense")]
    )
    model.compile(loss="mse")
    model.save(folder / "lambda.keras")
    marker.unlink()
    keras.saving.load_model(folder / "lambda.keras", safe_mode=False)(np.ones((1, 4)))
    assert marker.exists(), "the Lambda's code must leave the marker when it runs"
    marker.unlink()
    np.save(folder / "x.npy", np.ones((4, 4), np.float32))
    np.savez(folder / "d.npz", x=np.ones((4, 4), np.float32), y=np.zeros((4, 3), np.float32))
    (folder / "spec.yaml").write_text(SPEC)
    (folder / "base.yaml").write_text(BASE_SPEC)
    return folder


WHOLE_MODEL = {
    "freeze": ["freeze", "lambda.keras", "--all-but-last", "1", "--output", "{out}/f.keras"],
    "evaluate": ["evaluate", "lambda.keras", "--data", "d.npz"],
    "predict": ["predict", "lambda.keras", "--data", "x.npy", "--output", "{out}/p.npy"],
    "export": ["export", "lambda.keras", "--data", "x.npy", "--output", "{out}/m.tflite"],
    "import": ["import", "lambda.keras", "--output", "{out}/s.yaml"],
    "plot": ["plot", "lambda.keras", "--output", "{out}/p.png"],
    "check Model: base": ["check", "base.yaml"],
    "summary Model: base": ["summary", "base.yaml"],
    "train Model: base": ["train", "base.yaml", "--output", "{out}/run", "--quiet"],
}
WEIGHTS_ONLY = {
    "freeze --weights": [
        "freeze",
        "spec.yaml",
        "--weights",
        "lambda.keras",
        "--all-but-last",
        "1",
        "--output",
        "{out}/f.keras",
    ],
    "extract --weights": [
        "extract",
        "spec.yaml",
        "--weights",
        "lambda.keras",
        "--data",
        "x.npy",
        "--all",
        "--output",
        "{out}/f.npz",
    ],
    "transfer --weights": ["transfer", "spec.yaml", "--weights", "lambda.keras", "--output", "{out}/run", "--quiet"],
}


def invoke(project, tmp_path, monkeypatch, args):
    monkeypatch.chdir(project)
    (project / "RAN").unlink(missing_ok=True)  # one failure must not fail the next case
    return run_seq(*[a.format(out=tmp_path) for a in args])


@pytest.mark.parametrize("name", WHOLE_MODEL)
def test_a_model_with_a_lambda_is_refused(project, tmp_path, monkeypatch, name):
    (project / "RAN").unlink(missing_ok=True)
    before = snapshot(project)
    result = invoke(project, tmp_path, monkeypatch, WHOLE_MODEL[name])
    assert result.exit_code == 1, result.output
    assert "lambda.keras" in result.stderr and REFUSED in result.stderr
    assert "Traceback" not in result.output
    assert not (project / "RAN").exists()
    assert snapshot(project) == before and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", WEIGHTS_ONLY)
def test_weights_are_read_from_a_lambda_file_without_running_it(project, tmp_path, monkeypatch, name):

    result = invoke(project, tmp_path, monkeypatch, WEIGHTS_ONLY[name])
    assert result.exit_code == 0, result.output
    assert not (project / "RAN").exists()
    if name == "extract --weights":  # the weights really came from the file
        x = np.load(project / "x.npy")
        with np.load(tmp_path / "f.npz") as features:
            np.testing.assert_allclose(
                features["dense"], x @ dense_weights(project)[0] + dense_weights(project)[1], rtol=1e-6
            )


def dense_weights(project):
    """The Dense layer's kernel and bias as stored in lambda.keras, read with h5py (no Keras load)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(project / "lambda.keras") as archive:
        data = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as weights:
        variables = weights["layers/dense/vars"]
        return variables["0"][()], variables["1"][()]
