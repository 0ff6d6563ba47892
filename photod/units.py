"""Sizes and durations as a person writes them in the config or on the command line
('100MiB', '2GB', '15m', '7d'), read without loading the config's schema."""

from __future__ import annotations

import re
from typing import Any

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: Any) -> int:
    """'1GiB', '500 MB', 1024 -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if isinstance(value, str)
        else None
    )
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(
            f"is {value!r}; allowed: a byte count or a size like '100MiB', '2GB', '1TiB'"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(value: Any) -> float:
    """'2s', '15m', '1h', 30 -> seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return _bounded(value, float(value))
    m = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value))
        if isinstance(value, str)
        else None
    )
    if not m or (m.group(2) or "s") not in _SECONDS:
        raise ValueError(
            f"is {value!r}; allowed: seconds or a duration like '500ms', '2s', '15m', '1h', '7d'"
        )
    return _bounded(value, float(m.group(1)) * _SECONDS[m.group(2) or "s"])


MAX_DURATION = 3650 * 86400.0  # ten years: "never" is said otherwise (0, or no key)


def _bounded(value: Any, seconds: float) -> float:
    """A duration the clocks and the scheduler can add to now (`inf`, a TOML float,
    or millions of years made their intervals overflow)."""
    if not seconds <= MAX_DURATION:
        raise ValueError(f"is {value!r}; allowed: a duration up to 3650d")
    return seconds
