"""D-Bus, the one way photod asks the desktop and the system: whether the computer's
connection is metered (NetworkManager on the system bus), and the desktop's
notification server (on the session bus, for ``notify``).  The only module that imports
jeepney; every error of the bus becomes ``OSError`` here.

The system bus is where ``DBUS_SYSTEM_BUS_ADDRESS`` says, as for every D-Bus program
(``/var/run/dbus/system_bus_socket`` without it); the tests point it at a private bus
with a fake NetworkManager (tests/fakenm.py).
"""

from __future__ import annotations

from typing import Any

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
# NMMetered: 0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no.  NetworkManager guesses
# "yes" for a phone's hotspot (an Android tether, an iPhone's Personal Hotspot).
METERED = frozenset({1, 3})
TIMEOUT = 2.0  # seconds a bus call may take: the probe waits for it


def call(
    bus: str,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str | None = None,
    body: tuple[Any, ...] = (),
    timeout: float = TIMEOUT,
    auto_start: bool = False,
) -> tuple[Any, ...]:
    """One method call on ``bus`` ("SESSION", "SYSTEM" or an address) and its reply's
    body.  A service that is not running is started for it only with ``auto_start``
    (a NetworkManager that is installed but off is not woken by a probe).  Raises ``OSError`` for everything that goes wrong: no bus, a refused connection,
    no such service, an error reply, a timeout."""
    try:
        from jeepney import DBusAddress, MessageFlag, MessageType, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        address = DBusAddress(path, bus_name=destination, interface=interface)
        message = new_method_call(address, member, signature, body)
        if not auto_start:
            message.header.flags |= MessageFlag.no_auto_start
        with open_dbus_connection(bus=bus, auth_timeout=timeout) as conn:
            reply = conn.send_and_get_reply(message, timeout=timeout)
    except OSError:
        raise
    except Exception as exc:  # jeepney's: a bad address, a failed handshake, a bad reply
        raise OSError(f"D-Bus {bus.lower()} bus: {type(exc).__name__}: {exc}") from exc
    if reply.header.message_type == MessageType.error:
        raise OSError(f"{destination} refused {member}: {reply.body}")
    return tuple(reply.body)


def nm_metered() -> int | None:
    """NetworkManager's ``Metered`` (NMMetered, see ``METERED``), or None where it
    cannot be asked: no system bus, no NetworkManager (systemd-networkd, macOS)."""
    try:
        (value,) = call("SYSTEM", NM, NM_PATH, "org.freedesktop.DBus.Properties", "Get", "ss",
                        (NM, "Metered"))  # fmt: skip
    except (OSError, ValueError):
        return None
    # A property comes as a variant: (signature, value).
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return value[1]
    return None


def metered_now() -> bool:
    """Whether the computer's connection is metered now (NetworkManager says yes, or
    guesses yes); False where nothing can say (no NetworkManager, no system bus)."""
    return nm_metered() in METERED
