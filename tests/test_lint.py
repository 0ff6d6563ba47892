"""The house rules hold: ruff lint and format, mypy --strict on photod/, and the README
names every event the code logs and no other."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "cmd",
    [
        [sys.executable, "-m", "ruff", "check", "photod", "tests", "bench"],
        [sys.executable, "-m", "ruff", "format", "--check", "photod", "tests", "bench"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_passes(cmd: list[str]) -> None:
    """Each tool exits 0 on the tree (its output is the failure message)."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert 0 == result.returncode, result.stdout + result.stderr


# -- the README names what the code logs ------------------------------------------------

LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}

# Log calls whose event is built at run time, and every name each can give.
BUILT = {
    "photod/copies.py": {"replica_written", "replica_shared", "replica_repaired"},
    "photod/verify.py": {"replica_corrupt", "replica_missing"},
    "photod/phonerecords.py": {  # device_{state}: the DeviceProblem a session meets
        "device_untrusted", "device_locked", "device_pairing_denied", "device_refused",
        "device_disconnected", "device_stalled",
    },
}  # fmt: skip

# Names in backquotes in the README that look like events and are not: keys of
# `status --json` and of events, and SQLite's pragma.
NOT_EVENTS = {
    "catalog_problem", "corrupt_sources", "egress_used", "full_pass_days", "in_icloud",
    "last_drill", "last_scrub", "next_runs", "not_listed", "oldest_check_days", "taken_at",
    "waiting_for_mains", "copy_duration", "failed_runs", "quick_check", "lost_count",
}  # fmt: skip


def _is_log(func: ast.expr, aliases: set[str]) -> bool:
    """``log.info``, ``logging.getLogger(...).exception``, ``(log.info if x else
    log.warning)``, a name bound to one of them, or ``level``, a parameter that takes one."""
    if isinstance(func, ast.Attribute) and func.attr in LEVELS:
        owner = func.value
        return isinstance(owner, ast.Call) or (isinstance(owner, ast.Name) and owner.id == "log")
    if isinstance(func, ast.IfExp):
        return _is_log(func.body, aliases) and _is_log(func.orelse, aliases)
    return isinstance(func, ast.Name) and (func.id in aliases or func.id == "level")


def _names(arg: ast.expr) -> list[str] | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.IfExp):
        body, orelse = _names(arg.body), _names(arg.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def logged_events() -> dict[str, str]:
    """Every event photod/ can log, with where."""
    events: dict[str, str] = {}
    for path in sorted((ROOT / "photod").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        aliases = {
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and _is_log(n.value, set())
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Call) and n.args and _is_log(n.func, aliases)):
                continue
            names = _names(n.args[0])
            if names is None:
                assert where in BUILT, (
                    f"{where}:{n.lineno}: an event built at run time: list its names in BUILT"
                )
                names = sorted(BUILT[where])
            for name in names:
                events.setdefault(name, f"{where}:{n.lineno}")
    return events


def test_every_event_the_code_logs_is_in_the_readme() -> None:
    """Whoever greps the log or writes an alert rule finds each event in the README."""
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", readme))
    missing = {name: where for name, where in logged_events().items() if name not in named}
    assert not missing, f"logged, and not in the README: {missing}"


def test_every_event_the_readme_names_is_one_the_code_logs() -> None:
    """An event renamed or removed in the code is not left in the README, where alert
    rules and greps would wait for it for ever."""
    from photod import config

    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", readme))
    keys: set[str] = set()
    models = [config.Config]
    while models:
        model = models.pop()
        for key, field in model.model_fields.items():
            keys.add(key)
            models += [m for m in _models(field.annotation) if m not in models]
    places = set()
    for path in (ROOT / "photod").rglob("*.py"):
        places |= set(
            re.findall(r"failpoints\.(?:hit|armed)\(\"([a-z0-9_]+)\"\)", path.read_text())
        )
    unknown = named - set(logged_events()) - keys - places - NOT_EVENTS
    assert not unknown, f"named in the README, and no event, key or failpoint: {sorted(unknown)}"


def _models(annotation: object) -> list[type]:
    """The pydantic models an annotation holds (in a list, a union, Annotated)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


# -- the example config documents every key, with its default ---------------------------

EXAMPLE = ROOT / "etc" / "photod.example.toml"


def _example_keys() -> dict[str, set[str]]:
    """Each table of the example (``targets``, ``daemon``...) with the keys it shows,
    set or commented out (``# profile = "photos"``)."""
    keys: dict[str, set[str]] = {}
    table = ""
    for line in EXAMPLE.read_text().splitlines():
        if m := re.match(r"^\[\[?([a-z_]+)\]\]?", line):
            table = m.group(1)
        elif m := re.match(r"^#? ?([a-z_]+) *= ", line):
            keys.setdefault(table, set()).add(m.group(1))
    return keys


def test_the_example_config_shows_every_key_and_no_other() -> None:
    """`photod config example` is where the README sends whoever looks for a key."""
    from photod import config

    shown = _example_keys()
    tables: dict[str, list[type]] = {}
    for name, field in config.Config.model_fields.items():
        tables[name] = _models(field.annotation)
    for table, models in tables.items():
        if not models:
            continue  # (``path``: where the file was read from, not a key)
        known = {k for m in models for k in m.model_fields}
        missing, unknown = known - shown.get(table, set()), shown.get(table, set()) - known
        assert not missing, f"[{table}]: not in the example: {sorted(missing)}"
        assert not unknown, f"[{table}]: in the example, and no key: {sorted(unknown)}"


def test_the_example_config_gives_each_table_its_defaults() -> None:
    """A value the example sets in [schedule], [notify], [daemon], [ingest], [dashboard]
    or [policy] is the default photod uses when the key is left out."""
    import tomllib
    from datetime import UTC, datetime

    from photod import config, schedules

    example = tomllib.loads(EXAMPLE.read_text())
    now = datetime(2026, 12, 5, tzinfo=UTC)
    for table in ("policy", "schedule", "notify", "daemon", "dashboard", "ingest"):
        model = _models(config.Config.model_fields[table].annotation)[0]
        given, default = model.model_validate(example[table]), model()
        for key in example[table]:
            ours, theirs = getattr(given, key), getattr(default, key)
            if key in ("scrub", "drill"):  # a cron line: "sun" is 0
                ours, theirs = schedules.next_after(ours, now), schedules.next_after(theirs, now)
            assert ours == theirs, f"[{table}] {key}: the example says {ours!r}, photod {theirs!r}"
