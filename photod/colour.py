"""Colour for a person at a terminal, and nowhere else.

A word is coloured only when the text goes to a terminal and ``NO_COLOR`` is unset or
empty (https://no-color.org: any non-empty value turns colour off; ``TERM=dumb``
too).  A pipe, a file or a service manager's journal gets the same words, plain.
Red: something is wrong (UNAVAILABLE, FAIL, NOT PROTECTED, LOST, an error); yellow:
worth knowing (WARN, PAUSED, a warning); green: fine (OK, protected).
"""

from __future__ import annotations

import os
import sys
from typing import Any

RED, YELLOW, GREEN = "31", "33", "32"
_RESET = "\033[0m"


def enabled(tty: bool | None = None, stream: Any = None) -> bool:
    """Whether to colour: ``tty`` says whether the text goes to a terminal (None: ask
    ``stream``, standard output by default); ``NO_COLOR`` wins over both."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if tty is not None:
        return tty
    try:
        return bool((stream or sys.stdout).isatty())
    except (AttributeError, ValueError, OSError):  # closed, or no file behind it
        return False


def paint(text: str, colour: str, on: bool) -> str:
    """``text`` in ``colour`` when ``on``; as it is otherwise."""
    return f"\033[{colour}m{text}{_RESET}" if on and text else text


def padded(text: str, width: int, colour: str, on: bool) -> str:
    """``text`` coloured, then spaces to ``width``: the escapes do not count toward a
    column's width."""
    return paint(text, colour, on) + " " * max(0, width - len(text))
