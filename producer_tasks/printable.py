"""Text from outside (a provider's error, a model's answer) made safe to store and show:
no control or format characters (an ESC sequence would drive the operator's terminal, a
bidi override would reorder what ``producer status`` prints), bounded length."""

from __future__ import annotations

import unicodedata

WHITESPACE = "\t\n\r\x0b\x0c"


def printable(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters of ``text``; whitespace controls become spaces, other
    control, format, surrogate and unassigned characters are dropped."""
    kept = []
    for char in text[: limit * 2]:
        if char in WHITESPACE:
            kept.append(" ")
        elif unicodedata.category(char)[0] != "C":
            kept.append(char)
    return "".join(kept)[:limit]


QUOTE_CHARS = 64


def quoted(text: str, limit: int = QUOTE_CHARS) -> str:
    """How a message quotes input it did not choose (a name, an answer): the ``repr`` of at
    most ``limit`` characters (control characters escaped), then how long the input was."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
