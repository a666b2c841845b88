"""Study overhead: ``seq tune --workers 1`` against a shell loop of ``seq train`` runs with the same values.

    python bench/tune_overhead.py [--trials 8] [--epochs 2]

A small spec (the digits CNN of specs/digits.yaml, with a narrower first layer) gets a ``tune:`` section
over the learning rate and the dropout rate. First ``seq tune`` runs the study (random sampler, no
pruning) in one worker process: one Python start and one TensorFlow import for all trials. Then a
shell loop runs ``seq train`` once per trial with the values the study recorded (``--set``), the same
epochs and seed: one process start and import per trial. Both run the same checks and write the same
run directories. Prints both wall times, the time per trial and the ratio loop / tune.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: digits_small
layers:
  - Input: {{shape: [8, 8, 1]}}
  - Conv2D: {{filters: 16, kernel_size: 3, padding: same, activation: relu}}
  - MaxPooling2D: {{pool_size: 2}}
  - Flatten: {{}}
  - Dropout: {{rate: 0.25}}
  - Dense: {{units: 10, activation: softmax}}
compile:
  optimizer: {{Adam: {{learning_rate: 0.002}}}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
data:
  train: {data}
  validation: 0.2
  batch_size: 64
train:
  epochs: {epochs}
  seed: 42
tune:
  objective: val_accuracy
  trials: {trials}
  sampler: random
  pruner: none
  parameters:
    compile.optimizer.Adam.learning_rate: {{loguniform: [1e-3, 1e-2]}}
    layers[4].Dropout.rate: {{uniform: [0.0, 0.5]}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seq-tune-bench-") as folder:
        folder = Path(folder)
        spec = folder / "spec.yaml"
        spec.write_text(
            SPEC.format(data=ROOT / "specs" / "data" / "digits.npz", epochs=args.epochs, trials=args.trials)
        )
        seq = f"{shlex.quote(sys.executable)} -m seqcli"
        tune_seconds = timed(f"{seq} tune {spec} --output {folder / 'study'} --workers 1 > /dev/null")
        with open(folder / "study" / "trials.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        names = [key for key in rows[0] if "." in key or "[" in key]
        commands = []
        for row in rows:
            sets = " ".join(f"--set {shlex.quote(f'{name}={row[name]}')}" for name in names)
            commands.append(
                f"{seq} train {spec} --output {folder / 'loop' / row['run']} --quiet --set tune=null {sets}"
            )
        loop_seconds = timed("\n".join(commands))
    trials = len(rows)
    print(f"seq tune --workers 1: {trials} trials in {tune_seconds:.1f} s ({tune_seconds / trials:.2f} s a trial)")
    print(f"shell loop of seq train: {trials} runs in {loop_seconds:.1f} s ({loop_seconds / trials:.2f} s a run)")
    print(f"ratio (loop / tune): {loop_seconds / tune_seconds:.2f}x")


def timed(script: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-ec", script], check=True, cwd=ROOT)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
