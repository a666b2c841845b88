"""``seq freeze``: a spec (with weights) or a ``.keras`` model in, the same model with layers frozen out.

The freezing rules (layer paths, globs, ``all_but_last``, BatchNormalization in inference mode) are
:mod:`seqcli.trainable`'s; model files go in and out through :mod:`seqcli.models`.
"""

from __future__ import annotations

from pathlib import Path

from seqcli.models import load_model_file, load_weights, save_model, saved_class_names
from seqcli.specfile import load_spec
from seqcli.specfile.sections import FreezeSection
from seqcli.trainable import FreezeError, FreezeReport, apply_freeze


def freeze_file(
    source: str | Path,
    output: str | Path,
    freeze: FreezeSection | dict,
    *,
    weights: str | Path | None = None,
    spec_overrides: list[str] | None = None,
    overwrite: bool = False,
) -> FreezeReport:
    """``seq freeze``: a spec (with ``weights``) or a ``.keras`` model in, the frozen ``.keras`` model out;
    an existing output is replaced only with ``overwrite``, and never when it is the source or the weights."""
    from seqcli.modelbuild import model_from_spec  # looked up at call time: tests stand in for it
    from seqcli.outputs import claim_output

    source, output = Path(source), Path(output)
    if output.suffix != ".keras":
        raise FreezeError(
            f"--output must be a .keras file; received {str(output)!r}",
            hint="a .keras file records which layers are frozen; weights files do not",
        )
    inputs = [path for path in (source, weights) if path is not None]
    with claim_output(output, "seq freeze", folder=False, inputs=inputs, overwrite=overwrite):
        class_names = None
        if source.suffix == ".keras":
            model = load_model_file(source)
            class_names = saved_class_names(source)
            if weights is not None:
                load_weights(model, weights)
        else:
            model = model_from_spec(load_spec(source, spec_overrides), weights=weights, what="freezing this model")
        report = apply_freeze(model, freeze)
        save_model(model, output, class_names=class_names)
    return report
