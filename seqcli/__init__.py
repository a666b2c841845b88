"""seq: a Keras Sequential model from a YAML spec.

The public API mirrors the CLI: ``load_spec`` reads and validates a spec, ``build_model`` turns it
into a ``keras.Sequential``. TensorFlow is imported only when a model is built.
"""

from seqcli.errors import Problem, SeqError, SpecError
from seqcli.specfile import Spec, load_spec, read_spec

__version__ = "0.1.0"


def build_model(spec, **kwargs):
    """Build a spec's model; see seqcli.modelbuild.build_model."""
    from seqcli.modelbuild import build_model as _build

    return _build(spec, **kwargs)


__all__ = ["Problem", "SeqError", "Spec", "SpecError", "build_model", "load_spec", "read_spec"]
