"""The fit loop: Keras's ``fit`` over seq's epochs, with each epoch's bookkeeping between steps.

The remaining epochs run as one ``fit`` over :meth:`Datasets.train_epochs` when ``steps_per_execution``
divides an epoch (Keras's executions then never straddle two epochs, and no per-epoch pipeline is
rebuilt); otherwise one ``fit`` per epoch, the next epoch's dataset built in a helper thread. A resumed
partial epoch runs on its own first. Checkpoints are copied at once and written by a writer thread
while training goes on, in order; epoch-end checkpoints are taken at most every
``EPOCH_CHECKPOINT_SECONDS`` (signals, ``checkpoint_every`` and the last epoch always checkpoint).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.stages import stage
from seqcli.training.checkpoint import restamp, restore_metrics, snapshot, write_snapshot
from seqcli.training.events import Reporter, TrainResult
from seqcli.training.results import (
    TensorBoardWriter,
    final_results,
    preload_plotting,
    write_history,
    write_spec_copy,
)
from seqcli.training.rundir import RunDirectory
from seqcli.training.setup import TrainingSetup
from seqcli.training.signals import SignalGuard, TrainingInterrupted

EPOCH_CHECKPOINT_SECONDS = 2.0  # the most training a kill -9 can cost when epochs are shorter than this


class TrainingError(SeqError):
    """Training stopped on an error TensorFlow raised while running the model."""


class NonFiniteTraining(TrainingError):
    """The loss or the weights became NaN or infinite: training stopped, the last good checkpoint kept."""

    def __init__(self, found: str, position: str, checkpoint: Path, saved_at: str | None):
        kept = (
            f"the last good checkpoint, {checkpoint} ({saved_at}), is kept"
            if saved_at
            else "no checkpoint had been saved yet"
        )
        super().__init__(
            f"training stopped at {position}: the {found}; {kept}",
            hint="lower the learning rate (or clip gradients: clipnorm), check the data for extreme "
            "values, then train again",
        )


def interrupted(setup: TrainingSetup, signum: int) -> TrainingInterrupted:
    """The error that stops a run on ``signum``, after its checkpoint was saved."""
    checkpoint, name = setup.run.checkpoint, signal.Signals(signum).name
    return TrainingInterrupted(
        signum,
        f"{name}: training stopped at {setup.state.position()}; checkpoint saved to {checkpoint}",
        checkpoint,
        setup.run.path,
    )


class Trainer:
    """Trains a :class:`TrainingSetup` to its last epoch (or early stop, or signal) and writes the results."""

    def __init__(self, setup: TrainingSetup, reporter: Reporter, guard: SignalGuard, *, spec_label: str):
        self.setup = setup
        self.reporter = reporter
        self.guard = guard
        self.spec_label = spec_label  # the spec as the user named it, for the header and metrics.json
        self.started = time.perf_counter()
        self.elapsed_before = setup.state.elapsed if setup.resuming else 0.0
        self.background = _Background()
        self.last_checkpoint_time = -math.inf
        self.epoch_clock = time.perf_counter()
        self.fitted = False  # whether this process trained (a resumed run may have had no step left)
        self.stop_reason: str | None = None  # why the reporter stopped training (Reporter.stop_after_epoch)
        own_run = setup.out == setup.run  # not a non-chief worker's scratch folder
        self.board = TensorBoardWriter(setup.out.logs, setup.run.claim_log_files if own_run else None)
        self.board_rows: list[dict] = []  # epochs whose scalars wait for the next checkpoint's writes
        self.callback = _StepCallback(self, setup.spec.train.checkpoint_every)
        # Where the checkpoint on disk stands (None: none yet); a NaN stops training before the next one.
        self.saved_at: str | None = setup.state.position() if setup.resuming else None

    def train(self, *, replaces_run: bool = False) -> TrainResult:
        """Fit the remaining epochs, then write the results (after removing the run that was in the
        directory, when ``replaces_run``); see the module docstring."""
        setup, state = self.setup, self.setup.state
        if replaces_run:
            setup.out.remove_run()
        self._claim()
        state.finished = False
        write_spec_copy(setup.out.spec, setup.spec, setup.seed, self.spec_label)
        self.reporter.run_started(setup.header(self.spec_label))
        self.guard.armed = True
        steps, execution = setup.data.steps_per_epoch, setup.settings.steps_per_execution
        try:
            with self.background:
                self.background.idle(preload_plotting)  # curves.png's imports (~1 s) off the training thread
                if state.step and state.epoch < state.epochs:
                    self._fit(setup.data.train_for_epoch(state.epoch, state.step), state.epoch, state.epoch + 1)
                if steps % execution == 0:
                    if state.epoch < state.epochs and not state.stopped_early:
                        self._fit(
                            setup.data.train_epochs(state.epoch, state.epochs),
                            state.epoch,
                            state.epochs,
                            steps_per_epoch=steps,
                        )
                else:
                    self._fit_epoch_by_epoch()
        finally:
            self.board.close()
        if state.stopped_early:
            reason = self.stop_reason
            if reason is None:
                assert setup.early_stopping is not None, "training stops early on request or by its early stopper"
                reason = setup.early_stopping.message(state.epoch)
            self.reporter.note(reason)
        return self._finish()

    def _fit_epoch_by_epoch(self) -> None:
        state, data = self.setup.state, self.setup.data
        upcoming = self.background.dataset(data.train_for_epoch, state.epoch, 0)
        while state.epoch < state.epochs and not state.stopped_early:
            epoch, dataset = state.epoch, upcoming.result()
            if epoch + 1 < state.epochs:
                upcoming = self.background.dataset(data.train_for_epoch, epoch + 1, 0)
            self._fit(dataset, epoch, epoch + 1)

    def _fit(self, dataset, first: int, stop: int, steps_per_epoch: int | None = None) -> None:
        """``model.fit`` over epochs ``first`` .. ``stop - 1``; the callback does each epoch's bookkeeping."""
        model = self.setup.model
        self.fitted = True
        try:
            with _keep_ema_weights(model.optimizer, partial=stop < self.setup.state.epochs), stage("training: fit"):
                model.fit(
                    dataset,
                    validation_data=self.setup.data.validation,
                    class_weight=self.setup.class_weight,
                    epochs=stop,
                    initial_epoch=first,
                    steps_per_epoch=steps_per_epoch,
                    callbacks=[self.callback.keras_callback],
                    shuffle=False,
                    verbose=0,
                )
        except _StopRequested:
            raise interrupted(self.setup, self.guard.received or signal.SIGINT) from None
        except Exception as error:
            _raise_training_error(error)

    # -- called by the callback, inside fit

    def epoch_started(self, epoch: int) -> None:
        setup = self.setup
        self.reporter.epoch_started(epoch, setup.state.epochs, setup.data.steps_per_epoch, setup.state.step)

    def steps_done(self, done: int, logs: dict) -> None:
        """After an execution: live progress; stop on a signal (with a checkpoint)."""
        self.setup.state.step = done
        self._check_finite(logs, weights=False)
        if self.reporter.wants_step_logs:
            self.reporter.steps_done(done, {k: float(v) for k, v in (logs or {}).items()})
        if self.guard.stop_requested and done < self.setup.data.steps_per_epoch:
            self.save_checkpoint()
            raise _StopRequested()

    def epoch_finished(self, epoch: int, logs: dict) -> None:
        """After an epoch's validation: history, early stopping, checkpoint, display; stop on a signal."""
        setup, state, stopper = self.setup, self.setup.state, self.setup.early_stopping
        state.step = setup.data.steps_per_epoch
        self._check_finite(logs, weights=True)
        seconds, self.epoch_clock = time.perf_counter() - self.epoch_clock, time.perf_counter()
        order = setup.settings.log_names(validation=True)
        values = {name: float(value) for name, value in (logs or {}).items()}
        ordered = sorted(values, key=lambda name: order.index(name) if name in order else len(order))
        row = {"epoch": epoch + 1, **{name: values[name] for name in ordered}, "seconds": round(seconds, 4)}
        stop = stopper.update(row, setup.model) if stopper else False  # the compiled metrics are built by now
        requested = self.reporter.stop_after_epoch(row)
        if requested:
            stop, self.stop_reason = True, requested
        state.history.append(row)
        state.epoch, state.step = epoch + 1, 0
        state.early_stopping = stopper.as_dict() if stopper else None
        state.stopped_early = bool(stop)
        last = stop or state.epoch >= state.epochs or self.guard.stop_requested
        self._save_epoch(row, force=last)
        self.reporter.epoch_finished(row)
        if self.guard.stop_requested:
            raise _StopRequested()
        if stop:
            setup.model.stop_training = True

    def save_checkpoint(self) -> None:
        """Copy the state now; the file is written in the background (atomically, in order)."""
        self.setup.state.elapsed = self._elapsed()
        self.last_checkpoint_time = time.perf_counter()
        self.saved_at = self.setup.state.position()
        self.background.write(write_last, self.setup.out, snapshot(self.setup.model, self.setup.state))

    def _save_epoch(self, row: dict, *, force: bool) -> None:
        """Checkpoint, history and TensorBoard scalars at an epoch's end, unless the last checkpoint is under
        EPOCH_CHECKPOINT_SECONDS old (epochs of a fraction of a second would spend ~10% on them)."""
        setup, stopper = self.setup, self.setup.early_stopping
        self.board_rows.append(row)
        if force or time.perf_counter() - self.last_checkpoint_time >= EPOCH_CHECKPOINT_SECONDS:
            self.save_checkpoint()
            self.background.write(write_history, setup.out.history, list(setup.state.history))
            # TensorBoard's scalars on the same cadence: written every epoch they cost ~20% of a 0.1 s epoch
            self.background.write(self.board.write_rows, self.board_rows)
            self.board_rows = []
        if stopper and stopper.restore_best and stopper.best_epoch == row["epoch"]:
            self.background.write(write_snapshot, setup.out.best, snapshot(setup.model, setup.state, groups=("model",)))

    def _check_finite(self, logs: dict | None, *, weights: bool) -> None:
        """Stop (NonFiniteTraining) when the loss, or with ``weights`` a weight, is NaN or infinite, before
        any checkpoint of this state is taken."""
        found = first_nonfinite(logs, self.setup.model if weights else None)
        if found:
            raise NonFiniteTraining(found, self.setup.state.position(), self.setup.run.checkpoint, self.saved_at)

    def _claim(self) -> None:
        if self.setup.out == self.setup.run:  # not on a non-chief worker's scratch folder
            self.setup.run.claim()

    # -- the end

    def _finish(self) -> TrainResult:
        """The result files first, the finished checkpoint last: a run is marked finished only once its
        model, metrics and history are on disk. The checkpoint keeps the last epoch's weights (training
        longer continues from them), whatever weights early stopping restores into the model."""
        setup, state = self.setup, self.setup.state
        state.finished = True
        state.elapsed = self._elapsed()
        finished = (
            snapshot(setup.model, state) if self.fitted or not setup.resuming else restamp(setup.run.checkpoint, state)
        )
        result = final_results(self.setup, self.reporter, self.spec_label)
        write_last(setup.out, finished)
        return result

    def rewrite_results(self) -> TrainResult:
        """A finished run whose result files are gone: write them again from its (restored) checkpoint."""
        setup = self.setup
        self._claim()
        write_spec_copy(setup.out.spec, setup.spec, setup.seed, self.spec_label)
        result = final_results(self.setup, self.reporter, self.spec_label)
        result.already_complete = True
        self.reporter.note(
            f"{setup.run.path} had finished but lacked some of its files; wrote them again from {setup.run.checkpoint}"
        )
        return result

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


def write_last(out: RunDirectory, arrays: dict) -> None:
    """The run's last checkpoint, keeping the one it replaces as the previous."""
    write_snapshot(out.checkpoint, arrays, out.previous)


class _Background:
    """Two helper threads: one builds the next epoch's dataset while the current one trains, one writes
    checkpoints, history and logs in order. A write that failed raises at the next write or on exit."""

    def __init__(self):
        self.data = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq-data")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq-writer")
        self.pending: list = []

    def dataset(self, build, epoch: int, skip: int):
        return self.data.submit(build, epoch, skip)

    def idle(self, function) -> None:
        """Run ``function`` on the data thread, after the datasets asked for so far; its errors are ignored."""
        self.data.submit(function)

    def write(self, function, *args) -> None:
        self._raise_failures()
        self.pending.append(self.writer.submit(function, *args))

    def flush(self) -> None:
        for future in self.pending:
            future.result()
        self.pending.clear()

    def _raise_failures(self) -> None:
        done = [future for future in self.pending if future.done()]
        self.pending = [future for future in self.pending if not future.done()]
        for future in done:
            future.result()

    def __enter__(self) -> _Background:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.flush()  # a checkpoint asked for (by a signal too) is on disk before seq exits
        finally:
            self.data.shutdown(wait=False, cancel_futures=True)
            self.writer.shutdown(wait=True)


class _StopRequested(Exception):
    """Raised from a Keras callback to leave ``fit`` at once after a signal's checkpoint."""


class _StepCallback:
    """Keras's callback hooks turned into the trainer's: each epoch's start and end, and every execution's
    end (Keras calls batch hooks once per ``steps_per_execution`` steps). It keeps the step count inside
    the epoch and the in-epoch checkpoint schedule (``train.checkpoint_every``)."""

    def __init__(self, trainer: Trainer, every: int | None):
        from seqcli.keras_env import import_keras

        self.trainer = trainer
        self.every = every
        self.keras_callback = import_keras().callbacks.LambdaCallback(
            on_epoch_begin=self._on_epoch_begin, on_train_batch_end=self._on_batch_end, on_epoch_end=self._on_epoch_end
        )
        setup = trainer.setup
        self.steps_per_epoch = setup.data.steps_per_epoch
        self.restore_metrics_from: Path | None = setup.run.checkpoint if setup.resuming and setup.state.step else None

    def _on_epoch_begin(self, epoch, logs=None) -> None:
        setup = self.trainer.setup
        self.skip = setup.state.step  # a resumed epoch's dataset starts after the steps already taken
        self.trainer.epoch_started(epoch)
        self.last_checkpoint = self.skip
        if self.restore_metrics_from is not None:
            if not restore_metrics(self.restore_metrics_from, setup.model, setup.strategy):
                self.trainer.reporter.note("this epoch's training metrics cover the steps after the resume only")
            self.restore_metrics_from = None

    def _on_batch_end(self, batch, logs=None) -> None:
        # Keras passes the index of the execution's last step in this epoch's dataset. (The optimizer's
        # step counter is no measure: under mixed_float16 a step with non-finite gradients is skipped.)
        done = self.skip + batch + 1
        self.trainer.steps_done(done, logs)
        if self.every and done - self.last_checkpoint >= self.every and done < self.steps_per_epoch:
            self.trainer.save_checkpoint()
            self.last_checkpoint = done

    def _on_epoch_end(self, epoch, logs=None) -> None:
        self.trainer.epoch_finished(epoch, logs)


@contextlib.contextmanager
def _keep_ema_weights(optimizer, *, partial: bool):
    """``fit`` ends by copying an EMA optimizer's averages into the weights; after a partial epoch
    training goes on, so that copy must wait for the real end."""
    if not (partial and getattr(optimizer, "use_ema", False)):
        yield
        return
    optimizer.finalize_variable_values = lambda variables: None
    try:
        yield
    finally:
        del optimizer.finalize_variable_values


def first_nonfinite(logs: dict | None, model=None) -> str | None:
    """The first NaN or infinite loss in ``logs`` (or weight of ``model``), in words; None when all are finite."""
    for name, value in (logs or {}).items():
        if name in ("loss", "val_loss") and not math.isfinite(float(value)):
            return f"{name} became {float(value)}"
    for weight in model.weights[:10_000] if model is not None else ():
        if weight.dtype.startswith("float") and not _all_finite(weight):
            return f"weight {weight.path} became non-finite"
    return None


def _all_finite(variable) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(variable)).all())


def _raise_training_error(error: Exception):
    """TensorFlow's runtime errors (bad labels, NaN checks, out of memory) as a SeqError; anything else as is."""
    from seqcli.data.streams import take_failure
    from seqcli.keras_env import import_tensorflow

    tf = import_tensorflow()

    failure = take_failure(error)
    if failure is not None and isinstance(error, tf.errors.OpError):  # a streamed source's, inside the pipeline
        raise failure from None
    if isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.ResourceExhaustedError)):
        text = str(error).strip().splitlines()
        message = next((line for line in reversed(text) if line.strip() and not line.startswith("\t")), str(error))
        raise TrainingError(
            f"training failed: {message.strip()}",
            hint="check that the labels fit the model's output and loss (e.g. labels 0..N-1 for N output units)",
        ) from error
    raise error
