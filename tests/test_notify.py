"""Which events become a message, and how often one goes out; the heartbeat's pings
to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from photod.alerts import Message, Ping, fail_url, failure, message_for
from photod.clock import ManualClock
from photod.config import NotifyConfig
from photod.notify import Notifier, load_left, save_left
from tests.conftest import wait_for
from tests.servers import Pinger, Webhook, free_port


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
        ({"event": "source_corrupt", "path": "a.jpg", "source": "inbox"}, "rot",
         "photod: a file in a watch folder changed on disk", "'inbox'"),
        ({"event": "drill_failed", "target": "b2", "problems": ["x.jpg: bytes do not match"]},
         "drill", "photod: a restore drill failed", "x.jpg"),
        ({"event": "file_unreadable", "source": "inbox", "path": "a.jpg",
          "error": "Permission denied"}, "unreadable",
         "photod: a file in a watch folder cannot be read", "not backed up until"),
        ({"event": "folder_unreadable", "source": "inbox", "path": "/home/a/Pictures/x",
          "error": "File name too long"}, "unreadable",
         "photod: a folder in a watch folder cannot be read", "File name too long"),
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


def test_a_scrub_cut_by_photod_s_own_stop_is_no_alert() -> None:
    """A scrub a target's outage interrupted is a message; one whose read photod's own
    stop cut (``stopping``) is not: nothing of the backup failed."""
    event = {"event": "scrub_interrupted", "target": "b2", "reason": "cannot reach S3"}
    said = message_for(event)
    assert ("scrub", None) == (said and said.kind, message_for({**event, "stopping": True}))


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


def test_one_kind_of_trouble_never_mutes_another() -> None:
    """A copy gone bad, a watch folder's file rotted, a failed drill, a failed step and
    a full state dir, all within `every`: each is told (each asks something else)."""
    n = Notifier(NotifyConfig(desktop=False, every=3600))
    events = [
        {"event": "replica_corrupt", "path": "a.jpg", "target": "t7"},
        {"event": "source_corrupt", "path": "b.jpg", "source": "inbox"},
        {"event": "drill_failed", "target": "b2", "problems": ["c.jpg: bytes do not match"]},
        {"event": "job_failed", "error": "disk I/O error"},
        {"event": "state_dir_full", "state_dir": "/var/lib/photod"},
    ]
    for event in events:
        m = message_for(event)
        assert m is not None
        n.send(m)
    told = []
    while not n.q.empty():
        told.append(n.q.get_nowait().title)
    assert [
        "photod: a copy went bad",
        "photod: a file in a watch folder changed on disk",
        "photod: a restore drill failed",
        "photod: a backup step failed",
        "photod: no room left in the state dir",
    ] == told


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hc-ping.com/2f9a", "https://hc-ping.com/2f9a/fail"),
        ("https://hc-ping.com/2f9a/", "https://hc-ping.com/2f9a/fail"),
        ("https://hc-ping.com/KEY/photod?create=1", "https://hc-ping.com/KEY/photod/fail?create=1"),
    ],
)
def test_the_fail_form_of_a_heartbeat_url(url: str, expected: str) -> None:
    """ "/fail" goes after the URL's path, as healthchecks.io expects; a query stays last."""
    assert expected == fail_url(url)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"event": "job_failed", "job": "upload_pending", "error": "boom"},
         "job_failed upload_pending: boom"),
        ({"event": "ingest_failed", "source": "inbox", "path": "/p/a.jpg", "error": "bad"},
         "ingest_failed inbox /p/a.jpg: bad"),
        ({"event": "asset_lost", "path": "2024/a.jpg"}, "asset_lost 2024/a.jpg"),
        ({"event": "state_dir_full", "state_dir": "/s"}, "state_dir_full"),
        ({"event": "replica_corrupt", "path": "a.jpg"}, None),  # repaired: not a failure
        ({"event": "notify_failed", "channel": "heartbeat"}, None),
        ({"event": "target_unavailable", "target": "b2"}, None),
        ({"event": "ingest_failed", "source": "inbox", "path": "a.jpg\nall is well", "error": "x"},
         "ingest_failed inbox a.jpg?all is well: x"),  # one line, whatever the name
    ],
)  # fmt: skip
def test_which_events_make_the_next_ping_fail(event: dict[str, Any], expected: str | None) -> None:
    """A failed step, a lost photo or a full state dir is a line of the "/fail" ping;
    a repaired copy, a drive that went away or a failed notification is not."""
    assert expected == failure(event)


@pytest.fixture
def pinger() -> Iterator[Pinger]:
    server = Pinger()
    yield server
    server.close()


def _notifier(url: str, clock: ManualClock) -> Notifier:
    n = Notifier(NotifyConfig(desktop=False, heartbeat_url=url), clock)
    n.start()
    return n


def test_heartbeat_pings_once_a_minute_and_fails_after_a_failed_step(pinger: Pinger) -> None:
    """A round's end pings the URL (GET); rounds within the minute ping nothing; a step
    that failed meanwhile makes the next ping a POST to URL/fail whose body names it,
    and the ping after that is healthy again."""
    clock = ManualClock()
    n = _notifier(pinger.url, clock)
    try:
        assert n.heartbeat([])
        for _ in range(5):
            clock.advance(10)
            assert not n.heartbeat_due()
            assert not n.heartbeat([])  # rounds every 10 s: one ping a minute
        n.on_event({"event": "job_failed", "job": "upload_pending", "error": "disk I/O error"})
        clock.advance(10)
        assert n.heartbeat_due()
        assert n.heartbeat([])
        clock.advance(60)
        assert n.heartbeat([])
        clock.advance(60)
        assert n.heartbeat(["1 photo short of the 3-2-1 policy for more than 1 day"])
    finally:
        n.stop()
    path = "/ping/5e5c1a2b"
    assert [
        ("GET", path, b""),
        ("POST", path + "/fail", b"job_failed upload_pending: disk I/O error"),
        ("GET", path, b""),
        ("POST", path + "/fail", b"1 photo short of the 3-2-1 policy for more than 1 day"),
    ] == pinger.got


def test_a_fail_ping_after_many_failures_says_how_many_more_across_a_reload(
    pinger: Pinger,
) -> None:
    """Twenty-five failures since the last ping, a reload among them: the "/fail" ping
    names the first ten and says how many more (it named ten, and a heartbeat page
    read as if ten were all)."""
    clock = ManualClock()
    cfg = NotifyConfig(desktop=False, heartbeat_url=pinger.url)
    old = Notifier(cfg, clock)
    old.start()
    try:
        assert old.heartbeat([])
        for i in range(15):
            old.on_event(
                {"event": "ingest_failed", "source": "inbox", "path": f"{i}.jpg", "error": "EIO"}
            )
    finally:
        old.stop()
    new = Notifier(cfg, clock, left=old.left())  # a reload
    new.start()
    try:
        for i in range(15, 25):
            new.on_event(
                {"event": "ingest_failed", "source": "inbox", "path": f"{i}.jpg", "error": "EIO"}
            )
        clock.advance(60)
        assert new.heartbeat([])
        clock.advance(60)
        assert new.heartbeat([])
    finally:
        new.stop()
    lines = pinger.got[1][2].decode().splitlines()
    assert [f"ingest_failed inbox {i}.jpg: EIO" for i in range(10)] == lines[:10]
    assert ["and 15 more failure(s): `photod logs --failures`"] == lines[10:]
    assert ("GET", "/ping/5e5c1a2b", b"") == pinger.got[2]  # and the count starts again


def test_a_dead_heartbeat_url_is_one_notify_failed_per_ping() -> None:
    """Nothing listens at the URL: each ping is one `notify_failed` (channel
    heartbeat), the notifier's thread goes on and still delivers the next ping."""
    clock = ManualClock()
    n = _notifier(f"http://127.0.0.1:{free_port()}/ping", clock)
    with capture_logs() as events:
        try:
            assert n.heartbeat([])
            clock.advance(60)
            assert n.heartbeat(["x"])
        finally:
            n.stop()
    failed = [e for e in events if e["event"] == "notify_failed"]
    assert ["heartbeat", "heartbeat"] == [e["channel"] for e in failed]
    assert not n.thread.is_alive()  # stopped when asked, not by the failures


def test_without_a_heartbeat_url_nothing_is_pinged_or_kept() -> None:
    """No URL: a round's end queues nothing and failures are not collected."""
    n = Notifier(NotifyConfig(desktop=False))
    n.on_event({"event": "job_failed", "error": "x"})
    assert (False, False, []) == (n.heartbeat_due(), n.heartbeat([]), n.failed)
    queued = [n.q.get_nowait() for _ in range(n.q.qsize())]
    assert ["failure"] == [m.kind for m in queued if isinstance(m, Message)]  # the message only
    assert [] == [m for m in queued if isinstance(m, Ping)]


def test_no_round_for_stale_after_says_backups_stopped(tmp_path: Path) -> None:
    """With `stale_after = "1h"`: a round an hour ago is fine; past the hour the
    reminder says "photod: backups stopped" (`rounds_stopped` logged once, however
    often it looks); the next round ends it (`rounds_resumed`).  `stale_after = 0`
    never says it."""
    from photod import config
    from photod.catalog import Catalog
    from photod.fleet import build_targets
    from photod.reminders import Reminders

    def reminders(stale: str, clock: ManualClock) -> tuple[Reminders, Notifier]:
        text = (
            "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
            f'[[targets]]\nname = "lib"\ntype = "local"\npath = "{tmp_path / "lib"}"\n'
            f'[notify]\ndesktop = false\nstale_after = "{stale}"\n'
        )
        cfg = config.parse(text, tmp_path / "photod.toml")
        n = Notifier(cfg.notify, clock)
        catalog = Catalog(tmp_path / f"catalog-{stale}.sqlite")
        return Reminders(cfg, catalog, build_targets(cfg.targets_settings()), n, clock), n

    def queued(n: Notifier) -> list[str]:
        return [m.title for m in (n.q.get_nowait() for _ in range(n.q.qsize()))
                if isinstance(m, Message)]  # fmt: skip

    clock = ManualClock()
    r, n = reminders("1h", clock)
    with capture_logs() as events:
        clock.advance(3600)
        r.remind()
        assert [] == queued(n)
        clock.advance(1)
        r.remind()
        n.waiting.clear()  # as if the first had gone out
        n.last.clear()  # and `every` had passed: told again, logged once
        r.remind()
        assert ["photod: backups stopped"] * 2 == queued(n)
        r.round_done()
        clock.advance(3000)
        r.remind()
        assert [] == queued(n)
    names = [e["event"] for e in events]
    assert ["rounds_stopped", "rounds_resumed"] == names

    off, n = reminders("0s", clock)
    clock.advance(10 * 86400)
    off.remind()
    assert [] == queued(n)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.close()


def _hooked(hook: Webhook, clock: ManualClock, fmt: str = "json") -> Notifier:
    n = Notifier(NotifyConfig(desktop=False, webhook=hook.url, webhook_format=fmt), clock)
    n.start()
    return n


def _delivered(n: Notifier, kinds: set[str], events: list[dict[str, Any]]) -> None:
    sent = lambda: {e.get("kind") for e in events if e["event"] == "notification_sent"}  # noqa: E731
    wait_for(lambda: sent() >= kinds, 10, f"{kinds} sent", lambda: str(events))


def _kept_for_retry(n: Notifier, kind: str) -> None:
    wait_for(lambda: kind in n.retry, 10, f"{kind} failed and kept for its retry")


def test_a_message_no_channel_took_is_sent_again_later(hook: Webhook) -> None:
    """The webhook answers 500 to "a photo has no good copy left": the message is not
    dropped with its kind muted for `every`; it goes out again once the retry's wait
    has passed (woken here by another message); a second message of its kind
    meanwhile takes its place: one goes out, the newest."""
    clock = ManualClock()
    hook.answers = [500]
    n = _hooked(hook, clock)
    with capture_logs() as events:
        try:
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
            _kept_for_retry(n, "lost")
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_2"))
            clock.advance(61)
            n.send(Message("import", "photod: import finished", "12 new"))
            _delivered(n, {"lost", "import"}, events)
        finally:
            n.stop()
    bodies = [json.loads(body)["message"] for _, body in hook.got]
    assert ["12 new", "IMG_2"] == bodies


def test_a_redirected_message_is_sent_again_with_its_text(hook: Webhook) -> None:
    """A webhook URL that redirects (http to https, a moved endpoint): urllib would
    follow a 302 with a GET without the body and call it sent.  The POST goes again,
    with its text, where it was sent."""
    hook.answers = [302]
    n = _hooked(hook, ManualClock())
    with capture_logs() as events:
        try:
            n.send(Message("lost", "t", "IMG_1"))
            _delivered(n, {"lost"}, events)
        finally:
            n.stop()
    assert [("POST", "/photod"), ("POST", "/elsewhere")] == hook.requests
    assert ["IMG_1"] == [json.loads(body)["message"] for _, body in hook.got]


def test_ntfy_titles_beyond_latin1_and_slack_markup_in_names(hook: Webhook) -> None:
    """ntfy takes its title in a header, which is Latin-1: a phone called "Anna’s
    iPhone" failed to send.  Slack reads <...> in text as a mention: a file named
    "<!channel>.jpg" called the whole channel."""
    import base64
    import email.header

    n = _hooked(hook, ManualClock(), "ntfy")
    m = message_for({"event": "device_untrusted", "device": "Anna\u2019s iPhone"})
    assert m is not None
    with capture_logs() as events:
        n.send(m)
        _delivered(n, {"trust"}, events)
    n.stop()
    [(headers, _)] = hook.got
    [(raw, charset)] = email.header.decode_header(headers["Title"])
    assert "photod: unlock Anna\u2019s iPhone and tap Trust" == raw.decode(charset)
    assert base64  # (the word is base64: email.header decodes it as ntfy does)
    n = _hooked(hook, ManualClock())
    m = message_for({"event": "asset_lost", "path": "2024/<!channel>.jpg"})
    assert m is not None
    with capture_logs() as events:
        n.send(m)
        _delivered(n, {"lost"}, events)
    n.stop()
    text = json.loads(hook.got[-1][1])["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_a_heartbeat_behind_a_redirect_still_goes_red(hook: Webhook) -> None:
    """A heartbeat URL behind a redirect (http to https on a reverse proxy): the
    healthy GET follows it, and so does the "/fail" POST, with its body (refused, the
    check could never go red; turned into a GET by urllib, it read as all is well)."""
    hook.answers = [302]
    clock = ManualClock()
    n = Notifier(NotifyConfig(desktop=False, heartbeat_url=hook.url), clock)
    n.start()
    with capture_logs() as events:
        try:
            assert n.heartbeat([])
            wait_for(lambda: events, 10, "the first ping")
            hook.answers = [302]
            clock.advance(60)
            assert n.heartbeat(["1 photo with no good copy left"])
        finally:
            n.stop()
    assert ["heartbeat_sent"] * 2 == [e["event"] for e in events]
    assert [("GET", "/photod"), ("GET", "/elsewhere"), ("POST", "/photod/fail"),
            ("POST", "/elsewhere")] == hook.requests  # fmt: skip
    assert b"1 photo with no good copy left" == hook.got[-1][1]


def test_the_message_retried_is_the_newest_of_its_kind(hook: Webhook) -> None:
    """A message no channel took waits for its retry; a newer, urgent one of its kind
    meanwhile ("backups stopped" after "the catalog was rebuilt") is what goes out
    then, not the stale one."""
    clock = ManualClock()
    hook.answers = [500]
    n = _hooked(hook, clock)
    with capture_logs() as events:
        try:
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
            _kept_for_retry(n, "lost")
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_2", True))
            clock.advance(61)
            n.send(Message("import", "photod: import finished", "12 new"))
            _delivered(n, {"lost", "import"}, events)
        finally:
            n.stop()
    assert ["12 new", "IMG_2"] == [json.loads(body)["message"] for _, body in hook.got]


def test_a_drive_in_a_drawer_is_said_once_a_day(tmp_path: Path) -> None:
    """A drive away longer than its `expect_every` is said when that passes, then once
    a day while it lasts: not every hour for ever (72 messages in three days made
    people turn the notifications off).  A reload does not say it again at once; once
    the drive was back, its next absence is said when `expect_every` passes again."""
    from photod import config
    from photod.catalog import Catalog
    from photod.fleet import build_targets
    from photod.reminders import Reminders

    text = (
        "[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n"
        f'[[targets]]\nname = "t7"\ntype = "local"\npath = "{tmp_path / "T7"}"\n'
        'media = "external"\nexpect_every = "1h"\n[notify]\ndesktop = false\n'
    )
    cfg = config.parse(text, tmp_path / "photod.toml")
    clock = ManualClock()
    catalog = Catalog(tmp_path / "c.sqlite")

    def build(left: Any = None) -> tuple[Reminders, Notifier]:
        n = Notifier(cfg.notify, clock, left)
        targets = build_targets(cfg.targets_settings())
        targets["t7"].since = clock.boottime() - 86400  # away a day already (its clock's)
        return Reminders(cfg, catalog, targets, n, clock), n

    r, n = build()
    told = []
    for hour in range(72):
        clock.advance(3600)
        if hour == 30:  # a reload
            r, n = build(n.left())
        r.remind()
        while not n.q.empty():
            m = n.q.get_nowait()
            if isinstance(m, Message):  # as the notifier's thread would: it went out
                n.last[m.kind], _ = clock.monotonic(), n.waiting.discard(m.kind)
                told.append(hour) if m.kind == "away:t7" else None
    assert [0, 24, 48] == told


@pytest.fixture
def dripping() -> Iterator[str]:
    """The URL of a webhook that answers one byte a second: never a read timeout."""
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def drip() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                    if done.is_set():
                        return
                    with contextlib.suppress(OSError):
                        conn.sendall(bytes([byte]))
                    time.sleep(1)

    threading.Thread(target=drip, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    done.set()
    listener.close()


def test_a_server_that_answers_a_byte_at_a_time_does_not_hold_a_stop(dripping: str) -> None:
    """A webhook that answers one byte every second never trips a read timeout: the
    notifier's stop gave it 30 s, as long as systemd's TimeoutStopSec, and the daemon
    was killed mid-step.  A stop now waits for the messages in flight a few seconds at
    most; what it did not send is left for a reload's next notifier, never sent after
    the stop with the old settings."""
    import time

    n = Notifier(NotifyConfig(desktop=False, webhook=dripping), ManualClock())
    n.start()
    n.send(Message("lost", "t", "IMG_1"))
    time.sleep(1)  # it is sending
    n.send(Message("import", "t", "12 new"))  # queued behind it
    started = time.monotonic()
    n.stop()
    took = time.monotonic() - started
    assert took < 8, took
    assert "12 new" in [m.body for m in n.left().messages]


def test_notify_test_gives_up_on_a_webhook_that_answers_a_byte_at_a_time(
    dripping: str, tmp_path: Path
) -> None:
    """`photod notify-test` against a webhook that answers one byte a second (no read
    ever times out) waited as long as the server liked (140 s here, for ever for a
    server that never ends): it now says the channel failed after 20 s."""
    import subprocess
    import sys
    import time

    from tests.conftest import write_config

    config = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "in")}],
        [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")}],
        extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\n[notify]\ndesktop = false\n'
        f'webhook = "{dripping}"\n',
    )
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "photod", "--config", str(config), "notify-test"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert time.monotonic() - started < 40
    assert (1, "webhook: FAILED: no whole answer within 20 s") == (r.returncode, r.stdout.strip())


def test_a_heartbeat_that_answers_a_byte_at_a_time_holds_no_message_back(
    dripping: str, hook: Webhook
) -> None:
    """A heartbeat URL that answers one byte a second never trips a read's timeout:
    the one thread that sends every message and ping waited on it 141 s a ping, and a
    message to a working webhook behind it waited as long (pings every minute: for
    ever).  A ping is given up after 20 s, as a failure of the heartbeat's, and the
    message after it goes out."""
    import time

    clock = ManualClock()
    cfg = NotifyConfig(desktop=False, heartbeat_url=dripping, webhook=hook.url)
    n = Notifier(cfg, clock)
    with capture_logs() as events:
        n.start()
        try:
            started = time.monotonic()
            assert n.heartbeat([])
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
            sent = lambda: [e for e in events if e["event"] == "notification_sent"]  # noqa: E731
            wait_for(sent, 40, "the message behind the dripping ping sent", lambda: str(events))
        finally:
            n.stop()
    took = time.monotonic() - started
    assert 19 < took < 30, took
    # (an earlier test's notifier, its dripping server gone, may log here too)
    [failed] = [e for e in events if e["event"] == "notify_failed" and e["channel"] == "heartbeat"]
    assert "no whole answer within 20 s" == failed["error"]
    assert "IMG_1" in [json.loads(body)["message"] for _, body in hook.got]


def test_a_heartbeat_stuck_for_good_does_not_silence_the_webhook(
    hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat server that drips its answer for good leaves each ping waiting past
    its deadline.  Once four were (``STUCK_MAX``), every channel failed at once ("4
    earlier answers are still coming"): a working webhook took no message again, each
    kept for a retry that failed the same way.  The pings stuck hold back only pings:
    a message to the webhook still goes out."""
    import socket
    import threading
    import time

    from photod import notify

    monkeypatch.setattr(notify, "HEARTBEAT_TIMEOUT", 0.5)  # a ping's deadline: 1 s
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def drip(conn: socket.socket) -> None:  # a byte every 0.1 s, for good
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not done.wait(0.1):
                conn.sendall(b"x")

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/ping"
    clock = ManualClock()
    n = Notifier(NotifyConfig(desktop=False, heartbeat_url=url, webhook=hook.url), clock)
    failed = lambda e: e["event"] == "notify_failed" and e["channel"] == "heartbeat"  # noqa: E731
    with capture_logs() as events:
        n.start()
        try:
            for i in range(1, 6):
                assert n.heartbeat([])
                wait_for(lambda: sum(map(failed, events)) >= i, 10, f"ping {i} given up")  # noqa: B023
                clock.advance(60)
            n.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
            sent = lambda: [e for e in events if e["event"] == "notification_sent"]  # noqa: E731
            wait_for(sent, 10, "the message sent to the webhook", lambda: str(events))
        finally:
            n.stop()
            done.set()
            listener.close()
            time.sleep(0.3)  # (the pings stuck end with their server)
    assert "IMG_1" in [json.loads(body)["message"] for _, body in hook.got]


def test_a_reload_keeps_what_was_not_told_yet(pinger: Pinger, hook: Webhook) -> None:
    """A reload builds a new notifier: the failures logged since the last ping, and a
    message no channel took yet, go to the new one (the next ping said all was well)."""
    clock = ManualClock()
    hook.answers = [500, 500]  # the failure's message, then the lost photo's
    cfg = NotifyConfig(desktop=False, heartbeat_url=pinger.url, webhook=hook.url)
    old = Notifier(cfg, clock)
    old.start()
    assert old.heartbeat([])
    old.on_event({"event": "ingest_failed", "source": "inbox", "path": "a.jpg", "error": "EIO"})
    old.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
    _kept_for_retry(old, "lost")
    old.stop()
    new = Notifier(cfg, clock, left=old.left())
    with capture_logs() as events:  # (started inside: what it sends at once is seen)
        new.start()
        try:
            assert new.heartbeat([])
            _delivered(new, {"lost", "failure"}, events)
        finally:
            new.stop()
    assert ("POST", "/ping/5e5c1a2b/fail", b"ingest_failed inbox a.jpg: EIO") == pinger.got[-1]
    assert "IMG_1" in [json.loads(body)["message"] for _, body in hook.got]


def test_notify_test_sends_a_message_and_says_what_each_channel_answered(
    hook: Webhook, tmp_path: Path
) -> None:
    """`photod notify-test` sends a test message to the webhook and prints "webhook:
    sent" (exit 0); a webhook that refuses it is "webhook: FAILED" with the answer
    (exit 1) and its URL, token included, is not printed; no channel at all is exit 1
    with what to set."""
    import subprocess
    import sys

    from tests.conftest import write_config

    def notify_test(notify: str) -> subprocess.CompletedProcess[str]:
        config = write_config(
            tmp_path / "photod.toml",
            [{"name": "inbox", "type": "folder", "path": str(tmp_path / "in")}],
            [{"name": "lib", "type": "local", "path": str(tmp_path / "lib")}],
            extra=f'[daemon]\nstate_dir = "{tmp_path}/state"\n[notify]\ndesktop = false\n{notify}',
        )
        return subprocess.run(
            [sys.executable, "-m", "photod", "--config", str(config), "notify-test"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    r = notify_test(f'webhook = "{hook.url}?token=s3cret"\n')
    assert (0, "webhook: sent") == (r.returncode, r.stdout.strip()), r.stderr
    assert ["photod: a test message"] == [json.loads(body)["title"] for _, body in hook.got]

    hook.answers = [403]
    r = notify_test(f'webhook = "{hook.url}?token=s3cret"\n')
    assert (1, "webhook: FAILED: HTTP Error 403: Forbidden") == (r.returncode, r.stdout.strip())
    assert "s3cret" not in r.stdout + r.stderr
    assert 1 == len(hook.got)

    # A URL malformed in a way the config's check lets by: what urllib says of it
    # quotes part of it ("nonnumeric port: 's3cr3tTOKEN'"): not shown.
    r = notify_test('webhook = "https://ntfy.sh:s3cr3tTOKEN/topic"\n')
    assert (1, "webhook: FAILED: the URL is malformed: check it in the config") == (
        r.returncode,
        r.stdout.strip(),
    )
    assert "s3cr3tTOKEN" not in r.stdout + r.stderr

    r = notify_test("")
    assert 1 == r.returncode
    assert "no notification channel to try: set `webhook` or `email_to`" in r.stdout


def _flooded(hook: Webhook, clock: ManualClock, failures: int) -> Notifier:
    """A notifier (`every` an hour, the webhook its channel) given ``failures``
    `job_failed` ("403 Forbidden 0", "... 1", ...), once it told the first; started."""
    n = Notifier(NotifyConfig(desktop=False, webhook=hook.url, every=3600), clock)
    n.start()
    with capture_logs() as events:
        try:
            for i in range(failures):
                n.on_event({"event": "job_failed", "job": "copy", "error": f"403 Forbidden {i}"})
            _delivered(n, {"failure"}, events)
        except BaseException:
            n.stop()
            raise
    return n


def test_a_flood_of_failures_is_one_message_that_keeps_the_count(hook: Webhook) -> None:
    """Every upload fails (a revoked key): 50 `job_failed` within `every`.  One message
    goes out at once; the 49 held back by `every` were dropped for good, so the owner
    read of one failure, once, and never learnt that it went on.  Once `every` has
    passed they are one message that says how many, with the latest."""
    clock = ManualClock()
    n = _flooded(hook, clock, 50)
    try:
        clock.advance(3601)
        n.send(Message("import", "photod: import finished", "12 new"))  # (wakes it)
        wait_for(lambda: len(hook.got) >= 3, 10, "the count told", lambda: str(hook.got))
    finally:
        n.stop()
    bodies = [json.loads(body)["message"] for _, body in hook.got]
    assert "job_failed: 403 Forbidden 0" == bodies[0]
    assert "12 new" == bodies[1]
    assert bodies[2].startswith("49 more like this since the last message (the latest: "
                                "job_failed: 403 Forbidden 49)")  # fmt: skip
    assert len(hook.got) == 3  # told once: the count does not go out again


def test_what_was_not_told_outlives_a_stop_of_the_daemon(hook: Webhook, tmp_path: Path) -> None:
    """Twenty failures held back by `every`, and a lost photo's message the webhook
    refused: the daemon stops (a reboot, an upgrade).  Its next start tells both at
    once, the message saying it was held over; both ended with the process before."""
    old = _flooded(hook, ManualClock(), 21)
    try:
        hook.answers = [500]
        old.send(Message("lost", "photod: a photo has no good copy left", "IMG_1"))
        _kept_for_retry(old, "lost")
    finally:
        old.stop()
    save_left(old.left(), tmp_path, "2026-12-05T14:00:00Z")
    new = Notifier(old.cfg, ManualClock(), left=load_left(tmp_path))  # the next process
    new.start()
    try:
        wait_for(lambda: len(hook.got) >= 3, 10, "what was held over told", lambda: str(hook.got))
    finally:
        new.stop()
    bodies = sorted(json.loads(body)["message"] for _, body in hook.got[1:])
    assert bodies[0].startswith("20 more like this since the last message (the latest: "
                                "job_failed: 403 Forbidden 20)")  # fmt: skip
    assert "IMG_1 (held over from before photod stopped at 2026-12-05T14:00:00Z)" == bodies[1]
    assert load_left(tmp_path) is None  # taken once: never told twice
