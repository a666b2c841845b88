"""Real data, no Python: a spec trained by ``seq train`` against the hand-written Keras script a user would write,
same model, optimizer, batch, epochs, seed and data, each a whole process, interleaved.

    python bench/real_data.py [WORKLOAD ...] [--repeats R]

Workloads:

- ``breast_cancer``: ``specs/breast_cancer.yaml``, keras.io's structured-data classification (a Normalization
  adapted on the raw features, Dense 32, Dropout, a sigmoid unit) on scikit-learn's bundled breast cancer
  table, its fixed train/test split;
- ``text``: ``specs/reviews.yaml``, keras.io's text classification (TextVectorization adapted on the training
  texts, Embedding, pooling, Dense) on the review tables ``scripts/make_reviews.py`` writes into specs/data/.

For each: the final validation accuracy of every run, one seed per pair of runs (the target: the same within
the spread across seeds), and the median wall time of the whole process, with the ratio seq / Keras (the
target: no more than 1). Needs only
public tools: Keras, TensorFlow, NumPy, scikit-learn and seq itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KERAS_BREAST_CANCER = """
import json, sys
import keras
from seqcli.data.bundled_datasets import load_table, split_rows

keras.utils.set_random_seed(int(sys.argv[2]))
x, y = load_table("breast_cancer")
rows = split_rows(y, classes=True)
(x_train, y_train), (x_test, y_test) = [(x[rows[s]], y[rows[s]].astype("float32")) for s in ("train", "test")]
normalization = keras.layers.Normalization()
normalization.adapt(x_train)
model = keras.Sequential([
    keras.Input((30,)), normalization,
    keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.5),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer=keras.optimizers.Adam(0.001), loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=30, validation_data=(x_test, y_test), verbose=0)
print(json.dumps({"val_accuracy": history.history["val_accuracy"][-1]}))
"""

KERAS_TEXT = """
import csv, json, sys
import keras, numpy as np, tensorflow as tf

def read(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = np.array([[row["review"]] for row in rows], dtype=object)
    return texts, np.array([row["sentiment"] == "positive" for row in rows], dtype="float32")

keras.utils.set_random_seed(int(sys.argv[2]))
(x_train, y_train), (x_test, y_test) = read(sys.argv[1] + "/reviews_train.csv"), read(sys.argv[1] + "/reviews_test.csv")
vectorize = keras.layers.TextVectorization(max_tokens=2000, output_sequence_length=40)
vectorize.adapt(x_train.reshape(-1).astype(str))
model = keras.Sequential([
    keras.Input((1,), dtype="string"), vectorize,
    keras.layers.Embedding(2000, 16), keras.layers.GlobalAveragePooling1D(),
    keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
def batches(x, y, shuffle):
    data = tf.data.Dataset.from_tensor_slices((tf.constant(x.astype(str)), y))
    return (data.shuffle(len(y), seed=int(sys.argv[2])) if shuffle else data).batch(32)

history = model.fit(batches(x_train, y_train, True), epochs=10, validation_data=batches(x_test, y_test, False),
                    verbose=0)
print(json.dumps({"val_accuracy": history.history["val_accuracy"][-1]}))
"""

# workload -> (spec, the Keras script; the script's one argument is specs/data/)
WORKLOADS = {
    "breast_cancer": ("specs/breast_cancer.yaml", KERAS_BREAST_CANCER),
    "text": ("specs/reviews.yaml", KERAS_TEXT),
}


def run_seq(spec: Path, scratch: Path, seed: int) -> tuple[float, float]:
    output = scratch / f"seq-{seed}"
    command = [sys.executable, "-m", "seqcli", "train", str(spec), "--output", str(output), "--quiet"]
    command += ["--set", f"train.seed={seed}", "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"seq train failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)["metrics"]["val_accuracy"], seconds


def run_keras(script: str, argument: str, seed: int) -> tuple[float, float]:
    started = time.perf_counter()
    command = [sys.executable, "-c", script, argument, str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the Keras script failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["val_accuracy"], seconds


def bench(workload: str, repeats: int) -> dict:
    spec, script = WORKLOADS[workload]
    results: dict = {"seq": [], "keras": []}
    with tempfile.TemporaryDirectory(prefix=f"seq-bench-{workload}-") as scratch:
        for seed in range(1, repeats + 1):  # run-to-run noise: each pair of runs has its own seed
            results["seq"].append(run_seq(ROOT / spec, Path(scratch), seed))
            results["keras"].append(run_keras(script, str(ROOT / "specs" / "data"), seed))
    return results


def report(workload: str, results: dict) -> None:
    print(f"\n{workload}: {len(results['seq'])} runs each, interleaved, seeds 1..{len(results['seq'])}")
    print(f"{'':8} {'val accuracy (each seed)':40} {'median wall s':>14}")
    for name in ("seq", "keras"):
        accuracies = " ".join(f"{a:.3f}" for a, _ in results[name])
        print(f"{name:8} {accuracies:40} {statistics.median(s for _, s in results[name]):14.1f}")
    ratio = statistics.median(s for _, s in results["seq"]) / statistics.median(s for _, s in results["keras"])
    gap = statistics.median(a for a, _ in results["seq"]) - statistics.median(a for a, _ in results["keras"])
    print(f"seq / Keras wall time (medians): {ratio:.2f}x; accuracy difference of the medians: {gap:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    for workload in args.workloads or WORKLOADS:
        report(workload, bench(workload, args.repeats))


if __name__ == "__main__":
    main()
