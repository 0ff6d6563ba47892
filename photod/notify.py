"""Being told when something fails: desktop notifications, a webhook, e-mail; and a
heartbeat for a dead man's switch.

The notifier listens to the event log (``logs.listen``): a few events become a message
(a backup step failed, a copy went bad or an asset was lost, an import finished, a
phone waits for Trust), and the daemon's reminders add their own (a target away longer
than its ``expect_every``, assets short of the policy for longer than ``grace``, no
round finished for ``stale_after``).  Messages go out from one thread, so a slow mail
server never holds up a copy; each kind at most once per ``[notify] every``, counted
from a message that reached a channel (an event's messages held back meanwhile are then
told as one, with their count).  A message no channel took (each failure logged,
``notify_failed``) is tried again later (a minute, doubling to an hour), not dropped
with its kind muted.  A redirect of a POST is followed with the POST and its body
(urllib would send an empty GET: a heartbeat's "/fail" would read as "all is well").

Channels: the desktop (org.freedesktop.Notifications over the session D-Bus, through
``network``; osascript on macOS), a webhook (JSON that Gotify and Slack take, or ntfy's
plain text), SMTP.

The heartbeat (``[notify] heartbeat_url``, healthchecks.io and the like): at the end of
each round (``reminders.Reminders.round_done``) one ping from the same thread, a GET of
the URL when all is well, a POST to its "/fail" form with what is wrong as the body
when not: a failure logged since the last ping (``alerts.FAILURES``) or a problem the round
found.  At most one ping a minute (``HEARTBEAT_EVERY``), whatever the rounds.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photod import durable, network
from photod.alerts import Message, Ping, fail_url, failure, message_for
from photod.clock import SYSTEM, Clock
from photod.config import NotifyConfig
from photod.deadline import within
from photod.logs import log

# The HTTP and mail clients are loaded at the first message or heartbeat, not at import:
# most daemons send neither before their first scan ends (5 ms of every start).
if TYPE_CHECKING:
    import urllib.request

APP = "photod"
HEARTBEAT_EVERY = 60.0  # seconds between two pings at least
HEARTBEAT_TIMEOUT = 10.0  # seconds a ping may take
SEND_DEADLINE = 60.0  # seconds a channel may take to answer whole (a read's timeout is 30)
STOP_WAIT = 5.0  # seconds a stop waits for the messages in flight
FAILED_KEPT = 10  # failures a "/fail" ping names; past them, it says how many more
RESPONSE_MAX = 64 * 1024  # bytes of an answer read (its body says nothing photod needs)
LEFT_NAME = "notify-left.json"  # in the state dir: what a stopped daemon had not told
HELD_OVER = "held over from before photod stopped"  # said once, whatever the restarts
NEVER = float("-inf")  # when a kind held over from a stopped daemon was last told
RETRY_FIRST, RETRY_MAX = 60.0, 3600.0  # seconds before a message no channel took is retried


@dataclass(frozen=True)
class Left:
    """What a notifier stopped by a reload leaves to the next (or a stopping daemon to
    its next start: ``save_left``): the failures the next ping must say, and the
    messages no channel took yet."""

    failed: tuple[str, ...] = ()
    more: int = 0  # failures past the first few: counted, not kept
    messages: tuple[Message, ...] = ()
    told: tuple[tuple[str, float], ...] = ()  # (kind, when it last went out)
    muted: tuple[tuple[str, int, Message], ...] = ()  # (kind, how many held back, newest)


def save_left(left: Left | None, folder: Path, stopped_at: str) -> None:
    """Keep what a stopping daemon had not told for its next start: a message no
    channel took (the webhook was down) or a count ``every`` held back must not end
    with the process (a reboot, an upgrade).  When each kind was last told is not kept:
    the next process's clock starts again."""
    path = folder / LEFT_NAME
    if left is None or not (left.failed or left.more or left.messages or left.muted):
        path.unlink(missing_ok=True)
        return
    since = f" ({HELD_OVER} at {stopped_at})"
    data = {
        "failed": list(left.failed),
        "more": left.more,
        "messages": [
            asdict(m) | ({} if HELD_OVER in m.body else {"body": m.body + since})
            for m in left.messages
        ],
        "muted": [[kind, n, asdict(m)] for kind, n, m in left.muted],
    }
    durable.write_atomic(path, json.dumps(data).encode())


def load_left(folder: Path) -> Left | None:
    """What the last daemon had not told (``save_left``), taken once: the file goes.
    One that cannot be read (edited by hand) is dropped: it holds only messages."""
    path = folder / LEFT_NAME
    try:
        data = json.loads(path.read_bytes())
        path.unlink()
        left = Left(
            tuple(str(f) for f in data["failed"]),
            int(data["more"]),
            tuple(Message(**m) for m in data["messages"]),
            (),
            tuple((str(k), int(n), Message(**m)) for k, n, m in data["muted"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return left


class Notifier:
    def __init__(self, cfg: NotifyConfig, clock: Clock = SYSTEM, left: Left | None = None) -> None:
        """``clock``: what ``every`` and the pings' minute are measured with; ``left``:
        what the notifier before this one (a reload) had not told yet."""
        self.cfg = cfg
        self.clock = clock
        self.q: queue.Queue[Message | Ping | None] = queue.Queue(256)
        self.last: dict[str, float] = {}  # kind -> when a message of it last went out
        self.waiting: set[str] = set()  # kinds with a message queued or to be retried
        self.retry: dict[str, tuple[Message, float, float]] = {}  # kind -> (it, when, wait)
        self.muted: dict[str, tuple[int, Message]] = {}  # kind -> (held back, the newest)
        self.thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.lock = threading.Lock()
        self.failed: list[str] = []  # failures logged since the last ping (the first few)
        self.more = 0  # and how many past those: the ping says the count
        self.pinged: float | None = None  # when the last ping was queued
        self.stopping = threading.Event()  # from then on nothing more is sent
        if left is not None:
            self.failed.extend(left.failed[:FAILED_KEPT])
            self.more = left.more + max(0, len(left.failed) - FAILED_KEPT)
            self.last.update(left.told)
            self.muted.update((kind, (n, m)) for kind, n, m in left.muted)
            for message in left.messages:
                self.send(message)

    def left(self) -> Left:
        """What this notifier (stopped) has not told: for the next one (a reload)."""
        queued = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self.q.get_nowait()
                if isinstance(item, Message):
                    queued.append(item)
        if self.stopping.is_set():
            self.q.put_nowait(None)  # (a thread still sending ends after it)
        with self.lock:
            kept = [m for m, _, _ in self.retry.values()]
            muted = tuple((kind, n, m) for kind, (n, m) in self.muted.items())
            return Left(tuple(self.failed), self.more, tuple(kept + queued),
                        tuple(self.last.items()), muted)  # fmt: skip

    def told_at(self, kind: str) -> float | None:
        """When a message of this kind last went out (on the notifier's clock)."""
        with self.lock:
            return self.last.get(kind)

    def forget(self, kind: str) -> None:
        """What was told of this kind is over (a drive back): the next is said at once."""
        with self.lock:
            self.last.pop(kind, None)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Let what is queued go out for a few seconds at most: a server that answers a
        byte at a time must not hold a stop past systemd's ``TimeoutStopSec`` (30 s),
        which would kill the daemon mid-step (the thread is a daemon: it ends with it).
        What is not sent by then stays for ``left`` (a reload's next notifier)."""
        self.stopping.set()
        try:
            self.q.put(None, timeout=STOP_WAIT)
        except queue.Full:
            return
        self.thread.join(timeout=STOP_WAIT)

    def on_event(self, event: dict[str, Any]) -> None:
        """Called for every logged event (from any thread): cheap, never blocks."""
        if self.cfg.heartbeat_url is not None and (what := failure(event)) is not None:
            with self.lock:
                if len(self.failed) < FAILED_KEPT:
                    self.failed.append(what)
                else:
                    self.more += 1
        message = message_for(event)
        if message is not None:
            self.send(message, count=True)

    def heartbeat_due(self) -> bool:
        """Whether a round's end would ping now: a ``heartbeat_url`` is set and the last
        ping is at least a minute old (else the round need not look for problems)."""
        with self.lock:
            return self.cfg.heartbeat_url is not None and (
                self.pinged is None or self.clock.monotonic() - self.pinged >= HEARTBEAT_EVERY
            )

    def heartbeat(self, problems: list[str]) -> bool:
        """A round ended: ping, "/fail" when ``problems`` (what the round found wrong) or
        the failures logged since the last ping say so; not when the last ping is less
        than a minute old (the failures then wait for the next).  Never blocks: the ping
        goes out from the notifier's thread.  True when one was queued."""
        if self.cfg.heartbeat_url is None:
            return False
        with self.lock:
            now = self.clock.monotonic()
            if self.pinged is not None and now - self.pinged < HEARTBEAT_EVERY:
                return False
            try:
                more = (
                    [f"and {self.more} more failure(s): `photod logs --failures`"]
                    if self.more
                    else []
                )
                self.q.put_nowait(Ping((*problems, *self.failed, *more)))
            except queue.Full:
                return False
            self.pinged = now
            self.failed.clear()
            self.more = 0
        return True

    def send(self, message: Message, count: bool = False) -> None:
        """``count``: an event's message (not a reminder's, said again by itself): held
        back by ``every``, it is counted, told with the count once ``every`` passed."""
        now = self.clock.monotonic()
        with self.lock:
            last = self.last.get(message.kind)
            if last is not None and now - last < self.cfg.every:
                self._hold(message, count)
                return  # told already: how many more, and the newest, are told later
            if message.kind in self.waiting:
                # One of its kind is on its way, or waits to be retried: that one says
                # the newest (urgent first), not what came first.
                old = self.retry.get(message.kind)
                if old is not None and (message.urgent or not old[0].urgent):
                    self.retry[message.kind] = (message, old[1], old[2])
                    message = old[0]  # (the one left out is counted)
                self._hold(message, count)
                return
            self.waiting.add(message.kind)
        try:
            self.q.put_nowait(message)
        except queue.Full:
            with self.lock:
                self.waiting.discard(message.kind)

    def _run(self) -> None:
        while True:
            with self.lock:
                due = min((at for _, at, _ in self.retry.values()), default=None)
                for at in (self.last.get(k, NEVER) + self.cfg.every for k in self.muted
                           if k not in self.waiting):  # fmt: skip
                    due = at if due is None else min(due, at)
            wait = None if due is None else max(0.0, due - self.clock.monotonic())
            item: Message | Ping | bool | None
            try:
                item = self.q.get(timeout=wait)
            except queue.Empty:
                item = False  # a retry is due
            if item is None:
                return
            if isinstance(item, Ping):
                self._ping(item)
            elif isinstance(item, Message):
                self._deliver(item, RETRY_FIRST)
            if self.stopping.is_set():
                continue  # (the None that ends the loop is next)
            now = self.clock.monotonic()
            with self.lock:
                due_now = [(m, w) for m, at, w in self.retry.values() if at <= now]
            for m, waited in due_now:
                self._deliver(m, min(RETRY_MAX, waited * 2))
            for m in self._counted(now):
                self._deliver(m, RETRY_FIRST)

    def _hold(self, m: Message, count: bool) -> None:
        if count:  # (under the lock)
            self.muted[m.kind] = (self.muted.get(m.kind, (0, m))[0] + 1, m)

    def _counted(self, now: float) -> list[Message]:
        """What ``every`` held back, its wait over: one message a kind, with the count
        (500 failures are one message that says 500 more, not only the first)."""
        out = []
        with self.lock:
            for kind, (n, m) in list(self.muted.items()):
                if kind in self.waiting or now - self.last.get(kind, NEVER) < self.cfg.every:
                    continue  # (one on its way, or a retry, is told first)
                del self.muted[kind]
                self.waiting.add(kind)
                body = f"{n} more like this since the last message (the latest: {m.body})"
                out.append(Message(kind, m.title, body + "; `photod logs` has each", m.urgent))
        return out

    def _deliver(self, message: Message, wait: float) -> None:
        """Send to every channel; counted as told once one took it, else kept and tried
        again in ``wait`` seconds."""
        channels = self.channels()
        took = not channels
        for channel, send in channels:
            if self.stopping.is_set() and not took:  # kept for the next notifier
                with self.lock:
                    self.retry[message.kind] = (message, self.clock.monotonic(), wait)
                return
            try:
                within(SEND_DEADLINE, lambda: send(message), f"notify-{channel}")  # noqa: B023
            except Exception as exc:  # a channel that fails must not stop the others
                log.warning("notify_failed", channel=channel, error=why(exc),
                            retry_in=None if took else round(wait))  # fmt: skip
            else:
                took = True
                log.info("notification_sent", channel=channel, kind=message.kind,
                         title=message.title)  # fmt: skip
        with self.lock:
            if took:
                self.last[message.kind] = self.clock.monotonic()
                self.waiting.discard(message.kind)
                self.retry.pop(message.kind, None)
            else:
                self.retry[message.kind] = (message, self.clock.monotonic() + wait, wait)

    def _ping(self, ping: Ping) -> None:
        """One heartbeat: a failing URL is one ``notify_failed``, never more."""
        assert self.cfg.heartbeat_url is not None
        import urllib.request  # (see the top: loaded where a message goes out)

        if ping.problems:  # the body is what healthchecks.io shows beside the failure
            body = "\n".join(ping.problems).encode()
            request = urllib.request.Request(fail_url(self.cfg.heartbeat_url), data=body,
                                             headers={"Content-Type": "text/plain; charset=utf-8"})  # fmt: skip
        else:
            request = urllib.request.Request(self.cfg.heartbeat_url)

        def ping_once() -> None:
            with _opener().open(request, timeout=HEARTBEAT_TIMEOUT) as response:
                response.read(RESPONSE_MAX)

        try:  # (a dripping answer is given up too: the messages after it wait on it)
            within(2 * HEARTBEAT_TIMEOUT, ping_once, "notify-heartbeat")
        except Exception as exc:  # a dead switch must not stop the messages after it
            log.warning("notify_failed", channel="heartbeat", error=why(exc))
        else:
            log.info("heartbeat_sent", outcome="fail" if ping.problems else "ok",
                     problems=list(ping.problems))  # fmt: skip

    def channels(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if self.cfg.desktop and (
            sys.platform == "darwin" or os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        ):
            out.append(("desktop", _desktop))
        if self.cfg.webhook:
            out.append(("webhook", self._webhook))
        if self.cfg.email_to:
            out.append(("email", self._email))
        return out

    def _webhook(self, m: Message) -> None:
        import urllib.request  # (see the top)

        assert self.cfg.webhook is not None
        if self.cfg.webhook_format == "ntfy":
            data = m.body.encode()
            # A header is Latin-1: a title beyond it (a phone called "Anna’s iPhone")
            # goes as one RFC 2047 word, which ntfy decodes.
            title = m.title if m.title.isascii() else (
                f"=?UTF-8?B?{base64.b64encode(m.title.encode()).decode()}?=")  # fmt: skip
            headers = {"Title": title, "Priority": "urgent" if m.urgent else "default"}
        else:  # Gotify reads title/message/priority, Slack and Mattermost read text
            # (Slack reads <...> in text as a link or a mention: <!channel> in a file
            # name would call the whole channel.)
            text = _text(f"*{m.title}*\n{m.body}")
            data = json.dumps({"title": m.title, "message": m.body, "priority": 8 if m.urgent
                               else 5, "text": text, "kind": m.kind}).encode()  # fmt: skip
            headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(self.cfg.webhook, data=data, headers=headers)
        with _opener().open(request, timeout=30) as response:
            response.read(RESPONSE_MAX)

    def _email(self, m: Message) -> None:
        import smtplib  # (see the top)
        from email.message import EmailMessage

        c = self.cfg
        assert c.smtp_host is not None and c.email_to is not None
        mail = EmailMessage()
        mail["Subject"] = m.title
        mail["From"] = c.email_from or f"photod@{os.uname().nodename}"
        mail["To"] = c.email_to
        mail.set_content(m.body + "\n\n-- photod (`photod status` and `photod logs` say more)\n")
        smtp_class = smtplib.SMTP_SSL if c.smtp_tls == "ssl" else smtplib.SMTP
        with smtp_class(c.smtp_host, c.smtp_port, timeout=30) as smtp:
            if c.smtp_tls == "starttls":
                smtp.starttls()
            if c.smtp_user:
                password = c.smtp_password_file.read_text().strip() if c.smtp_password_file else ""
                smtp.login(c.smtp_user, password)
            smtp.send_message(mail)


def why(exc: Exception) -> str:
    """What a channel's failure says, never its URL: a malformed one's error quotes
    part of it ("nonnumeric port: 's3cr3tTOKEN'"), and it may hold a token."""
    import http.client  # (see the top; loaded already where a message failed)

    if isinstance(exc, http.client.InvalidURL) or (
        isinstance(exc, ValueError)
        and not isinstance(exc, UnicodeError)
        and "url" in str(exc).lower()
    ):
        return "the URL is malformed: check it in the config"
    return str(exc) or type(exc).__name__


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """What sends a message or a heartbeat over HTTP, made once (see the top)."""
    import urllib.request

    class KeepPost(urllib.request.HTTPRedirectHandler):
        """A redirect of a POST (a message, a "/fail" ping) is followed with the POST and
        its body: urllib would send an empty GET instead (a message lost, a "/fail" read
        as "all is well", so that a URL behind http-to-https could never go red)."""

        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> Any:  # fmt: skip
            if req.data is None:
                return super().redirect_request(req, fp, code, msg, headers, newurl)
            return urllib.request.Request(newurl, data=req.data, headers=dict(req.headers),
                                          method=req.get_method())  # fmt: skip

    return urllib.request.build_opener(KeepPost)


def _text(body: str) -> str:
    """A body as text for a freedesktop notification server, which reads it as markup
    (`<a href>`, `<img>`): a file name or a phone's name from the event stays text."""
    return body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _desktop(m: Message) -> None:
    if sys.platform == "darwin":
        # The text goes in as arguments, never into the script: no quoting to get wrong.
        script = "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run"
        subprocess.run(["osascript", "-e", script, m.title, m.body], check=True, timeout=30,
                       capture_output=True)  # fmt: skip
        return
    hints = {"urgency": ("y", 2 if m.urgent else 1)}
    name = "org.freedesktop.Notifications"
    # Started on demand where the desktop's notification server is D-Bus activated.
    network.call("SESSION", name, "/org/freedesktop/Notifications", name, "Notify",
                 "susssasa{sv}i", (APP, 0, "drive-harddisk", m.title, _text(m.body), [], hints, -1),
                 timeout=10, auto_start=True)  # fmt: skip
