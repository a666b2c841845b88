"""``seq init``: commented starter specs that pass ``seq check`` and train on a named Keras dataset.

Templates live in ``seqcli/templates/KIND.yaml`` (``{name}`` and ``{file}`` are filled in, ``{{``/``}}`` are
literal braces). Each starts with the yaml-language-server modeline that points editors at the schema.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seqcli.errors import SeqError
from seqcli.specfile.dump import dump_scalar
from seqcli.specfile.validate import as_identifier

KINDS = ("mlp", "cnn", "transfer")


class StarterError(SeqError):
    """A starter spec that cannot be written where asked."""


@dataclass
class Starter:
    kind: str
    path: Path
    name: str


def starter_text(kind: str, path: str | Path) -> str:
    """The starter spec of ``kind`` as it would be written to ``path``."""
    if kind not in KINDS:
        raise StarterError(f"unknown starter {kind!r}", hint=f"choose one of: {', '.join(KINDS)}")
    if not str(path).isprintable():  # it is written into the spec's comments
        raise StarterError(
            "the file name holds a line break or another character that is not printable",
            hint="choose a file name of printable characters, such as model.yaml",
        )
    template = resources.files("seqcli").joinpath(f"templates/{kind}.yaml").read_text(encoding="utf-8")
    return template.format(name=dump_scalar(model_name(path)), file=shlex.quote(str(path)))


def model_name(path: str | Path) -> str:
    """A Keras model name from the file name: ``my-model.yaml`` -> ``my_model``."""
    return as_identifier(Path(path).name.split(".")[0])


def write_starter(kind: str, path: str | Path, *, force: bool = False) -> Starter:
    """Write the starter spec; an existing file is kept unless ``force``."""
    from seqcli.files import write_text_atomic
    from seqcli.outputs import claim_output

    path = Path(path)
    text = starter_text(kind, path)
    if path.is_dir():
        raise StarterError(f"{path} is a directory", hint="give a file name such as model.yaml")
    if path.exists() and not force:
        raise StarterError(f"{path} already exists", hint="pass --force to replace it, or choose another file name")
    with claim_output(path, "seq init", folder=False, overwrite=force):
        write_text_atomic(path, text)
    return Starter(kind, path, model_name(path))
