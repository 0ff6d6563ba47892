"""Being told when something fails: desktop notifications, a webhook, e-mail.

The notifier listens to the event log (``logs.listen``): a few events become a message
(a backup step failed, a copy went bad or an asset was lost, an import finished, a
phone waits for Trust), and the daemon's probe adds two reminders of its own (a target
away longer than its ``expect_every``, assets short of the policy for longer than
``grace``).  Messages go out from one thread, so a slow mail server never holds up a
copy; each kind at most once per ``[notify] every``.  A channel that fails is logged
(``notify_failed``) and tried again with the next message.

Channels: the desktop (org.freedesktop.Notifications over the session D-Bus, through
jeepney, the only module that imports it; osascript on macOS), a webhook (JSON that
Gotify and Slack take, or ntfy's plain text), SMTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from photod.config import NotifyConfig
from photod.logs import log

APP = "photod"


@dataclass(frozen=True)
class Message:
    kind: str  # what the rate limit counts: "failure", "damage", "import", ...
    title: str
    body: str
    urgent: bool = False


def message_for(event: dict[str, Any]) -> Message | None:
    """The message an event deserves, or None (most events deserve none)."""
    name = str(event.get("event", ""))
    path = event.get("path", "")
    target = event.get("target", "")
    device = event.get("device") or event.get("udid", "")
    if name in ("job_failed", "ingest_failed", "device_import_failed", "scrub_interrupted"):
        why = event.get("error") or event.get("reason") or event.get("detail") or ""
        return Message("failure", "photod: a backup step failed", f"{name}: {why}".strip(": "))
    if name == "catalog_untrusted":
        return Message("catalog", "photod: backups stopped",
                       f"{event.get('found', '')}; {event.get('fix', '')}", True)  # fmt: skip
    if name == "catalog_recovered":
        return Message("catalog", "photod: the catalog was rebuilt from a target",
                       f"{event.get('found', '')}: rebuilt from '{target}' "
                       f"({event.get('assets', 0)} photos); nothing on any target changed")  # fmt: skip
    if name == "state_dir_full":
        return Message("failure", "photod: no room left in the state dir",
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
        return Message("damage", "photod: a file in a watch folder changed on disk",
                       f"{path} in '{event.get('source', '')}' no longer has the bytes backed up "
                       "(bit rot?); restore it with `photod restore`")  # fmt: skip
    if name == "drill_failed":
        return Message("damage", "photod: a restore drill failed",
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


class Notifier:
    def __init__(self, cfg: NotifyConfig) -> None:
        self.cfg = cfg
        self.q: queue.Queue[Message | None] = queue.Queue(256)
        self.last: dict[str, float] = {}  # kind -> when a message of it last went out
        self.thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self.lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=30)

    def on_event(self, event: dict[str, Any]) -> None:
        """Called for every logged event (from any thread): cheap, never blocks."""
        message = message_for(event)
        if message is not None:
            self.send(message)

    def send(self, message: Message) -> None:
        now = time.monotonic()
        with self.lock:
            last = self.last.get(message.kind)
            if last is not None and now - last < self.cfg.every:
                return  # told already; the log has every event
            self.last[message.kind] = now
        with contextlib.suppress(queue.Full):
            self.q.put_nowait(message)

    def _run(self) -> None:
        while (message := self.q.get()) is not None:
            for channel, send in self._channels():
                try:
                    send(message)
                except Exception as exc:  # a channel that fails must not stop the others
                    log.warning("notify_failed", channel=channel, error=str(exc))
                else:
                    log.info("notification_sent", channel=channel, kind=message.kind,
                             title=message.title)  # fmt: skip

    def _channels(self) -> list[tuple[str, Any]]:
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
        assert self.cfg.webhook is not None
        if self.cfg.webhook_format == "ntfy":
            data = m.body.encode()
            headers = {"Title": m.title, "Priority": "urgent" if m.urgent else "default"}
        else:  # Gotify reads title/message/priority, Slack and Mattermost read text
            data = json.dumps({"title": m.title, "message": m.body, "priority": 8 if m.urgent
                               else 5, "text": f"*{m.title}*\n{m.body}", "kind": m.kind}).encode()  # fmt: skip
            headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(self.cfg.webhook, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def _email(self, m: Message) -> None:
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


def _desktop(m: Message) -> None:
    if sys.platform == "darwin":
        # The text goes in as arguments, never into the script: no quoting to get wrong.
        script = "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run"
        subprocess.run(["osascript", "-e", script, m.title, m.body], check=True, timeout=30,
                       capture_output=True)  # fmt: skip
        return
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    address = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                          interface="org.freedesktop.Notifications")  # fmt: skip
    hints = {"urgency": ("y", 2 if m.urgent else 1)}
    call = new_method_call(address, "Notify", "susssasa{sv}i",
                           (APP, 0, "drive-harddisk", m.title, m.body, [], hints, -1))  # fmt: skip
    with open_dbus_connection(bus="SESSION") as conn:
        reply = conn.send_and_get_reply(call, timeout=10)
    if reply.header.message_type.name == "error":
        raise OSError(f"the notification server refused: {reply.body}")
