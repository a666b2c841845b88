"""Text and class names: a folder of .txt files (one subfolder per class), a CSV with a text column and a
label column of class names, a .txt file of one sample per line for predict; string inputs trained,
resumed, evaluated per class, predicted with class names, exported as a SavedModel that takes strings."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import assert_same_checkpoint, snapshot
from tests.conftest import run_seq as run

WORDS = {"neg": ["bad", "awful", "poor", "dull"], "pos": ["good", "great", "fine", "nice"]}
VOCABULARY = [word for words in WORDS.values() for word in words]
SPEC = """\
name: words
layers:
  - Input: {{shape: {shape}, dtype: string}}
  - TextVectorization: {{vocabulary: {vocabulary}, output_sequence_length: 3}}
  - Embedding: {{input_dim: 10, output_dim: 4}}
  - GlobalAveragePooling1D: {{}}
  - Dense: {{units: 2, activation: softmax}}
compile: {{optimizer: {{Adam: {{learning_rate: 0.1}}}}, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}
data: {{train: {train}, batch_size: 4}}
train: {{epochs: {epochs}, seed: 3}}
"""


def sentence(label: str, index: int) -> str:
    words = WORDS[label]
    return f"{words[index % 4]} {words[(index + 1) % 4]} {words[(index + 2) % 4]}"


def write_text_project(folder, *, epochs: int = 20, shape: str = "[1]", train: str = "texts"):
    """texts/neg and texts/pos (6 files each), a CSV of the same samples with string labels, and a spec."""
    for label in WORDS:
        (folder / "texts" / label).mkdir(parents=True)
        for index in range(6):
            (folder / "texts" / label / f"{index}.txt").write_text(sentence(label, index) + "\n")
    with open(folder / "reviews.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "stars", "sentiment"])
        for index in range(6):
            for label in ("pos", "neg"):
                writer.writerow([sentence(label, index), index, label])
    spec = SPEC.format(shape=shape, vocabulary=json.dumps(VOCABULARY), train=train, epochs=epochs)
    (folder / "text.yaml").write_text(spec)
    return folder / "text.yaml"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A text-folder run trained to fit its 12 samples (shared, read-only)."""
    folder = tmp_path_factory.mktemp("text")
    spec = write_text_project(folder)
    result = run("train", spec, "--output", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    (folder / "samples.txt").write_text("good great fine\r\nbad awful poor\n\nnice good\n")
    return folder


def test_a_text_folder_trains_and_records_its_class_names(text_run):
    metrics = json.loads((text_run / "run" / "metrics.json").read_text())
    assert metrics["class_names"] == ["neg", "pos"]
    assert metrics["metrics"]["accuracy"] == 1.0


def test_a_csv_text_column_with_string_labels_trains_and_names_its_classes(tmp_path):
    spec = write_text_project(tmp_path, epochs=2, train="{path: reviews.csv, text: review, label: sentiment}")
    result = run("train", spec, "--output", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["class_names"] == ["neg", "pos"]
    source = f"{{path: {tmp_path / 'reviews.csv'}, text: review, label: sentiment}}"
    evaluated = run("evaluate", tmp_path / "run", "--data", source, "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    classes = json.loads(evaluated.stdout)["classes"]
    assert classes["names"] == ["neg", "pos"] and classes["support"] == [6, 6]
    predicted = run("predict", tmp_path / "run", "--data", source, "-o", tmp_path / "p.csv")
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0][:3] == ["class", "class_name", "probability"] and len(rows) == 13
    assert all(row[1] == ["neg", "pos"][int(row[0])] for row in rows[1:])


def test_string_labels_become_sorted_class_ids_in_a_numeric_csv(tmp_path):
    from seqcli.data import load_datasets

    (tmp_path / "t.csv").write_text("a,b,kind\n1,2,zebra\n3,4,ant\n5,6,zebra\n7,8,mole\n")
    (tmp_path / "v.csv").write_text("a,b,kind\n1,2,mole\n3,4,zebra\n")
    data = load_datasets({"train": "t.csv", "validation": "v.csv", "shuffle": False}, tmp_path, seed=0)
    assert data.class_names == ["ant", "mole", "zebra"]
    assert data.labels["data.train"].tolist() == [2, 0, 2, 1]
    assert data.labels["data.validation"].tolist() == [1, 2]  # the training data's ids, not its own


def test_evaluate_counts_the_confusion_matrix_as_a_hand_count(text_run, tmp_path):
    import keras
    import tensorflow as tf

    texts = [sentence(label, index) for label in ("neg", "pos") for index in range(6)]
    labels = ["neg"] * 6 + ["pos"] * 6
    texts += ["good bad", "awful nice", "fine fine", "zzz"]  # mixed and unknown words: some are misclassified
    labels += ["neg", "pos", "neg", "pos"]
    with open(tmp_path / "mixed.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["text", "label"], *zip(texts, labels)])
    result = run(
        "evaluate", text_run / "run", "--data", f"{{path: {tmp_path / 'mixed.csv'}, text: text}}", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["classes"]

    model = keras.saving.load_model(text_run / "run" / "model.keras")
    predicted = np.argmax(model.predict(tf.constant([[text] for text in texts]), verbose=0), axis=1)
    truth = [["neg", "pos"].index(label) for label in labels]
    confusion = [[0, 0], [0, 0]]
    for true, guess in zip(truth, predicted):
        confusion[true][guess] += 1
    assert report["names"] == ["neg", "pos"] and report["confusion"] == confusion
    assert report["support"] == [confusion[0][0] + confusion[0][1], confusion[1][0] + confusion[1][1]]
    for index in range(2):
        column = confusion[0][index] + confusion[1][index]
        assert report["precision"][index] == (confusion[index][index] / column if column else None)
        assert report["recall"][index] == confusion[index][index] / sum(confusion[index])
    assert confusion[0][1] + confusion[1][0] > 0  # the case is not trivially diagonal


def test_evaluate_shows_per_class_results_and_the_matrix_as_tables(text_run):
    result = run("evaluate", text_run / "run", "--data", text_run / "texts")
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert "Per class" in lines and "Confusion matrix (rows: true class, columns: predicted class)" in lines
    assert [line.split()[1:8] for line in lines if line.startswith("│ neg")][0] == [
        "neg",
        "│",
        "1.0000",
        "│",
        "1.0000",
        "│",
        "6",
    ]
    assert [line.split() for line in lines if line.startswith("│ 1 pos")] == [
        ["│", "1", "pos", "│", "0", "│", "6", "│"]
    ]


def test_plot_confusion_draws_the_matrix(text_run, tmp_path):
    result = run("plot", text_run / "run", "--confusion", "--data", text_run / "texts", "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote the confusion matrix to {tmp_path / 'c.png'}\n"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_a_text_file_writes_top_k_class_names_and_probabilities(text_run, tmp_path):
    csv_result = run(
        "predict", text_run / "run", "--data", text_run / "samples.txt", "-o", tmp_path / "p.csv", "--top-k", "2"
    )
    assert csv_result.exit_code == 0, csv_result.output
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0] == [
        "class_1",
        "class_name_1",
        "probability_1",
        "class_2",
        "class_name_2",
        "probability_2",
        "output_0",
        "output_1",
    ]
    assert len(rows) == 5  # four lines, the empty one included
    assert [row[1] for row in rows[1:3]] == ["pos", "neg"] and rows[4][1] == "pos"
    for row in rows[1:]:
        first, second, outputs = float(row[2]), float(row[5]), [float(v) for v in row[6:]]
        assert first >= second and first == pytest.approx(max(outputs), rel=1e-6)
        assert first + second == pytest.approx(1, abs=1e-5)
    json_result = run("predict", text_run / "run", "--data", text_run / "samples.txt", "-o", tmp_path / "p.json")
    assert json_result.exit_code == 0, json_result.output
    found = json.loads((tmp_path / "p.json").read_text())
    assert found["class_names"] == ["neg", "pos"]
    first = found["predictions"][0]
    assert [entry["class_name"] for entry in first["top"]] == ["pos"]
    assert first["top"][0]["probability"] == pytest.approx(max(first["outputs"]))
    raw = run("predict", text_run / "run", "--data", text_run / "samples.txt", "-o", tmp_path / "p.npy")
    assert raw.exit_code == 0 and np.load(tmp_path / "p.npy").shape == (4, 2)


def test_the_model_file_names_its_classes_without_its_run_folder(text_run, tmp_path):
    """The run, its model.keras, a copy of that file alone elsewhere and a frozen copy of it all name the classes;
    the file still loads in Keras's safe mode, and one saved by Keras itself simply has no names."""
    import keras

    bare = tmp_path / "elsewhere" / "model.keras"
    bare.parent.mkdir()
    bare.write_bytes((text_run / "run" / "model.keras").read_bytes())
    frozen = tmp_path / "frozen.keras"
    assert run("freeze", bare, "--output", frozen, "--all-but-last", "1").exit_code == 0
    for target in (text_run / "run", text_run / "run" / "model.keras", bare, frozen):
        output = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
        result = run("predict", target, "--data", text_run / "samples.txt", "-o", output)
        assert result.exit_code == 0, result.output
        assert json.loads(output.read_text())["class_names"] == ["neg", "pos"], target
    plain = tmp_path / "plain.keras"
    keras.saving.load_model(bare, safe_mode=True).save(plain)
    assert run("predict", plain, "--data", text_run / "samples.txt", "-o", tmp_path / "plain.json").exit_code == 0
    assert json.loads((tmp_path / "plain.json").read_text())["class_names"] is None


def test_a_string_model_exports_to_a_saved_model_that_takes_strings(text_run, tmp_path):
    import keras
    import tensorflow as tf

    result = run(
        "export", text_run / "run", "-o", tmp_path / "served", "--data", text_run / "samples.txt", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inputs"][0]["dtype"] == "string" and report["samples"] == 4
    served = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["serving_default"]
    (name,) = served.structured_input_signature[1]
    texts = np.array([["nice nice"], ["dull poor"]], dtype=object)
    outputs = next(iter(served(**{name: tf.constant(texts)}).values())).numpy()
    expected = keras.saving.load_model(text_run / "run" / "model.keras").predict(tf.constant(texts), verbose=0)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)


@pytest.mark.parametrize(("fmt", "output"), [("tflite", "m.tflite"), ("onnx", "m.onnx")])
def test_formats_without_strings_are_refused_naming_the_layer(text_run, tmp_path, fmt, output):
    before = snapshot(tmp_path)
    result = run("export", text_run / "run", "-o", tmp_path / output)
    assert result.exit_code == 1
    assert (
        f"error: cannot export the model 'words' as {fmt}: TextVectorization layer 'text_vectorization': "
        "this format cannot hold string preprocessing"
    ) in result.stderr
    assert "--to saved_model" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_scalar_string_input_takes_samples_of_shape_nothing(tmp_path):
    spec = write_text_project(tmp_path, epochs=1, shape="[]")
    result = run("train", spec, "--output", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output


def test_text_data_for_a_numeric_input_is_reported_at_the_first_layer(tmp_path):
    spec = write_text_project(tmp_path, epochs=1)
    spec.write_text(spec.read_text().replace("  - Input: {shape: [1], dtype: string}\n", ""))
    result = run("train", spec, "--output", tmp_path / "run")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"{spec}:3:24: layers[0].TextVectorization: samples are text, but the model takes float32 numbers"
    )
    assert "`- Input: {shape: [1], dtype: string}`" in result.stderr


@pytest.mark.slow
def test_an_interrupted_text_run_resumes_to_the_same_bits(tmp_path):
    spec = write_text_project(tmp_path, epochs=2)
    assert run("train", spec, "--output", tmp_path / "straight", "-q").exit_code == 0
    assert run("train", spec, "--output", tmp_path / "run", "--epochs", "1", "-q").exit_code == 0
    resumed = run("train", spec, "--output", tmp_path / "run", "--epochs", "2", "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "run")


def test_text_epochs_are_a_function_of_seed_and_epoch_and_skip_whole_batches(tmp_path):
    from seqcli.data import load_datasets

    write_text_project(tmp_path)
    data = load_datasets({"train": "texts", "batch_size": 4}, tmp_path, seed=5)
    again = load_datasets({"train": "texts", "batch_size": 4}, tmp_path, seed=5)
    first = [(x.numpy().tolist(), y.numpy().tolist()) for x, y in data.train_for_epoch(1)]
    assert first == [(x.numpy().tolist(), y.numpy().tolist()) for x, y in again.train_for_epoch(1)]
    assert first[1:] == [(x.numpy().tolist(), y.numpy().tolist()) for x, y in data.train_for_epoch(1, skip=1)]
    assert first != [(x.numpy().tolist(), y.numpy().tolist()) for x, y in data.train_for_epoch(2)]
    assert data.input_shape == (1,) and data.input_dtype == "string"
