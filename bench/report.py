"""One line per headline figure, which `bench/all` gathers into one table:

    RESULT {"bench": "scale", "what": "reconcile 100,000 unchanged files", ...}

Every benchmark prints its own readable report too; these lines are for the table."""

from __future__ import annotations

import json


def result(
    bench: str,
    what: str,
    photod: float,
    other: float | None,
    tool: str,
    unit: str = "s",
    goal: str = "",
    met: bool | None = None,
    floor: float | None = None,
    floor_tool: str = "",
) -> None:
    """``photod`` and ``other`` (the tool a person would otherwise run) in ``unit``;
    the ratio is photod / other.  ``floor``: what the hardware allows for the same
    work, in ``unit``, measured by ``floor_tool`` (``bench/floors.py``)."""
    # No ratio against nothing (an idle tool's 0 % of a core, say).
    ratio = photod / other if other is not None and abs(other) > 1e-9 else None
    print("RESULT " + json.dumps({
        "bench": bench, "what": what, "photod": round(photod, 4),
        "other": None if other is None else round(other, 4), "tool": tool, "unit": unit,
        "ratio": None if ratio is None else round(ratio, 3), "goal": goal, "met": met,
        "floor": None if floor is None else round(floor, 4), "floor_tool": floor_tool,
    }), flush=True)  # fmt: skip
