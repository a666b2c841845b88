"""The Optuna study behind ``seq tune``: storage, sampler and pruner from the ``tune:`` section, a trial
budget that concurrent workers never overshoot, and trials whose worker died given back to the study.

Budget: trials that are running, waiting, complete, pruned, or failed with an error count towards
``tune.trials``. A trial whose worker died (kill -9, a lost machine) or was interrupted is marked
FAIL without an error and re-enqueued with the same parameters and run directory, so it is trained
(resumed from its checkpoint) once more, not lost and not counted twice. A dead worker on this host
is noticed at once by its process id; one elsewhere when its heartbeat is ``GRACE_SECONDS`` old.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import threading
import warnings

from seqcli.errors import MissingDependency, SeqError, masked_url, url_password
from seqcli.outputs import process_alive
from seqcli.specfile import Spec
from seqcli.specfile.fingerprint import comparable, fingerprint, may_change_in_words
from seqcli.tune.folder import trial_name
from seqcli.tune.space import Parameter, direction_of, epochs_of, make_pruner, make_sampler, parameters_of

HOST = socket.gethostname()
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 30


class TuneError(SeqError):
    """A study that cannot be opened, joined or continued."""


def require_optuna():
    """Optuna, quiet; a TuneError that says what to install when it is missing."""
    try:
        import optuna
    except ImportError:
        raise MissingDependency(
            "seq tune needs Optuna, which is not installed",
            hint="pip install 'seqcli[tune]'  (or: pip install 'optuna>=4')",
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # seq records heartbeats itself (study.heartbeat) around each ask-and-tell trial.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return optuna


def _without_password(text: str, url: str) -> str:
    """``text`` (a driver's error) with the URL's password, if it has one, masked wherever it appears."""
    password = url_password(url)
    text = text.replace(url, masked_url(url))
    return text.replace(password, "***") if password else text


def make_storage(url: str):
    """An RDB storage with heartbeats; trials whose heartbeat went stale are re-enqueued (:func:`retry_trial`)."""
    optuna = require_optuna()
    accepted = inspect.signature(optuna.storages.RDBStorage).parameters
    callback = (
        "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in accepted else "failed_trial_callback"
    )  # Optuna 4 spells it failed_trial_callback
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            **{callback: retry_trial},
        )
    except Exception as error:  # SQLAlchemy's errors, a missing database driver, a malformed URL
        detail = _without_password(" ".join(str(error).split()), url)[:300]
        raise TuneError(
            f"cannot open the study storage {masked_url(url)}: {detail}",
            hint="give a database URL such as sqlite:///study.db or postgresql://user@host/db",
        ) from None


def spec_fingerprint(spec: Spec) -> str:
    """The spec and its search space, less what its sections declare a continued study may change
    (tune.trials)."""
    return fingerprint(comparable(spec.resolved(), "study"))


def open_study(spec: Spec, storage, *, resume: bool, sampler_seed: int):
    """Create the spec's study in ``storage``, or load it to continue; refuse one made from another spec."""
    optuna = require_optuna()
    section = spec.tune
    name = spec.display_name
    exists = name in optuna.study.get_all_study_names(storage)
    if resume and not exists:
        raise TuneError(f"nothing to resume: the storage holds no study {name!r}", hint="start without --resume")
    parameters = parameters_of(section)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction_of(spec),
        sampler=make_sampler(section, parameters, seed=sampler_seed),
        pruner=make_pruner(section, epochs=epochs_of(spec)),
        load_if_exists=True,
    )
    fingerprint = spec_fingerprint(spec)
    recorded = study.user_attrs.get("spec")
    if recorded is None:
        study.set_user_attr("spec", fingerprint)
        study.set_user_attr("objective", section.objective)
    elif recorded != fingerprint:
        raise TuneError(
            f"the study {name!r} was made from another spec or search space",
            hint=f"undo the change (only {may_change_in_words('study')} may change), "
            "or tune into another --output or --storage",
        )
    return study


# ----------------------------------------------------------------------------- the budget


def counts(trial) -> bool:
    """Whether a trial uses one of the study's ``tune.trials``."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return "error" in trial.user_attrs
    return True


def finished(trial) -> bool:
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "error" in trial.user_attrs
    )


def next_trial(study, parameters: list[Parameter], total: int):
    """A waiting (retried) trial, else a new one while the budget allows; None when the study is full."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    if not waiting and sum(map(counts, trials)) >= total:
        return None
    trial = study.ask({p.name: p.distribution() for p in parameters})
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", os.getpid())
    if "run" not in trial.user_attrs:
        trial.set_user_attr("run", trial_name(trial.number))
    if "retry_of" not in trial.user_attrs:
        # Another worker may have asked at the same time: the later of two over the budget steps back.
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and counts(t)]
        if len(before) >= total:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            return None
    return trial


def retry_trial(study, failed) -> None:
    """Enqueue a failed (killed, interrupted) trial again: same parameters, same run directory."""
    import optuna

    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=failed.params,
            distributions=failed.distributions,
            user_attrs={"run": failed.user_attrs.get("run", trial_name(failed.number)), "retry_of": failed.number},
        )
    )


def reclaim_trials(study) -> list[int]:
    """Fail and re-enqueue running trials whose worker is gone: on this host by process id, elsewhere by
    heartbeat. Returns the numbers of the trials given back."""
    import optuna
    from optuna.trial import TrialState

    given_back = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != HOST or not isinstance(pid, int) or _alive(pid):
            continue
        try:
            failed = study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker gave it back first
        retry_trial(study, failed)
        given_back.append(trial.number)
    optuna.storages.fail_stale_trials(study)
    return given_back


def _alive(pid: int) -> bool:
    return pid == os.getpid() or process_alive(pid)


@contextlib.contextmanager
def heartbeat(storage, trial):
    """Record the trial's heartbeat every HEARTBEAT_SECONDS while it trains."""
    stop = threading.Event()
    trial_id = trial._trial_id  # Optuna's ask-and-tell has no public id; its own optimize() uses this one

    def beat():
        while True:
            with contextlib.suppress(Exception):  # a missed beat is retried; a dead database shows elsewhere
                storage.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    thread = threading.Thread(target=beat, name="seq-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
