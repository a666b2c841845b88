"""`seq check` cost does not grow with model size: no weight memory is ever allocated.

Times `seq check` on a 1,000-parameter spec and on a 1,000,000,000-parameter spec, each as a whole
process run several times, and a plain Keras script that builds the same big model the usual way.
Prints wall-time and peak-memory ratios (machines are noisy: read the ratios, not the seconds).

    python bench/check_scale.py [--runs 5]

Targets: big/small wall time <= 1.2x, big - small peak memory <= 64 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SMALL = """\
layers:
  - Input: {shape: [32]}
  - Dense: {units: 24}
  - Dense: {units: 8}
expect: {params: 992}
"""
# 1000 -> 31,121 -> 31,121 -> 10: (1000+1)*31121 + (31121+1)*31121 + (31121+1)*10 = 1,000,011,103 params
BIG = """\
layers:
  - Input: {shape: [1000]}
  - Dense: {units: 31121}
  - Dense: {units: 31121}
  - Dense: {units: 10}
expect: {params: 1000011103}
"""
PLAIN_KERAS = textwrap.dedent("""\
    import keras
    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense({units}), keras.layers.Dense({units}),
                              keras.layers.Dense(10)])
    print(model.count_params())
""")


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    code = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        f"rc = subprocess.run({command!r}, stdout=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(rc, wall, peak)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"command failed: {' '.join(command)}")
    return float(out[1]), float(out[2])


def series(command: list[str], runs: int) -> tuple[float, float]:
    results = [measure(command) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-plain", action="store_true", help="skip the plain Keras build (needs ~6 GB)")
    args = parser.parse_args()
    seq = [sys.executable, "-m", "seqcli", "check"]
    with tempfile.TemporaryDirectory() as folder:
        small, big = Path(folder) / "small.yaml", Path(folder) / "big.yaml"
        small.write_text(SMALL)
        big.write_text(BIG)
        order = []
        for _ in range(args.runs):  # interleave, so drift on a shared machine hits both alike
            order.append(("small", measure(seq + [str(small)])))
            order.append(("big", measure(seq + [str(big)])))
        small_wall = statistics.median(r[1][0] for r in order if r[0] == "small")
        big_wall = statistics.median(r[1][0] for r in order if r[0] == "big")
        small_rss = max(r[1][1] for r in order if r[0] == "small")
        big_rss = max(r[1][1] for r in order if r[0] == "big")
        print(f"seq check 1e3 params : {small_wall:6.2f} s  peak {small_rss:7.0f} MB")
        print(f"seq check 1e9 params : {big_wall:6.2f} s  peak {big_rss:7.0f} MB")
        print(f"wall-time ratio 1e9/1e3 : {big_wall / small_wall:.3f}  (target <= 1.2)")
        print(f"peak-memory growth      : {big_rss - small_rss:+.0f} MB  (target <= 64 MB)")
        if not args.skip_plain:
            plain = Path(folder) / "plain.py"
            plain.write_text(PLAIN_KERAS.format(units=22_350))  # ~0.5e9 params, half the size
            env_wall, env_rss = series([sys.executable, str(plain)], max(1, args.runs // 2))
            print(f"plain Keras 0.5e9 build : {env_wall:6.2f} s  peak {env_rss:7.0f} MB")
            print(
                f"plain Keras (half size) / seq check 1e9: wall {env_wall / big_wall:.2f}x, "
                f"memory {env_rss / big_rss:.2f}x"
            )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
