"""The one door for text seq did not write itself on its way to a terminal, a log, a CI report or a figure.

Names from specs and models, paths, file names, exception text from Keras, TensorFlow, Optuna or the OS
pass :func:`shown` before any output: control characters (an escape sequence that would drive the
terminal, a NUL, a carriage return that would overwrite a line), lone surrogates (which no encoder
writes) and the invisible marks that reorder text are shown as U+FFFD, one column wide, so a caret under
a source line stays aligned; and the text is bounded. Rich gets such text only as literal ``Text`` (see
``render.literal``) or through consoles that parse no markup, so ``[bold red]`` in a name is shown as
typed. A leaf: it imports nothing of seq, nor rich.
"""

from __future__ import annotations

import unicodedata

REPLACEMENT = "\ufffd"
VALUE_LIMIT = 1000  # characters of one value (a name, a path) shown; longer ones keep their start and end
NAME_LIMIT = 200  # characters a layer name may have in a spec: a table cell, a log line, a figure's box

# Bidirectional controls (they reorder what follows them: "Trojan source"), line/paragraph separators, and
# the two noncharacters an XML report may not hold.
_INVISIBLE = {0x2028, 0x2029, 0xFFFE, 0xFFFF, *range(0x200E, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_CONTROLS = {*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000), *_INVISIBLE}
_ONE_LINE = {code: REPLACEMENT for code in _CONTROLS}
_LINES = {code: REPLACEMENT for code in _CONTROLS - {ord("\n"), ord("\t")}}


def shown(value: object, *, limit: int | None = VALUE_LIMIT, lines: bool = False) -> str:
    """``value`` as text that may go anywhere seq writes for people: every character that would act on a
    terminal or cannot be encoded is U+FFFD, and text over ``limit`` characters keeps its start and its
    end around " … ". With ``lines``, line breaks and tabs stay (a message of several lines); otherwise
    they are shown too, and the text is one line."""
    text = value if isinstance(value, str) else str(value)
    text = text.translate(_LINES if lines else _ONE_LINE)
    if limit is None or len(text) <= limit:
        return text
    head = (limit - 3) // 2
    return f"{text[:head]} … {text[len(text) - (limit - 3 - head) :]}"


def unshowable(text: str) -> str | None:
    """What in ``text`` seq could only show replaced, in words (``'the character U+001B'``), or None when
    every character shows as itself: used to refuse names before they are built into a model."""
    for character in text:
        if ord(character) in _CONTROLS:
            name = unicodedata.name(character, "") if not 0xD800 <= ord(character) < 0xE000 else "lone surrogate"
            return f"the character U+{ord(character):04X}" + (f" ({name})" if name else "")
    return None


def figure_text(value: object, *, limit: int | None = VALUE_LIMIT) -> str:
    """:func:`shown` for matplotlib, which reads text between dollar signs as mathematics (an unpaired one
    fails the whole figure): every dollar sign escaped, so the text is drawn as typed."""
    return shown(value, limit=limit).replace("$", r"\$")
