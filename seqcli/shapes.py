"""Shapes as plain text, for messages and tables: ``(None, 28, 28, 1)``, ``(10,)``, ``?`` when unknown.

Plain strings only (no rich), so the core can word its errors without loading the terminal stack."""

from __future__ import annotations


def shape_text(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
