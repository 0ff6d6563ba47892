"""Who this photod installation is, kept in the state dir beside the catalog.

``installation.json`` holds a random id (made once), the name (``[daemon] instance``,
the host name by default), and what the catalog was when its last snapshot went to the
targets (its generation and asset count).  It outlives the catalog: with it, a missing,
empty or older catalog is told from a new installation, even while every target is
unplugged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from photod.catalog import CATALOG_NAME, Catalog, no_catalog
from photod.durable import write_atomic
from photod.errors import CatalogDamaged
from photod.targets.records import Installation

FILE = "installation.json"


class Known(NamedTuple):
    """What the state dir says of this installation."""

    installation: Installation
    generation: int  # of the last snapshot written to a target
    assets: int  # in that snapshot


def load(state_dir: Path) -> Known | None:
    try:
        data = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
        inst = Installation(str(data["id"]), str(data["name"]))
        return Known(inst, int(data.get("generation", 0)), int(data.get("assets", 0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: treated as missing; the targets still know the name


def save(state_dir: Path, known: Known) -> None:
    """Write atomically, readable by the owner only (the id is not secret, the rest
    of the state dir is private)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "id": known.installation.id,
        "name": known.installation.name,
        "generation": known.generation,
        "assets": known.assets,
    }
    write_atomic(state_dir / FILE, json.dumps(data, indent=1).encode())


def new(name: str) -> Installation:
    import uuid  # loads platform: only where an installation is made

    return Installation(uuid.uuid4().hex, name)


# -- the catalog, as far as the state dir alone can tell --------------------------------

FIX = (
    "start photod with a target that holds this computer's records within reach: it "
    "rebuilds the catalog from there by itself; or run `photod catalog rebuild --from "
    "TARGET --force`"
)


class CatalogProblem(NamedTuple):
    found: str
    fix: str = FIX
    damaged: str = ""  # what SQLite said, when the file itself is damaged


def check_catalog(state_dir: Path, thorough: bool = False) -> CatalogProblem | None:
    """Why the catalog in the state dir cannot be trusted, from the state dir alone
    (the daemon also asks the targets): missing, empty or older than its last snapshot,
    or damaged.  ``thorough``: SQLite's quick_check of every page (seconds on a large
    catalog; `photod doctor`), else only what opening and a count find."""
    db = state_dir / CATALOG_NAME
    known = load(state_dir)
    if no_catalog(db):  # (never opened: SQLite would make a new, empty one in a 0-byte file)
        if db.exists():
            return CatalogProblem(f"the catalog {db} is a file of 0 bytes (cut by a disk's "
                                  "repair?)")  # fmt: skip
        if known is not None and (known.assets or known.generation):
            return CatalogProblem(f"the catalog {db} is missing")
        return None
    try:
        catalog = Catalog(db)
    except CatalogDamaged as exc:
        return CatalogProblem(f"the catalog {db} is damaged ({exc.detail})", damaged=exc.detail)
    try:
        why = catalog.sound() if thorough else ""
        if why:
            return CatalogProblem(f"the catalog {db} is damaged ({why})", damaged=why)
        if known is not None and known.assets and catalog.empty():
            return CatalogProblem(
                f"the catalog {db} is empty, but its last snapshot held {known.assets} photos"
            )
        if known is not None and catalog.generation < known.generation:
            return CatalogProblem(
                f"the catalog {db} is older than its last snapshot (generation "
                f"{catalog.generation}, snapshot {known.generation})"
            )
    except CatalogDamaged as exc:
        return CatalogProblem(f"the catalog {db} is damaged ({exc.detail})", damaged=exc.detail)
    finally:
        catalog.close()
    return None
