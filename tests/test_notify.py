"""Which events become a message, and how often one goes out."""

from __future__ import annotations

from typing import Any

import pytest

from photod.config import NotifyConfig
from photod.notify import Message, Notifier, message_for


@pytest.mark.parametrize(
    ("event", "kind", "title", "in_body"),
    [
        ({"event": "job_failed", "error": "disk I/O error"}, "failure",
         "photod: a backup step failed", "disk I/O error"),
        ({"event": "device_import_failed", "device": "Anna's iPhone", "detail": "stalled"},
         "failure", "photod: a backup step failed", "stalled"),
        ({"event": "asset_lost", "path": "2024/IMG_1.HEIC"}, "lost",
         "photod: a photo has no good copy left", "2024/IMG_1.HEIC"),
        ({"event": "replica_missing", "path": "a.jpg", "target": "t7"}, "damage",
         "photod: a copy went bad", "on 't7' was missing"),
        ({"event": "source_corrupt", "path": "a.jpg", "source": "inbox"}, "damage",
         "photod: a file in a watch folder changed on disk", "'inbox'"),
        ({"event": "drill_failed", "target": "b2", "problems": ["x.jpg: bytes do not match"]},
         "damage", "photod: a restore drill failed", "x.jpg"),
        ({"event": "device_import_finished", "device": "Anna's iPhone", "imported": 12,
          "skipped_known": 300, "failed": 0}, "import",
         "photod: import from Anna's iPhone finished", "12 new, 300 already backed up"),
        ({"event": "device_untrusted", "device": "Anna's iPhone"}, "trust",
         "photod: unlock Anna's iPhone and tap Trust", "trust this computer"),
    ],
)  # fmt: skip
def test_events_that_deserve_a_message(
    event: dict[str, Any], kind: str, title: str, in_body: str
) -> None:
    """Failures, damage, lost photos, finished imports and a phone waiting for Trust
    each become one message with a title a person understands."""
    m = message_for(event)
    assert m is not None
    assert (kind, title) == (m.kind, m.title)
    assert in_body in m.body
    assert m.urgent == (kind == "lost")


@pytest.mark.parametrize(
    "name", ["replica_written", "asset_protected", "scan_finished", "replica_checked",
             "notify_failed", "notification_sent", "device_attached"],
)  # fmt: skip
def test_routine_events_stay_in_the_log(name: str) -> None:
    """Everything else is only in `photod logs` (and a failure to notify never
    notifies about itself)."""
    assert message_for({"event": name}) is None


def test_each_kind_goes_out_at_most_once_per_every() -> None:
    """A second message of the same kind within `every` is dropped; other kinds pass."""
    n = Notifier(NotifyConfig(desktop=False, every=3600))
    n.send(Message("damage", "t", "b"))
    n.send(Message("damage", "t", "b2"))
    n.send(Message("import", "t", "b"))
    queued = []
    while not n.q.empty():
        queued.append(n.q.get_nowait())
    assert [("damage", "b"), ("import", "b")] == [(m.kind, m.body) for m in queued]
