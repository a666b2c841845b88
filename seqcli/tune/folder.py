"""The study folder: the one place that knows what ``seq tune`` writes and where.

A study folder holds one run folder per trial (``trial-NNNN/``, a run as ``seq train`` writes it, see
:class:`seqcli.training.rundir.RunDirectory`), ``trials.csv`` (one row per trial), ``study.json`` (its
objective, direction and budget), ``trials.png`` (the objective over trials), ``best.yaml`` (the best trial's
spec) and, unless ``--storage`` names another, the study's SQLite storage ``study.db``. ``seq tune`` writes it
and ``seq plot`` reads it back through :class:`StudyFolder`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.records import INTEGER, NUMBER, TEXT, Column, RecordError, read_csv, read_json
from seqcli.training.rundir import RunDirectory

TRIAL_NAME = re.compile(r"trial-\d{4,}")
TRIALS_KIND = "a trials.csv as seq tune writes it"
DESCRIPTION_KIND = "a study.json as seq tune writes it"
REWRITE_HINT = "rerun the study with --resume to write its results again"
DIRECTIONS = ("minimize", "maximize")
MAX_OBJECTIVE = 256  # characters in a metric's name
# trials.csv's typed columns (a tuned parameter's column holds text: its values may be of any type).
TRIALS_COLUMNS = {
    "trial": Column(INTEGER.parse, INTEGER.kind, required=True),
    "state": Column(TEXT.parse, TEXT.kind, required=True),
    "value": NUMBER,
    "epochs": INTEGER,
    "seconds": NUMBER,
}


class StudyFolderError(SeqError):
    """A folder that does not hold a study ``seq tune`` wrote."""


def trial_name(number: int) -> str:
    """The run folder of trial ``number``, inside its study folder (it sorts in trial order)."""
    return f"trial-{number:04d}"


@dataclass(frozen=True)
class StudyFolder:
    """The files of one study, under ``path``."""

    path: Path

    # What the manifest claims besides the trial folders, which are claimed by name as each trial starts.
    MEMBERS = ("study.db", "study.db-journal", "trials.csv", "study.json", "trials.png", "best.yaml")

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def trials(self) -> Path:
        return self.path / "trials.csv"

    @property
    def description(self) -> Path:
        """``study.json``: the objective, its direction and the number of trials."""
        return self.path / "study.json"

    @property
    def plot(self) -> Path:
        return self.path / "trials.png"

    @property
    def best(self) -> Path:
        """The best trial's spec: ``seq train`` on it repeats that trial."""
        return self.path / "best.yaml"

    @property
    def database(self) -> Path:
        """The study's own SQLite storage, where ``--storage`` names no other."""
        return self.path / "study.db"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.database.resolve()}"

    def trial(self, name: str) -> RunDirectory:
        """The run of the trial Optuna records under ``name`` (:func:`trial_name`)."""
        return RunDirectory(self.path / name)

    def holds_study(self) -> bool:
        """Whether seq tune has written this study's results here (what ``seq plot`` draws)."""
        return self.path.is_dir() and self.trials.is_file()

    def create(self) -> None:
        """Create the folder and prove a file can be written there, as a run's folder is."""
        RunDirectory(self.path).create()

    def read(self) -> tuple[list[dict], str, str]:
        """The trials (``trial`` an int, ``value`` a float or None), objective and direction, from trials.csv
        and study.json, checked to be what seq tune writes."""
        for path in (self.trials, self.description):
            if not path.is_file():
                raise StudyFolderError(
                    f"{self.path} is not a study folder: it has no {path.name}",
                    hint=f"give the --output folder of 'seq tune' ({REWRITE_HINT})",
                )
        try:
            study = read_json(self.description, DESCRIPTION_KIND)
            rows = read_csv(self.trials, TRIALS_KIND, TRIALS_COLUMNS)
        except RecordError as error:
            raise StudyFolderError(error.message, hint=REWRITE_HINT) from None
        objective = study.get("objective") if isinstance(study, dict) else None
        direction = study.get("direction") if isinstance(study, dict) else None
        if not isinstance(objective, str) or len(objective) > MAX_OBJECTIVE or direction not in DIRECTIONS:
            raise StudyFolderError(
                f"{self.description} is not {DESCRIPTION_KIND}: it needs an 'objective' (a metric's name) and a "
                "'direction' (minimize or maximize)",
                hint=REWRITE_HINT,
            )
        return rows, objective, direction
