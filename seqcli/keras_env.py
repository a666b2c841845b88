"""Import Keras quietly, once: TensorFlow's start-up chatter is not for our users."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

from seqcli.errors import SeqError


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2: TensorFlow's C++ logs at import ignore TF_CPP_MIN_LOG_LEVEL."""
    if os.environ.get("SEQ_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Return the ``keras`` module with TensorFlow's C++ and Python logging turned down."""
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        if keras.backend.backend() != "tensorflow":
            raise SeqError(f"Keras was already imported with the {keras.backend.backend()!r} backend",
                           hint="seq trains with TensorFlow: import seqcli before keras, or set "
                                "KERAS_BACKEND=tensorflow")
        if "tensorflow" in sys.modules:
            return keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # seq's engine is TensorFlow (tf.data, tf.distribute): a KERAS_BACKEND set for other work must not leak in.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    warnings.filterwarnings("ignore", message=r"Do not pass an `input_shape`", category=UserWarning)
    warnings.filterwarnings("ignore", module=r"keras\.src\..*", category=UserWarning)
    with _quiet_stderr():
        import absl.logging
        import keras
        import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return keras
