"""Train a tiny model under make_strategy/prepare_model and save what came out, for test_distribute.py.

    python tests/distribute_worker.py OUT.npz '{"strategy": "mirrored", "virtual_cpus": 2}'

Every run starts from the same weights and sees the same data in the same order (both come from SEED),
with global batch BATCH, so runs under different strategies can be compared weight for weight. A
DistributeError is printed as ``error: ...`` on stderr with exit status 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = 7
SAMPLES = 480
BATCH = 16
EPOCHS = 4  # 4 x 30 = 120 optimizer steps
FEATURES = 6
CLASSES = 3


def make_data():
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    teacher = rng.normal(size=(FEATURES, CLASSES))
    y = np.argmax(x @ teacher + 0.5 * rng.normal(size=(SAMPLES, CLASSES)), axis=1).astype("int32")
    return x, y


def initial_weights(model):
    import numpy as np

    rng = np.random.default_rng(SEED + 1)
    return [rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()]


def train(config: dict) -> dict:
    import tensorflow  # noqa: F401  (imported first, so that the time below is the strategy's own)

    from seqcli.distribute import make_strategy, prepare_model

    started = time.monotonic()
    try:
        info = make_strategy(config)
    finally:  # how long making the strategy took (for a lone worker: the wait for its peers)
        print(f"strategy made in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    x, y = make_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(SAMPLES, seed=SEED).batch(BATCH)
    with info.strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(CLASSES, activation="softmax"),
            ]
        )
        model.set_weights(initial_weights(model))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        prepare_model(model, info)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0)
    loss, accuracy = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    predictions = model.predict(x[:40], batch_size=BATCH, verbose=0)
    result = {f"weight{i}": w for i, w in enumerate(model.get_weights())}
    result.update(
        loss=np.array(history.history["loss"]),
        accuracy=np.array(history.history["accuracy"]),
        evaluation=np.array([loss, accuracy]),
        predictions=predictions,
        steps=np.array(int(model.optimizer.iterations.numpy())),
        info=np.array(
            json.dumps(
                {
                    "kind": info.kind,
                    "devices": info.devices,
                    "replicas": info.replicas,
                    "workers": info.workers,
                    "worker_index": info.worker_index,
                    "is_chief": info.is_chief,
                    "describe": info.describe(BATCH),
                    "dropped_axes": getattr(info.strategy.reduce, "dropped_axes", None),
                }
            )
        ),
    )
    return result


def main(argv: list[str]) -> int:
    import numpy as np

    from seqcli.distribute import DistributeError

    out, config = Path(argv[1]), json.loads(argv[2])
    try:
        result = train(config)
    except DistributeError as error:
        print(error.render(), file=sys.stderr, flush=True)
        return 3
    np.savez(out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
