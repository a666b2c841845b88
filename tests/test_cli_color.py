"""--no-color and NO_COLOR (https://no-color.org): no color codes, whatever the terminal."""

from __future__ import annotations

import re

import pytest

from tests.conftest import seq_process

COLOR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[0-9;]+)m")


def seq(*args, **env) -> str:
    """seq's stdout in a process that believes it writes to a color terminal (NO_COLOR unset unless given)."""
    result = seq_process(*args, env={"NO_COLOR": None, "FORCE_COLOR": "1", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_colors_by_default_on_a_terminal():
    assert COLOR.search(seq("check", "specs/three_layers.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_no_color(how):
    output = (
        seq("--no-color", "check", "specs/three_layers.yaml")
        if how == "flag"
        else seq("check", "specs/three_layers.yaml", NO_COLOR="1")
    )
    assert "pass" in output and not COLOR.search(output)
