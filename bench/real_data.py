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
the spread across seeds), the median wall and CPU time of the whole process, with the ratios seq / Keras of
each interleaved pair (the target: no more than 1), and seq's own stage times (its ``SEQ_PROFILE`` hook). Needs only
public tools: Keras, TensorFlow, NumPy, scikit-learn and seq itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run_seq(spec: Path, scratch: Path, seed: int) -> tuple[float, float, float, dict]:
    """One whole ``seq train`` process: its final val_accuracy, wall and CPU seconds, and stage times (seq's
    ``SEQ_PROFILE`` hook: what the command spent where, in its own words)."""
    output, profile = scratch / f"seq-{seed}", scratch / f"stages-{seed}.json"
    command = [sys.executable, "-m", "seqcli", "train", str(spec), "--output", str(output), "--quiet"]
    command += ["--set", f"train.seed={seed}", "--format", "json"]
    done, wall, cpu = timed_process(command, {**os.environ, "SEQ_PROFILE": str(profile)}, "seq train")
    stages = json.loads(profile.read_text())
    return json.loads(done.stdout)["metrics"]["val_accuracy"], wall, cpu, stages


def run_keras(script: str, argument: str, seed: int) -> tuple[float, float, float, None]:
    command = [sys.executable, "-c", script, argument, str(seed)]
    done, wall, cpu = timed_process(command, None, "the Keras script")
    return json.loads(done.stdout.strip().splitlines()[-1])["val_accuracy"], wall, cpu, None


def timed_process(command: list[str], env: dict | None, name: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``command``; its wall seconds, and its CPU seconds (user + system), which a busy machine inflates
    less than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return done, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
    print(f"{'':8} {'val accuracy (each seed)':40} {'median wall s':>14} {'best wall s':>12} {'median CPU s':>13}")
    for name in ("seq", "keras"):
        accuracies = " ".join(f"{run[0]:.3f}" for run in results[name])
        wall, cpu = [run[1] for run in results[name]], [run[2] for run in results[name]]
        print(
            f"{name:8} {accuracies:40} {statistics.median(wall):14.1f} {min(wall):12.1f} {statistics.median(cpu):13.1f}"
        )
    for index, measure in ((1, "wall"), (2, "CPU")):
        pairs = [seq[index] / keras[index] for seq, keras in zip(results["seq"], results["keras"])]
        print(
            f"seq / Keras {measure} time, each interleaved pair: {' '.join(f'{r:.2f}' for r in pairs)}; "
            f"median {statistics.median(pairs):.2f}x, best {min(pairs):.2f}x"
        )
    gap = statistics.median(run[0] for run in results["seq"]) - statistics.median(run[0] for run in results["keras"])
    print(f"accuracy difference of the medians (seq - Keras): {gap:+.3f}")
    print_stages([run[3] for run in results["seq"]])


def print_stages(profiles: list[dict]) -> None:
    """seq's own stage times (median over the runs), the largest first: where its wall time goes."""
    names = {name for profile in profiles for name in profile["stages"]}
    medians = {
        name: statistics.median(profile["stages"].get(name, {}).get("seconds", 0.0) for profile in profiles)
        for name in names
    }
    wall = statistics.median(profile["wall_seconds"] for profile in profiles)
    print(f"seq's stages (median seconds; a helper thread's overlap the training thread's; command {wall:.2f} s):")
    for name, seconds in sorted(medians.items(), key=lambda pair: -pair[1])[:12]:
        threads = sorted(
            {thread for profile in profiles for thread in profile["stages"].get(name, {}).get("threads", [])}
        )
        print(f"  {name:52} {seconds:7.3f}  {', '.join(threads)}")


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
