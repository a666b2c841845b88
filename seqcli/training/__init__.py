"""Training: ``train_spec`` turns a spec into a run directory, with exact resume and nothing lost.

- :mod:`~seqcli.training.events`: what a run is asked (TrainOptions), tells (Reporter) and produces.
- :mod:`~seqcli.training.engine`: ``train_spec``, from options to a finished run.
- :mod:`~seqcli.training.rundir`: the run directory's layout (RunDirectory), and RUN_OR_MODEL read as one.
- :mod:`~seqcli.training.resume`: fingerprints and file digests that decide whether a run may resume.
- :mod:`~seqcli.training.setup`: data, model, strategy and state, checked, as one TrainingSetup.
- :mod:`~seqcli.training.loop`: the fit loop (Trainer) and its Keras callback.
- :mod:`~seqcli.training.signals`: SIGINT/SIGTERM as a checkpoint and a clean stop.
- :mod:`~seqcli.training.early_stopping`, :mod:`~seqcli.training.results`, :mod:`~seqcli.training.checkpoint`.
"""

from seqcli.training.engine import train_spec
from seqcli.training.events import Reporter, RunHeader, TrainOptions, TrainResult
from seqcli.training.loop import TrainingError
from seqcli.training.rundir import RunDirectory, RunDirectoryError
from seqcli.training.signals import TrainingInterrupted

__all__ = [
    "Reporter",
    "RunDirectory",
    "RunDirectoryError",
    "RunHeader",
    "TrainOptions",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "train_spec",
]
