"""A support module of the tests (not a test file): tiny pretrained bases for the freezing, extraction and
transfer-learning tests (MobileNetV2 at 32x32, alpha 0.35, ~410k params) and the specs that stack them.

"Pretrained" here means weights saved to a local file by hand-written Keras, exactly as a user would
save a base they trained or downloaded; no network is ever used.
"""

from pathlib import Path

import numpy as np

TINY_MOBILENET = {"alpha": 0.35, "include_top": False, "pooling": "avg"}
TINY_SHAPE = (32, 32, 3)
BASE_NAME = "mobilenetv2_0.35_32"

# The guide's transfer-learning model: four Dense layers, the last one the head.
GUIDE_TRANSFER = (
    "name: guide_transfer\nlayers:\n  - Input: {shape: [784]}\n  - Dense: {units: 32, activation: relu}\n"
    "  - Dense: {units: 32, activation: relu}\n  - Dense: {units: 32, activation: relu}\n"
    "  - Dense: {units: 10}\n"
)
# The tiny base under a Dense head, without weights (add 'weights: FILE' with save_tiny_mobilenet_weights).
TINY_BASE = (
    "layers:\n  - Input: {shape: [32, 32, 3]}\n"
    "  - MobileNetV2: {alpha: 0.35, include_top: false, pooling: avg, weights: null}\n"
    "  - Dense: {units: 3}\n"
)


def keras():
    from seqcli.keras_env import import_keras

    return import_keras()


def tiny_mobilenet(seed: int = 0):
    """A hand-written keras.applications.MobileNetV2 with seeded random weights (moving stats too)."""
    keras_module = keras()
    keras_module.utils.set_random_seed(seed)
    model = keras_module.applications.MobileNetV2(weights=None, input_shape=TINY_SHAPE, **TINY_MOBILENET)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
        elif "moving_mean" in variable.path:
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
    return model


def save_tiny_mobilenet_weights(path: Path, seed: int = 0):
    """Save the base's weights as a user would (model.save_weights) and return the base."""
    model = tiny_mobilenet(seed)
    model.save_weights(path)
    return model


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *TINY_SHAPE), dtype=np.uint8)


def write_images(path: Path, count: int, classes: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed + 1)
    np.savez(path, x=images(count, seed), y=rng.integers(0, classes, count))
    return path
