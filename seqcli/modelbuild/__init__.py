"""Spec -> ``keras.Sequential``, with every layer problem attributed to its spec entry.

``build_model(spec, abstract=True)`` builds inside ``keras.StatelessScope(initialize_variables=False)``:
shapes and parameter counts are exact but no weight memory is allocated, so ``summary`` and
``check`` answer for a billion-parameter spec as fast as for a tiny one.

A pretrained base (a ``keras.applications`` model or ``Model: {path: ...}``, see
:mod:`seqcli.applications`) is made when the tensor reaching it is known, so its input shape is
the previous layer's output; abstract builds never download or read its weights. Once assembled,
the model takes ``transfer.weights`` (real builds only) and the ``freeze:`` section
(:func:`seqcli.trainable.apply_freeze`); rows keep the trainable state from before the freeze.

The package, a module a concern: ``result`` (BuiltModel, LayerRow), ``context`` (what one build shares),
``inputs`` (the model's input), ``layers`` (entries to Keras layers), ``bases`` (pretrained bases),
``trace`` (shape tracing and ``expect``), ``builder`` (one build, start to end), ``weighted`` (models with
weights, behind the memory budget). Callers import from ``seqcli.modelbuild``; look ``model_from_spec`` up here at
call time (tests stand in for it).
"""

from seqcli.modelbuild.builder import build_model
from seqcli.modelbuild.result import BuiltModel, LayerRow, Shape
from seqcli.modelbuild.weighted import check_spec_memory, model_from_spec

__all__ = ["BuiltModel", "LayerRow", "Shape", "build_model", "check_spec_memory", "model_from_spec"]
