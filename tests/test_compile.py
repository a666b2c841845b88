"""seqcli.compile: optimizer, loss, metric and schedule names resolved through Keras, with positions."""

from __future__ import annotations

import pytest

from seqcli.compile import choose_steps_per_execution, resolve_compile
from seqcli.errors import SpecError
from seqcli.specfile import spec_from_text
from tests.conftest import spec_text


def test_compile_names_resolve_through_keras():
    import keras

    spec = spec_from_text(
        spec_text(
            "compile:\n  optimizer: {Adam: {learning_rate: 0.001}}\n  loss: {SparseCategoricalCrossentropy: {}}\n"
            "  metrics: [accuracy, {SparseTopKCategoricalAccuracy: {k: 2}}, mae]\n"
        )
    )
    settings, problems = resolve_compile(spec, steps_per_epoch=10)
    assert problems == []
    assert isinstance(settings.optimizer, keras.optimizers.Adam)
    assert float(settings.optimizer.learning_rate) == pytest.approx(0.001)
    assert isinstance(settings.loss, keras.losses.SparseCategoricalCrossentropy)
    assert settings.metric_names == ["accuracy", "sparse_top_k_categorical_accuracy", "mae"]
    assert settings.log_names(validation=True)[-1] == "val_mae"
    assert settings.steps_per_execution == 10


@pytest.mark.parametrize(
    "optimizer, cls", [("adam", "Adam"), ("rmsprop", "RMSprop"), ("SGD", "SGD"), ("adamw", "AdamW")]
)
def test_optimizer_strings(optimizer, cls):
    spec = spec_from_text(spec_text(f"compile:\n  optimizer: {optimizer}\n  loss: mse\n"))
    settings, problems = resolve_compile(spec)
    assert problems == [] and type(settings.optimizer).__name__ == cls


def test_learning_rate_schedules_nest_or_come_from_train():
    import keras

    schedule = "{ExponentialDecay: {initial_learning_rate: 0.01, decay_steps: 10, decay_rate: 0.5}}"
    nested = spec_from_text(spec_text(f"compile:\n  optimizer: {{SGD: {{learning_rate: {schedule}}}}}\n  loss: mse\n"))
    from_train = spec_from_text(spec_text(f"compile:\n  loss: mse\ntrain:\n  learning_rate_schedule: {schedule}\n"))
    for spec in (nested, from_train):
        settings, problems = resolve_compile(spec)
        assert problems == []
        assert isinstance(settings.optimizer.learning_rate, keras.optimizers.schedules.ExponentialDecay) or isinstance(
            settings.optimizer._learning_rate, keras.optimizers.schedules.ExponentialDecay
        )


COMPILE_ERRORS = [
    (
        "compile:\n  optimizer: adm\n  loss: mse\n",
        "5:14: compile.optimizer: unknown optimizer 'adm'",
        "did you mean 'adam'?",
    ),
    (
        "compile:\n  optimizer: {Adam: {learning_rte: 0.1}}\n  loss: mse\n",
        "5:22: compile.optimizer.Adam.learning_rte: unknown argument for Adam",
        "did you mean 'learning_rate'?",
    ),
    (
        "compile:\n  optimizer: {Adam: {learning_rate: -1}}\n  loss: mse\n",
        "5:15: compile.optimizer.Adam: Keras rejected Adam: Argument `learning_rate` should be float",
        None,
    ),
    (
        "compile:\n  loss: sparse_categorical_crossentropyy\n",
        "5:9: compile.loss: unknown loss 'sparse_categorical_crossentropyy'",
        "did you mean 'sparse_categorical_crossentropy'?",
    ),
    (
        "compile:\n  loss: {MeanSquaredErr: {}}\n",
        "5:10: compile.loss.MeanSquaredErr: unknown loss class",
        "did you mean 'MeanSquaredError'?",
    ),
    (
        "compile:\n  loss: mse\n  metrics: [acuracy]\n",
        "6:13: compile.metrics[0]: unknown metric 'acuracy'",
        "did you mean 'accuracy'?",
    ),
    (
        "compile:\n  loss: mse\n  metrics: [{AUC: {curv: ROC}}]\n",
        "6:20: compile.metrics[0].AUC.curv: unknown argument",
        "did you mean 'curve'?",
    ),
    (
        "compile:\n  optimizer: {SGD: {learning_rate: 0.1}}\n  loss: mse\ntrain:\n  learning_rate_schedule: "
        "{CosineDecay: {initial_learning_rate: 0.1, decay_steps: 5}}\n",
        "8:27: train.learning_rate_schedule: train.learning_rate_schedule conflicts with SGD's learning_rate",
        None,
    ),
    ("compile:\n  optimizer: adam\n", "4:1: compile: compile.loss is missing", "name a Keras loss"),
]


@pytest.mark.parametrize("compile_yaml, where, hint", COMPILE_ERRORS)
def test_compile_problems_point_into_the_spec(compile_yaml, where, hint):
    spec = spec_from_text(spec_text(compile_yaml), "spec.yaml")
    settings, problems = resolve_compile(spec)
    assert settings is None and len(problems) == 1
    text = SpecError(problems, spec.document.source).render()
    assert text.startswith(f"spec.yaml:{where}"), text
    if hint:
        assert f"hint: {hint}" in text


def test_all_compile_problems_at_once():
    spec = spec_from_text(spec_text("compile:\n  optimizer: adm\n  loss: msee\n  metrics: [acc, f1]\n"))
    _, problems = resolve_compile(spec)
    assert [p.path for p in problems] == ["compile.optimizer", "compile.loss", "compile.metrics[1]"]


@pytest.mark.parametrize(
    "setting, steps, every, expected",
    [
        ("auto", 23, None, 23),  # a short epoch: one execution
        ("auto", 90, None, 30),  # a divisor of the epoch near 32
        ("auto", 141, None, 47),  # the MNIST convnet's epoch: up to twice 32 rather than one fit an epoch
        ("auto", 134, None, 32),  # 2 * 67: no divisor within 16..64, so epoch by epoch
        ("auto", 1009, None, 32),  # no divisor near 32: 32, epoch by epoch
        ("auto", 90, 5, 5),  # never more than checkpoint_every, and dividing it
        ("auto", None, None, 32),
        (7, 23, None, 7),
    ],
)
def test_steps_per_execution_auto(setting, steps, every, expected):
    assert choose_steps_per_execution(setting, steps, every) == expected


def test_bad_optimizer_arguments_are_found_by_applying_the_optimizer():
    from seqcli.compile_checks import probe_optimizer

    spec = spec_from_text(spec_text("compile:\n  optimizer: {Adam: {beta_1: abc}}\n  loss: mse\n"), "spec.yaml")
    assert resolve_compile(spec)[1] == []  # Keras constructs it
    problems = probe_optimizer(spec)
    text = SpecError(problems, spec.document.source).render()
    assert text.startswith(
        "spec.yaml:5:15: compile.optimizer.Adam: Keras rejected Adam when applying it: Cast "
        "string to float is not supported. Received: beta_1='abc'"
    ), text
    assert probe_optimizer(spec_from_text(spec_text("compile:\n  optimizer: adam\n  loss: mse\n"))) == []
    assert probe_optimizer(spec_from_text(spec_text("compile:\n  optimizer: adm\n  loss: mse\n"))) == []
