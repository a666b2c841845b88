"""``seq tune``: hyperparameter search over a spec with Optuna, each trial an ordinary seq run.

:mod:`seqcli.tune.space` (the ``tune:`` section and its checks, no Optuna), :mod:`seqcli.tune.study`
(storage, budget, retries), :mod:`seqcli.tune.runner` (workers and trials), :mod:`seqcli.tune.outputs` (the
results), :mod:`seqcli.tune.folder` (the study folder's layout, read back by ``seq plot``).
Optuna is imported only when a study runs.
"""
