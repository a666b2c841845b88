"""Streaming throughput: ``seq train`` from shards and TFRecord files larger than the memory budget, against the
same data as one in-memory ``.npz`` and against a hand-written tf.data TFRecord pipeline.

    python bench/stream_throughput.py [--shards 48] [--shard-mb 4] [--max-memory 72M] [--epochs 3] [--repeats 3]

The bench writes random data (784 float32 features, 10 classes) into a temporary folder: ``--shards`` .npz shards
and as many TFRecord files of ``tf.train.Example`` records, together several times ``--max-memory``, and the same
samples in one .npz. Variants, each a whole process whose peak resident memory is measured:

- ``seq npz``: ``seq train`` on the one .npz, in memory (no --max-memory: the data must fit);
- ``seq shards``: ``seq train`` on ``shards/*.npz`` under ``--max-memory``;
- ``seq tfrecord``: ``seq train`` on ``records/*.tfrecord`` under ``--max-memory``: the first epoch parses the
  records and keeps the samples in a parsed copy on the temporary folder's disk, the others read that copy;
- ``cache: false``: the same, with ``data.cache: false``: every epoch parses the records again;
- ``tf.data``: a Keras script: ``list_files`` -> ``interleave(TFRecordDataset, cycle_length=4)`` -> ``shuffle`` ->
  ``batch`` -> ``map(parse_example)`` -> ``prefetch``, the same model, batch, epochs and shuffle buffer.

Then ``seq shards`` trains once more on a quarter and on half of the shards (as a list of files): its peak RSS
stays flat as the data grows, while the in-memory run's grows with it.

Every variant trains the same MLP (784 -> 128 relu -> 10 softmax, Adam, batch 256) with a shuffle buffer of
10,000 samples where it streams. Throughput is samples per second over the epochs after the first (which pays
for tracing); the variants run in turn ``--repeats`` times, and the bench prints each one's best and median
throughput, its peak RSS, the ratios to the in-memory run and to the tf.data pipeline, and its whole process's
seconds (start, first epoch and reading included: what the first epoch's parsing costs shows there). Needs only
public tools: Keras, TensorFlow, NumPy and seq itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from seqcli.budget import parse_size

ROOT = Path(__file__).resolve().parent.parent
FEATURES, CLASSES, BATCH, BUFFER = 784, 10, 256, 10_000
SAMPLE_BYTES = FEATURES * 4

SPEC = """\
layers:
  - Input: {{shape: [{features}]}}
  - Dense: {{units: 128, activation: relu}}
  - Dense: {{units: {classes}, activation: softmax}}
compile:
  optimizer: adam
  loss: sparse_categorical_crossentropy
data:
  train: {train}
  batch_size: {batch}
  shuffle_buffer: {buffer}{data}
train:
  epochs: {epochs}
  seed: 1
"""

TFDATA_SCRIPT = """
import json, sys, time
import keras, tensorflow as tf
folder, epochs, features, classes, batch, buffer = sys.argv[1], *map(int, sys.argv[2:7])
keras.utils.set_random_seed(1)
description = {"x": tf.io.FixedLenFeature([features], tf.float32), "y": tf.io.FixedLenFeature([], tf.int64)}
def parse(records):
    parsed = tf.io.parse_example(records, description)
    return parsed["x"], parsed["y"]
files = tf.data.Dataset.list_files(folder + "/records/*.tfrecord", shuffle=True, seed=1)
dataset = (files.interleave(tf.data.TFRecordDataset, cycle_length=4, num_parallel_calls=tf.data.AUTOTUNE)
           .shuffle(buffer, seed=1).batch(batch).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
           .prefetch(tf.data.AUTOTUNE))
model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(classes, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        seconds.append(time.perf_counter() - self.start)
seconds = []
model.fit(dataset, epochs=epochs, verbose=0, callbacks=[Clock()])
print(json.dumps(seconds))
"""

MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[2:], capture_output=True, text=True, cwd=sys.argv[1])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": done.returncode, "peak": peak, "wall": wall, "stdout": done.stdout[-4000:],
                  "stderr": done.stderr[-4000:]}))
"""


def write_data(folder: Path, shards: int, shard_mb: float) -> int:
    """Shards, TFRecord files and one .npz of the same samples; returns the number of samples."""
    import tensorflow as tf

    per_shard = int(shard_mb * (1 << 20) // SAMPLE_BYTES)
    rng = np.random.default_rng(0)
    (folder / "shards").mkdir(parents=True)
    (folder / "records").mkdir()
    xs, ys = [], []
    for index in range(shards):
        x = rng.random((per_shard, FEATURES), np.float32)
        y = rng.integers(0, CLASSES, per_shard)
        np.savez(folder / "shards" / f"train-{index:03d}.npz", x=x, y=y)
        with tf.io.TFRecordWriter(str(folder / "records" / f"train-{index:03d}.tfrecord")) as writer:
            for sample, label in zip(x, y):
                feature = {
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=sample)),
                    "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        xs.append(x)
        ys.append(y)
    np.savez(folder / "all.npz", x=np.concatenate(xs), y=np.concatenate(ys))
    return shards * per_shard


def measured(folder: Path, command: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), *command], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result['stderr']}")
    return result


def seq_run(
    folder: Path, name: str, train: str, epochs: int, max_memory: str | None, data: str = ""
) -> tuple[list[float], int, float]:
    """``seq train`` on ``train`` (with ``data``, more lines of the data section): each epoch's seconds, the
    peak RSS and the whole run's seconds."""
    spec = folder / f"{name}.yaml"
    spec.write_text(
        SPEC.format(
            features=FEATURES, classes=CLASSES, train=train, batch=BATCH, buffer=BUFFER, epochs=epochs, data=data
        )
    )
    command = [sys.executable, "-m", "seqcli", "train", spec.name, "--output", f"run-{name}", "--quiet", "--overwrite"]
    if max_memory:
        command += ["--max-memory", max_memory]
    result = measured(folder, command)
    with open(folder / f"run-{name}" / "history.csv") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return seconds, result["peak"], result["wall"]


def tfdata_run(folder: Path, epochs: int) -> tuple[list[float], int, float]:
    command = [sys.executable, "-c", TFDATA_SCRIPT, str(folder), *map(str, (epochs, FEATURES, CLASSES, BATCH, BUFFER))]
    result = measured(folder, command)
    return json.loads(result["stdout"].strip().splitlines()[-1]), result["peak"], result["wall"]


def throughput(seconds: list[float], samples: int) -> float:
    steady = seconds[1:] or seconds
    return samples / (sum(steady) / len(steady))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=48)
    parser.add_argument("--shard-mb", type=float, default=4)
    parser.add_argument("--max-memory", default="72M")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="seq-stream-bench-") as temporary:
        folder = Path(temporary)
        samples = write_data(folder, args.shards, args.shard_mb)
        size = samples * SAMPLE_BYTES
        print(
            f"{args.shards} shards, {samples:,} samples, {size / (1 << 20):.0f} MB of float32; "
            f"--max-memory {args.max_memory}"
        )
        records = (
            "{path: records/*.tfrecord, features: "
            f"{{x: {{dtype: float32, shape: [{FEATURES}]}}, y: {{dtype: int64}}}}}}"
        )
        variants = {
            "seq npz": lambda: seq_run(folder, "npz", "all.npz", args.epochs, None),
            "seq shards": lambda: seq_run(folder, "shards", "shards/*.npz", args.epochs, args.max_memory),
            "seq tfrecord": lambda: seq_run(folder, "tfrecord", records, args.epochs, args.max_memory),
            "  cache: false": lambda: seq_run(
                folder, "parsing", records, args.epochs, args.max_memory, data="\n  cache: false"
            ),
            "tf.data": lambda: tfdata_run(folder, args.epochs),
        }
        runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits every variant alike
            for name, run in variants.items():
                seconds, peak, wall = run()
                runs[name].append((throughput(seconds, samples), peak, wall))
        report(runs)
        growth(folder, args, samples)


def report(runs: dict[str, list[tuple[float, int, float]]]) -> None:
    """Each variant's best and median samples/s, its largest peak RSS, the ratios of both to the in-memory run
    and the tf.data pipeline, and the median seconds of its whole process (start, reading and parsing included)."""
    best = {name: max(rate for rate, _, _ in measured) for name, measured in runs.items()}
    median = {name: statistics.median(rate for rate, _, _ in measured) for name, measured in runs.items()}
    print(
        f"{'variant':<16}{'best/s':>10}{'median/s':>10}{'peak RSS':>10}"
        f"{'x in-memory':>13}{'(median)':>9}{'x tf.data':>11}{'(median)':>9}{'run s':>8}"
    )
    for name, measured in runs.items():
        peak = max(peak for _, peak, _ in measured) / (1 << 20)
        wall = statistics.median(wall for _, _, wall in measured)
        print(
            f"{name:<16}{best[name]:>10,.0f}{median[name]:>10,.0f}{peak:>8.0f}MB"
            f"{best[name] / best['seq npz']:>13.2f}{median[name] / median['seq npz']:>9.2f}"
            f"{best[name] / best['tf.data']:>11.2f}{median[name] / median['tf.data']:>9.2f}{wall:>8.1f}"
        )


def growth(folder: Path, args: argparse.Namespace, samples: int) -> None:
    """``seq shards`` on a quarter, half and all of the shards: data size, samples/s and peak RSS of each."""
    shards = sorted(path.relative_to(folder).as_posix() for path in (folder / "shards").glob("*.npz"))
    print(f"\n{'seq shards on':<16}{'data':>9}{'x budget':>10}{'samples/s':>11}{'peak RSS':>10}")
    budget = parse_size(args.max_memory)
    for parts in (4, 2, 1):
        chosen = shards[: max(1, len(shards) // parts)]
        count = samples * len(chosen) // len(shards)
        seconds, peak, _ = seq_run(folder, f"grow-{parts}", f"[{', '.join(chosen)}]", args.epochs, args.max_memory)
        size = count * SAMPLE_BYTES
        print(
            f"{f'{len(chosen)} shards':<16}{size / (1 << 20):>7.0f}MB{size / budget:>10.1f}"
            f"{throughput(seconds, count):>11,.0f}{peak / (1 << 20):>8.0f}MB"
        )


if __name__ == "__main__":
    main()
