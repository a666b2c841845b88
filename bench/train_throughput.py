"""Training throughput: ``seq train`` against two hand-written Keras scripts, same spec, same data.

    python bench/train_throughput.py [SPEC] [--epochs N]

Three variants, each in its own process, one after the other (so they never share the CPU):

- ``seq``: ``seq train SPEC`` as a user runs it (checkpoints, history, TensorBoard logs and all);
- ``plain``: the model compiled with its optimizer, loss and metrics and Keras's defaults, NumPy
  arrays into ``fit(x, y, batch_size=..., validation_data=...)``;
- ``tuned``: a tf.data pipeline (cache, shuffle, batch, prefetch) and ``steps_per_execution=32``.

All train the spec's model (built by seq's builder, so the architectures are identical) on the spec's
training data with the same validation split, batch size and epochs, early stopping off. Throughput
is steady state: training samples per second over every epoch after the first (which pays for
tracing), validation included, each epoch timed from the end of the previous one. The variants run
in turn ``--repeats`` times (default 3) and each keeps its best run, which filters out other
processes competing for the CPU. Prints samples/s per variant and the ratios of seq to the others.
Needs only public tools: Keras, TensorFlow, NumPy and seq itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT / "specs" / "digits.yaml"
TUNED_STEPS_PER_EXECUTION = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=["plain", "tuned"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_script(args.variant, args.spec, args.epochs)))
        return
    runs: dict[str, list[float]] = {"seq": [], "plain": [], "tuned": []}
    for _ in range(args.repeats):
        runs["seq"].append(run_seq(args.spec, args.epochs))
        for variant in ("plain", "tuned"):
            output = subprocess.run([sys.executable, __file__, args.spec, "--epochs", str(args.epochs), "--variant",
                                     variant], capture_output=True, text=True, check=True).stdout
            runs[variant].append(json.loads(output.strip().splitlines()[-1])["samples_per_second"])
    results = {name: max(values) for name, values in runs.items()}
    for name, values in runs.items():
        print(f"{name:>6}: {results[name]:10,.0f} samples/s  (best of {', '.join(f'{v:,.0f}' for v in values)})")
    print(f"seq / plain: {results['seq'] / results['plain']:.2f}x   (target >= 1.40x)")
    print(f"seq / tuned: {results['seq'] / results['tuned']:.2f}x   (target >= 0.97x)")


def run_seq(spec: str, epochs: int) -> float:
    """seq's own measure (metrics.json): the same steady state, each epoch's checkpoint and logs included."""
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run([sys.executable, "-m", "seqcli", "train", spec, "--output", directory, "--overwrite",
                        "--epochs", str(epochs), "--set", "train.early_stopping=null", "--quiet"], check=True)
        return json.loads((Path(directory) / "metrics.json").read_text())["samples_per_second"]


def steady_state(seconds: list[float], train_count: int) -> float:
    later = seconds[1:]
    return train_count * len(later) / sum(later)


def run_script(variant: str, spec_path: str, epochs: int) -> dict:
    """The hand-written baselines: only the model and the arrays come from seq, the training is plain Keras."""
    import keras
    import numpy as np
    import tensorflow as tf

    from seqcli import build_model, load_spec
    from seqcli.compile import resolve_compile
    from seqcli.data import load_arrays, split_indices

    spec = load_spec(spec_path)
    keras.utils.set_random_seed(spec.train.seed or 0)
    x, y = load_arrays(spec.resolved()["data"]["train"], spec.base_dir)
    train, validation = split_indices(len(x), spec.data.validation, spec.train.seed or 0)
    model = build_model(spec).model
    settings, _ = resolve_compile(spec)
    batch_size = spec.data.batch_size
    timer = EpochTimer(keras)
    if variant == "plain":
        model.compile(optimizer=settings.optimizer, loss=settings.loss, metrics=settings.metrics)
        model.fit(x[train], y[train], batch_size=batch_size, epochs=epochs, validation_data=(x[validation],
                  y[validation]), callbacks=[timer.callback], verbose=0)
    else:
        model.compile(optimizer=settings.optimizer, loss=settings.loss, metrics=settings.metrics,
                      steps_per_execution=TUNED_STEPS_PER_EXECUTION)
        train_data = (tf.data.Dataset.from_tensor_slices((x[train], y[train])).cache()
                      .shuffle(len(train), seed=spec.train.seed).batch(batch_size).prefetch(tf.data.AUTOTUNE))
        validation_data = (tf.data.Dataset.from_tensor_slices((x[validation], y[validation])).batch(batch_size)
                           .cache().prefetch(tf.data.AUTOTUNE))
        model.fit(train_data, epochs=epochs, validation_data=validation_data, callbacks=[timer.callback], verbose=0)
    return {"variant": variant, "samples_per_second": steady_state(timer.seconds, len(train)),
            "train_count": int(np.size(train))}


class EpochTimer:
    """Wall time of each epoch measured as seq measures it: from the end of the previous epoch (the
    start of training for the first) to the end of this one, validation and per-epoch work included."""

    def __init__(self, keras):
        self.seconds: list[float] = []
        self.callback = keras.callbacks.LambdaCallback(on_train_begin=self._begin, on_epoch_end=self._end)

    def _begin(self, logs=None):
        self.last = time.perf_counter()

    def _end(self, epoch, logs=None):
        now = time.perf_counter()
        self.seconds.append(now - self.last)
        self.last = now


if __name__ == "__main__":
    main()
