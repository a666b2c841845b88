"""`seq tune`: the space checked before any trial, pruning, several workers on one study, a study killed
and resumed, best.yaml retraining to the best value, and what seq says without Optuna."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna  # the test extra installs seqcli[tune]
import pytest

from seqcli.manifest import read_manifest
from tests.conftest import ROOT, write_tiny_project
from tests.conftest import run_seq as run
from tests.conftest import seq_process as seq


def tune_project(directory: Path, tune: str, *, epochs: int = 2, samples: int = 128) -> Path:
    return write_tiny_project(directory, epochs=epochs, samples=samples, extra="tune:\n" + tune)


def read_trials(output: Path) -> list[dict]:
    with open(output / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def load_study(output: Path, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{output / 'study.db'}")


# ----------------------------------------------------------------------------- the space, before any trial

BROKEN_SPACE = """\
  objective: val_accuracy
  trials: 4
  parameters:
    layers[7].Dense.units: {choice: [4, 8]}
    layers[3].Dense.units: {uniform: [2.0, 8.0]}
    layers[2].Dropout.rate: {uniform: [0.1, 1.5]}
    compile.optimizer.Adam.learning_rate: {loguniform: [1e-4, 1e-1]}
"""

BROKEN_REPORT = """\
{spec}:22:5: tune.parameters.layers[7].Dense.units: no such value in the spec: layers has 4 entries
    layers[7].Dense.units: {{choice: [4, 8]}}
    ^
  hint: indices go from 0 to 3
{spec}:23:38: tune.parameters.layers[3].Dense.units.uniform: layers[3].Dense.units is an integer in the spec (3); a uniform range gives floats
    layers[3].Dense.units: {{uniform: [2.0, 8.0]}}
                                     ^
  hint: use {{int: [low, high]}} or {{choice: [...]}}
{spec}:24:45: tune.parameters.layers[2].Dropout.rate.uniform[1]: at high bound 1.5, layers[2].Dropout: Keras rejected Dropout: Invalid value received for argument `rate`. Expected a float value between 0 and 1. Received: rate=1.5
    layers[2].Dropout.rate: {{uniform: [0.1, 1.5]}}
                                            ^
  hint: check the arguments against the Keras documentation of this layer
"""


def test_a_broken_space_fails_before_any_trial_with_three_positioned_problems(tmp_path):
    spec = tune_project(tmp_path, BROKEN_SPACE)
    result = run("tune", spec, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr == BROKEN_REPORT.format(spec=spec)
    assert not any(path.name.startswith("trial-") for path in tmp_path.joinpath("out").glob("*"))
    assert not (tmp_path / "out" / "study.db").exists()


def test_seq_check_checks_the_tune_section_the_same_way(tmp_path):
    spec = tune_project(tmp_path, BROKEN_SPACE)
    result = run("check", spec)
    assert result.exit_code == 1
    assert result.stderr == BROKEN_REPORT.format(spec=spec)
    assert "FAIL (3)" in result.stdout


def test_objective_ranges_and_grid_are_checked(write_spec):
    spec = tune_project(
        write_spec("").parent,
        """\
  objective: val_acuracy
  sampler: grid
  parameters:
    layers[2].Dropout.rate: {uniform: [0.5, 0.1]}
    compile.optimizer.Adam.learning_rate: {loguniform: [0, 1e-1]}
""",
    )
    result = run("check", spec)
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(spec))]
    assert [line.split(": ", 2)[1:] for line in lines] == [
        ["tune.objective", "training logs no 'val_acuracy'"],
        ["tune.sampler", "a grid search needs few discrete values; layers[2].Dropout.rate has a uniform range"],
        [
            "tune.sampler",
            "a grid search needs few discrete values; compile.optimizer.Adam.learning_rate has a loguniform range",
        ],
        ["tune.parameters.layers[2].Dropout.rate.uniform", "low must be below high; received [0.5, 0.1]"],
        [
            "tune.parameters.compile.optimizer.Adam.learning_rate.loguniform[0]",
            "a loguniform range needs low > 0; received 0",
        ],
    ]
    assert "hint: did you mean 'val_accuracy'?" in result.stderr


def test_schema_publishes_the_tune_section():
    schema = json.loads(run("schema").stdout)
    tune = schema["properties"]["tune"]["properties"]
    assert {"objective", "direction", "trials", "sampler", "pruner", "epochs", "parameters"} <= set(tune)


def test_without_optuna_seq_tune_says_what_to_install_and_help_imports_neither(tmp_path):
    spec = tune_project(tmp_path, "  parameters:\n    layers[2].Dropout.rate: {uniform: [0.1, 0.5]}\n")
    code = (
        "import sys\nsys.modules['optuna'] = None\nfrom click.testing import CliRunner\n"
        "from seqcli.cli import cli\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(cli, ['tune', '--help']).exit_code == 0\n"
        "assert 'tensorflow' not in sys.modules\n"
        f"result = CliRunner().invoke(cli, ['tune', {str(spec)!r}])\n"
        "print(result.exit_code, result.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "3 error: seq tune needs Optuna, which is not installed\n  hint: pip install 'seqcli[tune]'"  # environment
    )


# ----------------------------------------------------------------------------- pruning


@pytest.mark.slow
def test_pruning_stops_the_trial_whose_values_are_worst(tmp_path):
    """Three trials in a fixed order (enqueued): two equal ones learn (equal to the median, so never worse), the
    third (learning rate 1e-7) has the worst val_loss after its first epoch and the median pruner stops it."""
    spec = tune_project(
        tmp_path,
        """\
  objective: val_loss
  trials: 3
  epochs: 3
  pruner: {median: {n_startup_trials: 1}}
  parameters:
    compile.optimizer.Adam.learning_rate: {loguniform: [1e-8, 1e-1]}
""",
        epochs=3,
    )
    from seqcli.specfile import read_spec
    from seqcli.tune.study import make_storage, open_study

    output = tmp_path / "out"
    output.mkdir()
    study = open_study(read_spec(spec), make_storage(f"sqlite:///{output / 'study.db'}"), resume=False, sampler_seed=0)
    for rate in (0.05, 0.05, 1e-7):
        study.enqueue_trial({"compile.optimizer.Adam.learning_rate": rate})
    result = run("tune", spec, "--output", output, "--resume")
    assert result.exit_code == 0, result.output
    assert "trial 2 pruned" in result.stdout
    rows = read_trials(output)
    assert [row["state"] for row in rows] == ["complete", "complete", "pruned"]
    assert [row["epochs"] for row in rows] == ["3", "3", "1"]
    history = (output / "trial-0002" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and (output / "trial-0002" / "model.keras").exists()
    assert float(rows[2]["value"]) > max(float(row["value"]) for row in rows[:2])


def test_a_grid_search_runs_every_point_of_its_grid_once_and_stops(tmp_path):
    """A grid of two points with more trials asked: two trials, each point once, and a clean finish (Optuna's
    grid sampler stops only a study.optimize loop; seq's own loop must end without it)."""
    spec = tune_project(
        tmp_path,
        """\
  objective: val_loss
  trials: 5
  epochs: 1
  sampler: grid
  parameters:
    compile.optimizer.Adam.learning_rate: {choice: [0.01, 0.05]}
""",
        epochs=1,
        samples=32,
    )
    result = run("tune", spec, "--output", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rows = read_trials(tmp_path / "out")
    assert [row["state"] for row in rows] == ["complete", "complete"]
    assert sorted(float(row["compile.optimizer.Adam.learning_rate"]) for row in rows) == [0.01, 0.05]


# ----------------------------------------------------------------------------- results as JSON and as a plot


def test_format_json_prints_the_study_and_seq_plot_draws_it(tmp_path):
    spec = tune_project(
        tmp_path,
        """\
  objective: val_loss
  trials: 2
  epochs: 1
  sampler: random
  pruner: none
  parameters:
    compile.optimizer.Adam.learning_rate: {loguniform: [1e-3, 1e-1]}
""",
        samples=64,
    )
    output = tmp_path / "out"
    result = run("tune", spec, "--output", output, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "trial 1 complete" in result.stderr
    assert (report["objective"], report["direction"], report["total"]) == ("val_loss", "minimize", 2)
    rows = read_trials(output)
    assert [(t["trial"], t["state"], t["run"]) for t in report["trials"]] == [
        (int(row["trial"]), row["state"], row["run"]) for row in rows
    ]
    assert [t["value"] for t in report["trials"]] == [float(row["value"]) for row in rows]
    assert report["best"] == min(report["trials"], key=lambda t: t["value"])
    assert report["files"] == [str(output / name) for name in ("trials.csv", "study.json", "trials.png", "best.yaml")]
    manifest = read_manifest(output)  # each trial folder by its exact name, each file with its size
    assert {path: m.kind for path, m in manifest.members.items() if path.startswith("trial-")} == {
        "trial-0000": "folder",
        "trial-0001": "folder",
    }
    assert manifest.writing is None and manifest.members["trials.csv"].size == (output / "trials.csv").stat().st_size
    (output / "trial-notes.txt").write_text("mine")
    replaced = run("train", spec, "--output", output, "--overwrite", "-q")
    assert replaced.exit_code == 1 and "it holds trial-notes.txt that seq did not write" in replaced.stderr
    (output / "trial-notes.txt").unlink()
    plotted = run("plot", output, "--output", tmp_path / "objective.png")
    assert plotted.exit_code == 0, plotted.output
    assert plotted.stdout == f"Wrote the objective over 2 trials to {tmp_path / 'objective.png'}\n"


# ----------------------------------------------------------------------------- workers, kill -9, best.yaml

SEARCH = """\
  objective: val_loss
  trials: 6
  sampler: random
  pruner: none
  parameters:
    compile.optimizer.Adam.learning_rate: {loguniform: [1e-3, 1e-1]}
    layers[2].Dropout.rate: {choice: [0.0, 0.1, 0.2, 0.3]}
"""


@pytest.mark.slow
def test_two_workers_share_one_study_and_best_yaml_retrains_to_the_best_value(tmp_path):
    spec = tune_project(tmp_path, SEARCH)
    result = seq("tune", spec, "--output", "out", "--workers", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = load_study(tmp_path / "out").get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    assert {t.user_attrs["pid"] for t in trials}.__len__() == 2  # both workers trained
    rows = read_trials(tmp_path / "out")
    best = min(rows, key=lambda row: float(row["value"]))
    assert f"Best: trial {best['trial']}, val_loss" in result.stdout
    assert (tmp_path / "out" / "trials.png").stat().st_size > 0
    refused = run("check", tmp_path / "out" / "best.yaml")  # it names files outside its folder
    assert refused.exit_code == 1 and "outside the spec's folder" in refused.stderr
    assert run("check", tmp_path / "out" / "best.yaml", "--allow-path", tmp_path).exit_code == 0
    evaluated = run("evaluate", tmp_path / "out" / best["run"], "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    retrained = run(
        "train", tmp_path / "out" / "best.yaml", "--output", tmp_path / "again", "--quiet", "--allow-path", tmp_path
    )
    assert retrained.exit_code == 0, retrained.output
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())["metrics"]
    assert metrics["val_loss"] == pytest.approx(float(best["value"]), abs=1e-6)


@pytest.mark.slow
def test_a_study_killed_mid_trial_resumes_to_exactly_its_total(tmp_path):
    spec = tune_project(tmp_path, SEARCH, epochs=4, samples=512)
    process = subprocess.Popen(
        [sys.executable, "-m", "seqcli", "tune", str(spec), "--output", "out"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "out" / "trial-0001").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the second trial never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [t.state.name for t in load_study(tmp_path / "out").get_trials()][:2] == ["COMPLETE", "RUNNING"]
    result = seq("tune", spec, "--output", "out", "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trial 1 was cut off" in result.stdout
    trials = load_study(tmp_path / "out").get_trials()
    assert sum(t.state.name == "COMPLETE" for t in trials) == 6
    assert [t.state.name for t in trials].count("FAIL") == 1
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 1)
    assert retry.user_attrs["run"] == "trial-0001" and retry.params == trials[1].params
    rows = read_trials(tmp_path / "out")
    assert [row["state"] for row in rows].count("retried") == 1 and len(rows) == 7


def test_a_study_continues_with_more_trials_but_not_another_spec(tmp_path):
    """What a continued study may change is what the tune section declares (tune.trials); nothing else."""
    from seqcli.specfile import read_spec
    from seqcli.tune.study import TuneError, open_study

    spec = tune_project(tmp_path, "  trials: 2\n  parameters:\n    train.epochs: {choice: [1, 2]}\n")
    storage = optuna.storages.InMemoryStorage()
    open_study(read_spec(spec), storage, resume=False, sampler_seed=0)
    open_study(read_spec(spec, ["tune.trials=5"]), storage, resume=True, sampler_seed=0)
    with pytest.raises(TuneError) as error:
        open_study(read_spec(spec, ["data.batch_size=4"]), storage, resume=True, sampler_seed=0)
    assert error.value.message == "the study 'tiny' was made from another spec or search space"
    assert error.value.hint.startswith("undo the change (only tune.trials may change)")
