"""A fake NetworkManager on a private D-Bus bus: a real ``dbus-daemon`` (its session
configuration, which lets anyone own any name) and, on it, a jeepney server that owns
``org.freedesktop.NetworkManager`` and answers ``org.freedesktop.DBus.Properties``
for ``/org/freedesktop/NetworkManager`` as NetworkManager does: ``Metered`` is a
``u`` (NMMetered: 0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no) the test sets.

photod finds it through ``DBUS_SYSTEM_BUS_ADDRESS`` (``address``), the variable every
D-Bus program reads for the system bus.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from jeepney import MessageType, message_bus, new_error, new_method_return
from jeepney.io.blocking import open_dbus_connection

from tests.servers import need

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
YES, NO, GUESS_YES, GUESS_NO = 1, 2, 3, 4


class Bus:
    """A private dbus-daemon listening on a socket in ``folder``."""

    def __init__(self, folder: Path) -> None:
        daemon = need("dbus-daemon", "apt install dbus-daemon")
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [daemon, "--session", "--nofork", "--print-address",
             f"--address=unix:path={folder / 'system_bus_socket'}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()  # printed once it listens
        if not self.address:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"dbus-daemon did not start (exit {self.proc.returncode})")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class FakeNetworkManager:
    """NetworkManager's ``Metered`` property, served on ``bus`` until ``close``."""

    def __init__(self, bus: Bus, metered: int = NO) -> None:
        self.metered = metered
        self.asked = 0  # how many times the property was read
        self.conn = open_dbus_connection(bus=bus.address)
        reply = self.conn.send_and_get_reply(message_bus.RequestName(NM))
        assert (1,) == reply.body, f"could not own {NM}: {reply.body}"  # 1: primary owner
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fakenm", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                msg = self.conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if msg.header.message_type == MessageType.method_call:
                self.conn.send(self._answer(msg))

    def _answer(self, msg: Any) -> Any:
        fields = msg.header.fields  # 1: PATH, 2: INTERFACE, 3: MEMBER
        path, interface, member = fields.get(1), fields.get(2), fields.get(3)
        if path == NM_PATH and interface == PROPERTIES and member == "Get":
            if tuple(msg.body) == (NM, "Metered"):
                self.asked += 1
                return new_method_return(msg, "v", (("u", self.metered),))
            return new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty", "s",
                             (f"no property {msg.body[1]}",))  # fmt: skip
        if path == NM_PATH and interface == PROPERTIES and member == "GetAll":
            return new_method_return(msg, "a{sv}", ({"Metered": ("u", self.metered)},))
        return new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s",
                         (f"{interface}.{member} is not served here",))  # fmt: skip

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.conn.close()
