"""What an event tells the owner: the message it deserves (most deserve none) and what
a failure says in the heartbeat's "/fail" ping.  Pure: ``notify`` sends them, and the
daemon's reminders (``reminders``) make their own messages without loading a channel.
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Any

# Events that make the next ping a "/fail": a step of the backup failed, a photo has no
# good copy left, a drill could not restore, the catalog cannot be trusted.  (A copy
# that went bad and was repaired, or a drive that went away, is not one.)
FAILURES = frozenset({"job_failed", "ingest_failed", "device_import_failed", "state_dir_full",
                      "asset_lost", "drill_failed", "catalog_untrusted"})  # fmt: skip


@dataclass(frozen=True)
class Message:
    # What the rate limit counts: "failure", "damage", "drill", "import", ...  Kinds that
    # ask different things of the owner are kept apart: one must never mute another.
    kind: str
    title: str
    body: str
    urgent: bool = False


@dataclass(frozen=True)
class Ping:
    """One heartbeat: "all is well" when ``problems`` is empty, else the "/fail" form
    with them (one a line) as its body."""

    problems: tuple[str, ...] = ()


def fail_url(url: str) -> str:
    """The "/fail" form of a heartbeat URL (healthchecks.io's; a query stays after it)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def _plain(value: object) -> str:
    """A value from an event (a file or phone name, an error) as one line of text: a
    control character (a newline in a file name) would forge lines of its own."""
    text = str(value)
    if text.isprintable():  # (no control character: most values, and every event pays
        return text  # for this, a file's three events each, as it is logged)
    return "".join("?" if unicodedata.category(c) == "Cc" else c for c in text)


def failure(event: dict[str, Any]) -> str | None:
    """What a failure event says for the "/fail" ping, or None for any other event."""
    name = str(event.get("event", ""))
    if name not in FAILURES:
        return None
    what = [_plain(event[k]) for k in ("job", "source", "target", "device", "path") if event.get(k)]
    why = _plain(event.get("error") or event.get("reason") or event.get("found") or "")
    return f"{name} {' '.join(what)}: {why}".replace(" :", ":").strip(": ")


def message_for(event: dict[str, Any]) -> Message | None:
    """The message an event deserves, or None (most events deserve none)."""
    name = str(event.get("event", ""))
    path = _plain(event.get("path", ""))
    target = _plain(event.get("target", ""))
    device = _plain(event.get("device") or event.get("udid", ""))
    if name == "scrub_interrupted" and event.get("stopping"):
        return None  # (a read photod's own stop cut: no step of the backup failed)
    if name in ("job_failed", "ingest_failed", "device_import_failed", "scrub_interrupted"):
        why = event.get("error") or event.get("reason") or event.get("detail") or ""
        kind = "scrub" if name == "scrub_interrupted" else "failure"  # (one never mutes the other)
        return Message(kind, "photod: a backup step failed", f"{name}: {why}".strip(": "))
    if name == "catalog_untrusted":
        return Message("untrusted", "photod: backups stopped",
                       f"{event.get('found', '')}; {event.get('fix', '')}", True)  # fmt: skip
    if name == "catalog_recovered":
        return Message("catalog", "photod: the catalog was rebuilt from a target",
                       f"{event.get('found', '')}: rebuilt from '{target}' "
                       f"({event.get('assets', 0)} photos); nothing on any target changed")  # fmt: skip
    if name == "state_dir_full":
        return Message("full", "photod: no room left in the state dir",
                       f"{event.get('state_dir', '')} is full: new photos wait until there "
                       "is room (free some space, or move [daemon] state_dir)")  # fmt: skip
    if name == "asset_lost":
        return Message("lost", "photod: a photo has no good copy left",
                       f"{path}: every copy is damaged or gone; see `photod status`", True)  # fmt: skip
    if name in ("replica_corrupt", "replica_missing"):
        what = "damaged" if name == "replica_corrupt" else "missing"
        return Message("damage", "photod: a copy went bad",
                       f"the copy of {path} on '{target}' was {what}; photod repairs it "
                       "from a good copy (`photod logs --failures`)")  # fmt: skip
    if name == "source_corrupt":
        return Message("rot", "photod: a file in a watch folder changed on disk",
                       f"{path} in '{event.get('source', '')}' no longer has the bytes backed up "
                       "(bit rot?); restore it with `photod restore`")  # fmt: skip
    if name in ("file_unreadable", "folder_unreadable"):
        what = "file" if name == "file_unreadable" else "folder"
        why = _plain(event.get("error", ""))
        return Message("unreadable", f"photod: a {what} in a watch folder cannot be read",
                       f"{path} in '{_plain(event.get('source', ''))}': {why}; it is not "
                       "backed up until photod can read it")  # fmt: skip
    if name == "drill_failed":
        return Message("drill", "photod: a restore drill failed",
                       f"target '{target}': {'; '.join(event.get('problems', [])[:3])}")  # fmt: skip
    if name == "device_import_finished":
        return Message("import", f"photod: import from {device} finished",
                       f"{event.get('imported', 0)} new, {event.get('skipped_known', 0)} already "
                       f"backed up, {event.get('failed', 0)} failed")  # fmt: skip
    if name == "device_originals_in_icloud" and event.get("grew"):
        return Message("icloud", f"photod: {event.get('count', 0)} photos on {device} are only in iCloud",
                       "their originals are not on the phone, so photod cannot back them up: "
                       "Settings > Photos > Download and Keep Originals, then plug the phone "
                       "in again")  # fmt: skip
    if name == "device_untrusted":
        return Message("trust", f"photod: unlock {device} and tap Trust",
                       "the phone waits for you to trust this computer before photod can "
                       "import its photos")  # fmt: skip
    return None


TEST = Message("test", "photod: a test message",
               "If you read this, photod can reach you here.")  # fmt: skip
