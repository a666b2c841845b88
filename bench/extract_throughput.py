"""`seq extract` against hand-written Keras: throughput, and peak memory as the sample count grows.

Throughput: the same model (built once, weights loaded) and the same .npy file, in one process, taking turns
so that load from other processes hits both alike; medians of the turns are compared:
  seq     - what `seq extract` runs: load_source + feature_extractor + extract_features, streaming an .npz;
  by hand - np.load + keras.Model(inputs, outputs=[...]).predict(x) (what the guide writes), and the same
            plus np.savez, which is what it takes to get the same file.
Two cases: a compute-bound one (a late, small layer) and a write-bound one (a large feature map).

Memory: peak RSS of a whole `seq extract` process at 10,000 and at 100,000 samples of a model whose
features are 100x the size of its inputs (8x8x1 inputs, 8x8x16 float32 features); holding the
features in memory would need ~400 MB more at 100,000 samples.

    python bench/extract_throughput.py [--samples 10000] [--runs 3] [--memory-samples 10000 100000]

Targets: throughput ratio seq / by hand >= 0.95; peak memory growth 10k -> 100k small (<= 64 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CNN = """\
layers:
  - Input: {shape: [32, 32, 3]}
  - Rescaling: {scale: 0.00392156863}
  - Conv2D: {filters: 32, kernel_size: 3, padding: same, activation: relu, name: conv_a}
  - MaxPooling2D: {pool_size: 2}
  - Conv2D: {filters: 64, kernel_size: 3, padding: same, activation: relu, name: conv_b}
  - MaxPooling2D: {pool_size: 2}
  - Conv2D: {filters: 64, kernel_size: 3, padding: same, activation: relu, name: conv_c}
  - GlobalAveragePooling2D: {name: pooled}
  - Dense: {units: 10, name: logits}
data: {batch_size: 64}
"""
WIDE = """\
layers:
  - Input: {shape: [8, 8, 1]}
  - Conv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu, name: features}
  - GlobalAveragePooling2D: {name: pooled}
data: {batch_size: 256}
"""
ALTERNATE = textwrap.dedent("""\
    # One process, model built once; then seq's extraction and the hand-written predict take turns,
    # so that load from other processes on the machine hits both alike. Each turn starts from the file.
    import json, statistics, sys, time
    from pathlib import Path
    import numpy as np
    from seqcli.modelbuild import model_from_spec
    from seqcli.data import load_source
    from seqcli.verbs.extract import extract_features, feature_extractor
    from seqcli.keras_env import import_keras
    from seqcli.specfile import load_spec
    keras = import_keras()
    spec, data, weights, folder, runs, *layers = sys.argv[1:]
    model = model_from_spec(load_spec(spec), weights=weights)
    batch = 64

    def seq():
        dataset, count = load_source(data, Path.cwd(), batch_size=batch, labels=False)
        extract_features(feature_extractor(model, layers), layers, dataset, count, Path(folder) / "seq.npz")

    def by_hand(save):
        x = np.load(data).astype("float32")
        extractor = keras.Model(inputs=model.inputs, outputs=[model.get_layer(name).output for name in layers])
        features = extractor.predict(x, batch_size=batch, verbose=0)
        features = features if isinstance(features, list) else [features]
        if save:
            np.savez(Path(folder) / "hand.npz", **dict(zip(layers, features)))

    times = {"seq": [], "predict": [], "predict+save": []}
    for turn in range(int(runs) + 1):  # the first turn warms up and is not counted
        for name, run in (("seq", seq), ("predict", lambda: by_hand(False)), ("predict+save", lambda: by_hand(True))):
            start = time.perf_counter()
            run()
            if turn:
                times[name].append(time.perf_counter() - start)
    print(json.dumps({name: statistics.median(values) for name, values in times.items()}))
""")
PEAK = textwrap.dedent("""\
    import resource, runpy, sys
    sys.argv = ["seq", "extract", *sys.argv[1:]]
    try:
        runpy.run_module("seqcli", run_name="__main__")
    except SystemExit as stop:
        if stop.code:
            raise
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
""")


def python(code: str, *args) -> str:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return result.stdout.strip().splitlines()[-1]


def prepare(folder: Path, samples: int) -> tuple[Path, Path, Path]:
    import numpy as np

    spec = folder / "cnn.yaml"
    spec.write_text(CNN)
    data = folder / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (samples, 32, 32, 3), dtype=np.uint8))
    weights = folder / "cnn.weights.h5"
    python(
        "import sys\nfrom seqcli.modelbuild import model_from_spec\nfrom seqcli.specfile import load_spec\n"
        "model_from_spec(load_spec(sys.argv[1])).save_weights(sys.argv[2])\nprint(0)",
        spec,
        weights,
    )
    return spec, data, weights


def throughput(folder: Path, samples: int, runs: int, layers: list[str]) -> dict:
    spec, data, weights = prepare(folder, samples)
    medians = json.loads(python(ALTERNATE, spec, data, weights, folder, runs, *layers))
    return {
        "layers": layers,
        "samples": samples,
        "seconds": medians,
        "ratio_vs_predict": medians["predict"] / medians["seq"],
        "ratio_vs_predict_and_save": medians["predict+save"] / medians["seq"],
    }


def peak_memory(folder: Path, samples: int) -> float:
    import numpy as np

    spec = folder / "wide.yaml"
    spec.write_text(WIDE)
    data = folder / f"small_{samples}.npy"
    np.save(data, np.random.default_rng(1).integers(0, 256, (samples, 8, 8, 1), dtype=np.uint8))
    output = folder / f"wide_{samples}.npz"
    peak = float(python(PEAK, spec, "--data", data, "--all", "--output", output))
    output.unlink()
    data.unlink()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory-samples", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for case, layers in (("compute-bound", ["pooled", "logits"]), ("write-bound", ["conv_b"])):
            result = throughput(folder, args.samples, args.runs, layers)
            results[case] = result
            seconds = result["seconds"]
            print(
                f"{case:13s} ({', '.join(layers)}; {args.samples:,} samples): seq {seconds['seq']:.2f} s, "
                f"predict {seconds['predict']:.2f} s, predict+save {seconds['predict+save']:.2f} s"
            )
            print(
                f"  throughput seq / predict: {result['ratio_vs_predict']:.3f}   "
                f"seq / predict+save: {result['ratio_vs_predict_and_save']:.3f}   (target >= 0.95)"
            )
        small, large = args.memory_samples
        peaks = {count: peak_memory(folder, count) for count in (small, large)}
        results["memory"] = {"peak_mb": peaks, "growth_mb": peaks[large] - peaks[small]}
        print(
            f"peak memory of seq extract: {small:,} samples {peaks[small]:.0f} MB, {large:,} samples "
            f"{peaks[large]:.0f} MB, growth {peaks[large] - peaks[small]:+.0f} MB "
            f"(features at {large:,} samples: {large * 8 * 8 * 16 * 4 / 2**20:.0f} MB)"
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
