"""What every step of one build shares: the spec, Keras, whether the build is weightless, and the result the
steps add rows and problems to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seqcli.modelbuild.result import BuiltModel
from seqcli.specfile import Spec


@dataclass
class BuildContext:
    spec: Spec
    keras: Any
    abstract: bool
    result: BuiltModel
    adapted: dict = field(default_factory=dict)  # layer index -> learned state (seqcli.modelbuild.adapt)

    def problem(self, path, message: str, hint: str | None = None, *, key: bool = False) -> None:
        """Record a problem at a spec path; a build collects problems, it never raises them."""
        self.result.problems.append(self.spec.problem(path, message, hint, key=key))

    def note(self, path, message: str) -> None:
        """Record a note (what Keras warned of while making a layer) at a spec path."""
        self.result.notes.append(self.spec.problem(path, message, key=True))
