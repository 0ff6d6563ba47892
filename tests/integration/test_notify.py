"""Being told: a real daemon sends notifications to a desktop notification server on
a private D-Bus session bus, a webhook and an SMTP server, all on this machine."""

from __future__ import annotations

import json
import shutil
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jeepney import MessageType, message_bus, new_method_return
from jeepney.io.blocking import open_dbus_connection

from tests.conftest import Photod, wait_for
from tests.integration.conftest import Setup, backed_up_twice
from tests.servers import Pinger, Webhook, need

pytestmark = pytest.mark.integration


class Mailbox:
    """A small SMTP server on 127.0.0.1 that keeps every message it is given."""

    def __init__(self) -> None:
        mails: list[str] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 test ESMTP\r\n")
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        self.wfile.write(b"354 go on\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        mails.append(data.decode("utf-8", "replace"))
                        self.wfile.write(b"250 kept\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.mails = mails
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Desktop:
    """A private D-Bus session bus (dbus-daemon) and a notification server on it that
    keeps every Notify call, as a desktop's would show them."""

    def __init__(self, folder: Path) -> None:
        daemon = need("dbus-daemon", "apt install dbus")
        self.address = f"unix:path={folder / 'bus'}"
        self.proc = subprocess.Popen(
            [daemon, "--session", "--nofork", f"--address={self.address}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: (folder / "bus").exists(), 10, "the session bus")
        self.shown: list[tuple[str, str]] = []  # (summary, body)
        self.stop = threading.Event()
        self.conn = open_dbus_connection(bus=self.address)
        self.conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications"))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.5)
            except TimeoutError:
                continue
            call = msg.header.message_type == MessageType.method_call
            if call and msg.header.fields.get(3) == "Notify":  # 3: MEMBER
                self.shown.append((msg.body[3], msg.body[4]))
                self.conn.send(new_method_return(msg, "u", (len(self.shown),)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def channels(tmp_path: Path) -> Iterator[tuple[Webhook, Mailbox, Desktop]]:
    hook, box, desk = Webhook(), Mailbox(), Desktop(tmp_path)
    yield hook, box, desk
    hook.close()
    box.close()
    desk.close()


def test_a_missing_drive_and_unprotected_photos_are_told_everywhere(
    setup: Setup, samples: Path, channels: tuple[Webhook, Mailbox, Desktop]
) -> None:
    """An external drive away longer than its expect_every, and photos short of the
    policy longer than grace, each reach the desktop (D-Bus Notify), the webhook (JSON
    for Gotify/Slack) and the mailbox (SMTP); each kind once, whatever the repeats."""
    hook, box, desk = channels
    p = setup.photod(
        [
            {"name": "lib", "path": str(setup.home / "lib")},
            {
                "name": "t7",
                "path": str(setup.home / "T7"),
                "media": "external",
                "expect_every": "1s",
            },
        ],
        policy={"copies": 2, "media": 2, "offsite": 0},
        extra=(
            f'\n[notify]\nwebhook = "{hook.url}"\nemail_to = "anna@example.org"\n'
            f'smtp_host = "127.0.0.1"\nsmtp_port = {box.port}\nsmtp_tls = "none"\n'
            'grace = "1s"\n'
        ),
    )
    p.env["DBUS_SESSION_BUS_ADDRESS"] = desk.address
    p.start()
    try:
        shutil.copy2(next(samples.iterdir()), setup.inbox / "a.jpg")
        p.wait_event("notification_sent", count=6, timeout=60)
        time.sleep(16)  # another reminder round: nothing new (at most once per `every`)
        assert 6 == len(p.events("notification_sent"))
    finally:
        assert 0 == p.stop()
    titles = sorted(s for s, _ in desk.shown)
    assert ["photod: external drive 't7' missing", "photod: photos are not protected"] == titles
    away = next(b for s, b in desk.shown if "missing" in s)
    assert "the external drive 't7' has not been connected for" in away
    posted = sorted(json.loads(body)["title"] for _, body in hook.got)
    assert titles == posted
    assert all("text" in json.loads(body) for _, body in hook.got)
    subjects = sorted(
        next(line[9:] for line in m.splitlines() if line.startswith("Subject: ")) for m in box.mails
    )
    assert titles == subjects
    assert all("To: anna@example.org" in m for m in box.mails)


def test_damage_is_told_once_and_a_dead_channel_is_logged(setup: Setup, samples: Path) -> None:
    """Two damaged copies found by one scrub give one message (ntfy's plain-text form
    here); a channel that cannot be reached is a `notify_failed` event, never a crash."""
    hook = Webhook()
    try:
        extra = (
            f'\n[notify]\nwebhook = "{hook.url}"\nwebhook_format = "ntfy"\n'
            'email_to = "x@example.org"\nsmtp_host = "127.0.0.1"\nsmtp_port = 1\n'
            'smtp_tls = "none"\n'
        )
        p, lib, _, originals = backed_up_twice(setup, samples, extra)
        for key in sorted(originals)[:2]:
            (lib / key).write_bytes(b"rotten")
        p.start()
        assert 0 == p.cli("verify", "--all").returncode
        p.wait_event("scrub_finished", timeout=30)
        p.wait_event("notify_failed", timeout=30, channel="email")
        p.wait_event("notification_sent", timeout=30, channel="webhook")
        assert 0 == p.stop()
        assert 1 == len(hook.got)
        headers, body = hook.got[0]
        assert "photod: a copy went bad" == headers["Title"]
        assert "on 'lib' was damaged" in body.decode()
    finally:
        hook.close()


def test_a_message_the_webhook_refused_is_sent_after_a_restart(setup: Setup, samples: Path) -> None:
    """A scrub finds a copy gone bad while the webhook answers 500, and photod is
    stopped (a reboot) before the message's retry: the next start sends it, saying it
    was held over.  It ended with the process before, and the owner never heard."""
    hook = Webhook()
    try:
        p, lib, _, originals = backed_up_twice(
            setup, samples, f'\n[notify]\nwebhook = "{hook.url}"\n'
        )
        (lib / sorted(originals)[0]).write_bytes(b"rotten")
        hook.answers = [500] * 100
        p.start()
        assert 0 == p.cli("verify", "--all").returncode
        p.wait_event("notify_failed", timeout=30, channel="webhook")
        assert 0 == p.stop()
        assert [] == hook.got
        hook.answers.clear()
        p.start()
        p.wait_event("notification_sent", timeout=30, channel="webhook")
        assert 0 == p.stop()
    finally:
        hook.close()
    assert ["photod: a copy went bad"] == [json.loads(body)["title"] for _, body in hook.got]
    assert "(held over from before photod stopped at " in json.loads(hook.got[0][1])["text"]


def test_the_heartbeat_pings_after_each_round_and_fails_on_unprotected_photos(
    setup: Setup, samples: Path
) -> None:
    """With `heartbeat_url`, the first round (the reconcile scan at start) pings the
    URL; rounds every second still make one ping a minute.  A photo then waits for a
    drive that never comes, longer than `grace`: the next round pings URL/fail, with
    what is wrong as the body (the daemon is restarted here so the minute need not
    pass)."""
    pinger = Pinger()
    try:
        p = setup.photod(
            [
                {"name": "lib", "path": str(setup.home / "lib")},
                {"name": "t7", "path": str(setup.home / "T7"), "media": "external"},
            ],
            policy={"copies": 2, "media": 1, "offsite": 0},
            daemon='rescan_interval = "1s"',
            extra=f'\n[notify]\ndesktop = false\nheartbeat_url = "{pinger.url}"\ngrace = "1s"\n',
        )
        p.start()
        p.wait_event("heartbeat_sent", outcome="ok")
        shutil.copy2(next(samples.iterdir()), setup.inbox / "a.jpg")
        p.wait_event("replica_written", target="lib")
        rounds = len(p.events("scan_finished"))
        p.wait_event("scan_finished", count=rounds + 3)  # more rounds: no more pings
        assert [("GET", "/ping/5e5c1a2b", b"")] == pinger.got
        assert 0 == p.stop()

        p.start()
        sent = p.wait_event("heartbeat_sent", outcome="fail")
        assert 0 == p.stop()
    finally:
        pinger.close()
    expected = b"1 photo short of the 3-2-1 policy for more than 1 second"
    assert [("POST", "/ping/5e5c1a2b/fail", expected)] == pinger.got[1:]
    assert [expected.decode()] == sent[0]["problems"]


def pinged_once(setup: Setup, pinger: Pinger, failpoints: str, notify: str = "") -> Photod:
    """A photod (rounds every second) pinging ``pinger`` after each round, started
    with ``failpoints`` armed, once its first ping ("all is well") went out."""
    p = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")}],
        daemon='rescan_interval = "1s"',
        extra=f'\n[notify]\ndesktop = false\nheartbeat_url = "{pinger.url}"\n{notify}',
    )
    p.env["PHOTOD_FAILPOINTS"] = failpoints
    p.start()
    p.wait_event("heartbeat_sent", outcome="ok")
    return p


def test_an_import_that_hangs_fails_the_heartbeat(setup: Setup, samples: Path) -> None:
    """Every worker hangs on its file (a stuck network read, a deadlock: a failpoint
    here): the rounds still end (a scan only hands files over), so the heartbeat said
    all was well while nothing was backed up.  A file waiting longer than `grace` to be
    imported makes the next ping a "/fail" that says so (a minute after the first)."""
    pinger = Pinger()
    try:
        p = pinged_once(setup, pinger, "ingest_storing=sleep:600", 'grace = "2s"\n')
        shutil.copy2(next(samples.iterdir()), setup.inbox / "a.jpg")
        sent = p.wait_event("heartbeat_sent", outcome="fail", timeout=90)
        assert [] == p.events("replica_written")
        [problem] = sent[0]["problems"]
        assert problem.startswith("no import has moved for ") and "an import is stuck" in problem
        p.stop(signal.SIGKILL)  # (its worker sleeps for ten minutes; else the fixture's end)
    finally:
        pinger.close()
    assert ["GET", "POST"] == [method for method, _, _ in pinger.got]


def test_a_job_failing_at_each_run_is_said_once_and_keeps_the_heartbeat_failing(
    setup: Setup,
) -> None:
    """A bug in the target probe (a failpoint here), which runs every 5 s: it was a
    `job_failed` with its trace every 5 s. It is said once, and the heartbeat's ping
    names the job as failing at each run besides that event: the pings after it say
    so while it fails (said once, they would say "all is well")."""
    pinger = Pinger()
    try:
        p = pinged_once(setup, pinger, "targets_probing=raise")  # (before the first probe)
        sent = p.wait_event("heartbeat_sent", outcome="fail", timeout=90)[0]
        line, event = sent["problems"]  # (what the round found, then the events)
        assert event == "job_failed probe_targets: failpoint 'targets_probing' hit"
        runs = int(line.split(" of its last ")[1].split(" ")[0])
        assert runs >= 5, line  # (a minute of runs every 5 s: some 11, fewer on a loaded machine)
        assert line.startswith("the job probe_targets has failed at each of its last ")
        assert line.endswith(": failpoint 'targets_probing' hit")
        failed = [e for e in p.events("job_failed") if e["job"] == "probe_targets"]
        assert 1 == len(failed)
        shown = p.cli("status").stdout  # and `photod status` says so meanwhile
        assert "FAILING: the job probe_targets has failed at each of its last " in shown
        assert 0 == p.stop()
    finally:
        pinger.close()
    assert ["GET", "POST"] == [method for method, _, _ in pinger.got]


def test_no_round_for_stale_after_is_told_without_a_heartbeat(setup: Setup) -> None:
    """No heartbeat URL, `stale_after = "2s"`: a `photod pause` (a forgotten one, a
    hung scan would do the same) stops the rounds, and the reminder tells the webhook
    "photod: backups stopped" (`rounds_stopped`); `photod resume` starts the rounds
    again (`rounds_resumed`)."""
    hook = Webhook()
    try:
        p = setup.photod(
            [{"name": "lib", "path": str(setup.home / "lib")}],
            daemon='rescan_interval = "1s"',
            extra=f'\n[notify]\ndesktop = false\nwebhook = "{hook.url}"\nstale_after = "2s"\n',
        )
        p.start()
        p.wait_event("scan_finished")
        assert 0 == p.cli("pause").returncode
        p.wait_event("rounds_stopped", timeout=30)
        p.wait_event("notification_sent", channel="webhook", kind="stale", timeout=30)
        assert 0 == p.cli("resume").returncode
        p.wait_event("rounds_resumed", timeout=30)
        assert 0 == p.stop()
    finally:
        hook.close()
    [(_, body)] = hook.got
    message = json.loads(body)
    assert "photod: backups stopped" == message["title"]
    assert "no round of photod" in message["message"]
    assert [] == p.events("heartbeat_sent")


def test_a_desktop_notification_shows_its_text_as_text(
    channels: tuple[Webhook, Mailbox, Desktop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A desktop's notification server reads a body as markup; what an event carries (a
    phone's or a file's name, an error a phone caused) must show as the text it is, not
    become a link or an image."""
    from photod import alerts, notify

    _, _, desk = channels
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desk.address)
    body = 'import failed: <a href="https://evil.example/fix">Click here</a> & <img src=x>'
    notify._desktop(alerts.Message("failure", "photod: an import failed", body))
    wait_for(lambda: desk.shown, 10, "the notification")
    [(_, shown)] = desk.shown
    assert "<a" not in shown and "<img" not in shown
    assert shown == body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_a_clock_put_right_years_forward_does_not_call_a_drive_missing_for_years(
    setup: Setup,
) -> None:
    """The computer starts with its clock ten years behind (a dead clock battery), the
    external drive not plugged in, then NTP puts the clock right: the drive is not
    said missing for ten years, nor reminded about before its `expect_every` of a week.
    (How long a drive never seen was away was counted on the wall clock from the
    start: "not connected for 3652 days" went out within 15 seconds of the clock put
    right, and `systemctl status` said "missing for 3652 days".)"""
    from tests.integration.test_schedule import _faked

    hook = Webhook()
    p = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")},
         {"name": "t7", "path": str(setup.home / "T7"), "media": "external",
          "expect_every": "7d"}],
        policy={"copies": 1, "media": 1, "offsite": 0},
        extra=f'\n[notify]\nwebhook = "{hook.url}"\n',
    )  # fmt: skip
    offset = setup.home / "faketime.rc"
    offset.write_text("-3652d\n")
    _faked(p, offset)
    p.start()
    try:
        time.sleep(2)
        offset.write_text("+0\n")  # NTP puts the clock right
        time.sleep(20)  # (past a look for reminders: every 15 s)
        assert [] == [json.loads(body)["title"] for _, body in hook.got]
    finally:
        p.stop(signal.SIGKILL)
        hook.close()


def test_photos_added_while_the_clock_was_years_behind_are_not_called_short_for_years(
    setup: Setup, samples: Path
) -> None:
    """The computer starts with its clock ten years behind (a dead clock battery), a
    photo comes in and waits for a second copy, then NTP puts the clock right: the
    photo is not said short of the policy before `grace` (30 s) has passed since it
    came, and is once it has.  (Its time of adding, dated ten years back, made it "short
    of the 3-2-1 policy for more than 30 seconds" at the first look after the clock was
    put right; a clock ahead, set back, hid it for as long.)"""
    from tests.integration.test_schedule import _faked

    hook = Webhook()
    p = setup.photod(
        [
            {"name": "lib", "path": str(setup.home / "lib")},
            {"name": "t7", "path": str(setup.home / "T7"), "media": "external"},
        ],
        policy={"copies": 2, "media": 1, "offsite": 0},
        extra=f'\n[notify]\ndesktop = false\nwebhook = "{hook.url}"\ngrace = "30s"\n',
    )
    offset = setup.home / "faketime.rc"
    offset.write_text("-3652d\n")
    _faked(p, offset)
    p.start()
    try:
        shutil.copy2(next(samples.iterdir()), setup.inbox / "a.jpg")
        p.wait_event("replica_written", target="lib", timeout=30)
        came = time.monotonic()
        offset.write_text("+0\n")  # NTP puts the clock right
        time.sleep(20)  # (past a look for reminders: every 15 s)
        assert [] == [json.loads(body)["title"] for _, body in hook.got]
        p.wait_event("notification_sent", timeout=60)
        assert time.monotonic() - came >= 30
        assert ["photod: photos are not protected"] == [
            json.loads(body)["title"] for _, body in hook.got
        ]
    finally:
        p.stop(signal.SIGKILL)  # (under libfaketime a SIGTERM may go unanswered)
        hook.close()


def test_a_drive_last_seen_while_the_clock_ran_ahead_is_still_said_missing(
    setup: Setup,
) -> None:
    """The computer's clock runs a year ahead while the external drive is plugged in,
    then the drive is unplugged and NTP sets the clock back: the drive is said missing
    once its `expect_every` has passed.  (It was last seen "a year from now": away for
    minus a year, it would not have been said missing for a year.)"""
    from tests.integration.test_schedule import _faked

    hook = Webhook()
    drive = setup.home / "T7"
    drive.mkdir()
    p = setup.photod(
        [{"name": "lib", "path": str(setup.home / "lib")},
         {"name": "t7", "path": str(drive), "media": "external", "expect_every": "5s"}],
        policy={"copies": 1, "media": 1, "offsite": 0},
        extra=f'\n[notify]\ndesktop = false\nwebhook = "{hook.url}"\n',
    )  # fmt: skip
    offset = setup.home / "faketime.rc"
    offset.write_text("+365d\n")
    _faked(p, offset)
    p.start()
    try:
        p.wait_event("target_available", target="t7")
        time.sleep(1)  # (its time of being seen recorded)
        drive.rename(setup.home / "T7-in-the-drawer")
        offset.write_text("+0\n")  # NTP sets the clock back
        p.wait_event("target_unavailable", target="t7")
        p.wait_event("notification_sent", timeout=45)
        assert ["photod: external drive 't7' missing"] == [
            json.loads(body)["title"] for _, body in hook.got
        ]
    finally:
        p.stop(signal.SIGKILL)  # (under libfaketime a SIGTERM may go unanswered)
        hook.close()
