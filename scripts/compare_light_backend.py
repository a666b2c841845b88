"""Compare what `seq check`, `seq summary` and `seq schema` say with TensorFlow and without it (the light install:
Keras on JAX or numpy), for every spec in specs/ and every spec-level case of the hostile corpus
(tests/test_hostile.py, tests/test_spec_errors.py).

Two Python environments with seqcli installed: the full one (TensorFlow and the test extra: the corpus is read
from tests/) runs this script from the repository root, and the light one (requirements-check.txt, then
`pip install --no-deps .`) is given with --light. The cases are written once into a temporary folder (the
hostile corpus's files are made with the full install's Keras), then each environment runs every command line
through seq's CLI, in one process per environment and backend, and the exit statuses, stdout and stderr are
compared. Where `--format json` gives a report, verdicts, output shapes and parameters are compared layer by
layer:

    python scripts/compare_light_backend.py --light /path/to/light-venv/bin/python
    python scripts/compare_light_backend.py --light ... --backend jax --backend numpy --json report.json

Exits 1 when any output differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS_COMMANDS = ("check", "summary")
FORMAT_OPTIONS = ("--format",)
# The memory budget's default is a share of the memory available when a command runs: not the backend's doing.
VOLATILE = re.compile(r"the limit is [0-9.]+ [KMGT]?B \(70% of the memory available now\)")


# ----------------------------------------------------------------------------- the plan: command lines to run


def spec_invocations() -> list[dict]:
    """check and summary, as JSON, of every spec in specs/ (run from the repository root), and seq schema."""
    invocations = [{"case": "seq schema", "cwd": str(ROOT), "args": ["schema"]}]
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        relative = str(path.relative_to(ROOT))
        for command in ("check", "summary"):
            invocations.append({"case": relative, "cwd": str(ROOT), "args": [command, relative, "--format", "json"]})
    return invocations


def corpus_invocations(folder: Path) -> list[dict]:
    """Every spec-level case of the two corpora, written into its own project under ``folder``: the case's own
    command line, and the same with --format json when it has no --format (for the layer-by-layer diff)."""
    sys.path.insert(0, str(ROOT))
    from tests.test_hostile import CLASSES, Case
    from tests.test_spec_errors import CASES

    cases = [
        (f"hostile {kind}: {name}", case)
        for kind, table in CLASSES.items()
        for name, case in table.items()
        if case.args[0] in CORPUS_COMMANDS
    ]
    cases += [(f"spec_errors: {name}", Case(["check", "bad.yaml"], files={"bad.yaml": text})) for name, text in CASES]
    invocations = []
    run = trained_run(folder / "trained")
    for number, (label, case) in enumerate(cases):
        args, cwd = arrange_case(case, folder / f"{number:03d}", run)
        invocations.append({"case": label, "cwd": str(cwd), "args": args})
        if not any(option in args for option in FORMAT_OPTIONS) and "-h" not in args:
            invocations.append({"case": label, "cwd": str(cwd), "args": [*args, "--format", "json"]})
    return invocations


def trained_run(folder: Path) -> Path:
    """A `seq train` run of the tiny project, as the hostile corpus's ``trained`` fixture makes it (some cases
    make their files from its model)."""
    from click.testing import CliRunner

    from seqcli.cli import cli
    from tests.conftest import write_tiny_project

    write_tiny_project(folder)
    result = CliRunner().invoke(cli, ["train", str(folder / "tiny.yaml"), "--output", str(folder / "run"), "--quiet"])
    if result.exit_code != 0:
        raise SystemExit(f"could not train the tiny project: {result.output}")
    return folder / "run"


def arrange_case(case, root: Path, run: Path) -> tuple[list[str], Path]:
    """The project the hostile corpus gives every case (tiny.yaml, tiny.npz, x.npy, a secret outside, the trained
    run), with the case's files in it; returns the case's arguments and the project folder."""
    import numpy as np

    from tests.conftest import write_tiny_project
    from tests.test_hostile import SECRET, arrange

    project = root / "project"
    write_tiny_project(project, epochs=1, samples=16)
    np.save(project / "x.npy", np.ones((4, 4, 4, 1), np.float32))
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(SECRET + "\n")
    shutil.copytree(run, root / "run")
    cwd = os.getcwd()
    os.chdir(project)  # some file makers write relative to the current folder
    try:
        return arrange(case, project), project
    finally:
        os.chdir(cwd)


# ----------------------------------------------------------------------------- running a plan in one environment


def run_plan(plan_path: Path, results_path: Path) -> None:
    """Run every invocation of the plan through seq's CLI in this process; write exit status, stdout, stderr,
    the Keras backend and the seconds each took."""
    from click.testing import CliRunner

    from seqcli.cli import cli

    plan = json.loads(plan_path.read_text())
    results = []
    for invocation in plan:
        os.chdir(invocation["cwd"])
        started = time.perf_counter()
        result = CliRunner().invoke(cli, invocation["args"])
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        results.append(
            {
                "status": result.exit_code,
                "stdout": VOLATILE.sub("the limit is (70% of the memory available)", result.stdout),
                "stderr": VOLATILE.sub("the limit is (70% of the memory available)", result.stderr)
                + (f"\n(crashed: {result.exception!r})" if crashed else ""),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
    keras = sys.modules.get("keras")
    backend = keras.backend.backend() if keras is not None else None
    results_path.write_text(json.dumps({"backend": backend, "results": results}))


def run_in(python: str, plan_path: Path, results_path: Path, environment: dict, memory_limit: int | None) -> dict:
    """Run the plan with ``python`` (another environment), under an address-space limit of ``memory_limit``
    bytes when given (numpy computes each layer for real), and return its results."""
    env = {**os.environ, **environment, "SEQ_TEST_SECRET": "TOPSECRETCORPUSVALUE", "COLUMNS": "120"}
    env.pop("SEQ_ALLOW_PATH", None)
    command = [python, str(Path(__file__).resolve()), "--run-plan", str(plan_path), "--results", str(results_path)]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=ROOT, preexec_fn=_address_space(memory_limit))
    outcome = json.loads(results_path.read_text())
    outcome["seconds"] = round(time.perf_counter() - started, 1)
    return outcome


def _address_space(limit: int | None):
    if limit is None:
        return None

    def apply():
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


# ----------------------------------------------------------------------------- comparing


def layer_differences(full: dict, light: dict) -> list[str]:
    """What differs between two reports of one spec: the verdict, the totals, each layer's row, the problems."""
    differences = []
    for key in ("ok", "params", "trainable_params", "output_shape", "memory"):
        if full.get(key) != light.get(key):
            differences.append(f"{key}: {full.get(key)!r} != {light.get(key)!r}")
    full_rows, light_rows = full.get("layers", []), light.get("layers", [])
    if len(full_rows) != len(light_rows):
        differences.append(f"layer count: {len(full_rows)} != {len(light_rows)}")
    for full_row, light_row in zip(full_rows, light_rows):
        for key in sorted(set(full_row) | set(light_row)):
            if full_row.get(key) != light_row.get(key):
                where = f"layer {full_row.get('name')} ({full_row.get('class_name') or full_row.get('class')})"
                differences.append(f"{where} {key}: {full_row.get(key)!r} != {light_row.get(key)!r}")
    full_problems = [(p.get("path"), p.get("message")) for p in full.get("problems", [])]
    light_problems = [(p.get("path"), p.get("message")) for p in light.get("problems", [])]
    if full_problems != light_problems:
        differences.append(f"problems: {full_problems!r} != {light_problems!r}")
    return differences


def json_reports(stdout: str) -> list[dict]:
    """The reports in a check or summary JSON document (none when it is not one)."""
    try:
        document = json.loads(stdout)
    except ValueError:
        return []
    if not isinstance(document, dict):
        return []
    return document.get("specs") or ([document] if "layers" in document else [])


def compare(invocation: dict, full: dict, light: dict) -> list[str]:
    """Every difference between the two runs of one invocation; none when they are identical."""
    differences = []
    if full["status"] != light["status"]:
        differences.append(f"exit status {full['status']} != {light['status']}")
    full_reports, light_reports = json_reports(full["stdout"]), json_reports(light["stdout"])
    for full_report, light_report in zip(full_reports, light_reports):
        differences += layer_differences(full_report, light_report)
    if full["stdout"] != light["stdout"] and not differences:
        differences.append("stdout differs: " + first_difference(full["stdout"], light["stdout"]))
    if full["stderr"] != light["stderr"]:
        differences.append("stderr differs: " + first_difference(full["stderr"], light["stderr"]))
    return differences


def first_difference(full: str, light: str) -> str:
    for full_line, light_line in zip(full.splitlines(), light.splitlines()):
        if full_line != light_line:
            return f"{full_line[:300]!r} != {light_line[:300]!r}"
    return f"{len(full.splitlines())} lines != {len(light.splitlines())} lines"


def report(plan: list[dict], full: dict, lights: dict[str, dict]) -> dict:
    """Per backend: how many invocations matched, and every difference by case."""
    summary = {"full": {"backend": full["backend"], "seconds": full["seconds"]}, "light": {}}
    for name, light in lights.items():
        differing = []
        for invocation, full_result, light_result in zip(plan, full["results"], light["results"]):
            differences = compare(invocation, full_result, light_result)
            if differences:
                differing.append({"case": invocation["case"], "args": invocation["args"], "differences": differences})
        summary["light"][name] = {
            "backend": light["backend"],
            "seconds": light["seconds"],
            "invocations": len(plan),
            "identical": len(plan) - len(differing),
            "differing": differing,
        }
    return summary


def print_report(summary: dict, plan: list[dict]) -> None:
    cases = sorted({invocation["case"] for invocation in plan})
    print(f"{len(cases)} cases, {len(plan)} command lines; TensorFlow run: {summary['full']['seconds']} s")
    for name, light in summary["light"].items():
        print(
            f"\n{name} (Keras on {light['backend']}, {light['seconds']} s): "
            f"{light['identical']}/{light['invocations']} identical"
        )
        for entry in light["differing"]:
            print(f"  {entry['case']}: seq {' '.join(entry['args'])}")
            for difference in entry["differences"]:
                print(f"    {difference[:400]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--light", help="python of the environment without TensorFlow")
    parser.add_argument("--full", default=sys.executable, help="python of the environment with TensorFlow")
    parser.add_argument("--backend", action="append", help="KERAS_BACKEND for the light run (repeatable)")
    parser.add_argument("--only", choices=["specs", "corpus"], help="compare these cases only")
    parser.add_argument("--memory-limit", type=int, default=8, help="GiB of address space for a light run")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    parser.add_argument("--run-plan", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_plan:
        run_plan(args.run_plan, args.results)
        return 0
    if not args.light:
        parser.error("--light is required")
    folder = Path(tempfile.mkdtemp(prefix="seq-light-"))
    try:
        plan = [] if args.only == "corpus" else spec_invocations()
        plan += [] if args.only == "specs" else corpus_invocations(folder / "cases")
        plan_path = folder / "plan.json"
        plan_path.write_text(json.dumps(plan))
        full = run_in(args.full, plan_path, folder / "full.json", {}, None)
        limit = args.memory_limit * 2**30
        lights = {
            f"light {backend}": run_in(
                args.light, plan_path, folder / f"{backend}.json", {"KERAS_BACKEND": backend}, limit
            )
            for backend in args.backend or ["jax"]
        }
        summary = report(plan, full, lights)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_report(summary, plan)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if any(light["differing"] for light in summary["light"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
