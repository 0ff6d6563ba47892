"""What an rclone remote says of its free space: asked only once an upload was refused,
so that a photo larger than the room left waits without being sent again and again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from photod.errors import TargetFull, TargetUnavailable

if TYPE_CHECKING:
    from photod.targets.rclone import RcloneTarget

ROOM_AGE = 60.0  # seconds what the remote said of its free space is taken as still true


class Room:
    def __init__(self, target: RcloneTarget) -> None:
        self.t = target
        self._said: tuple[float, int | None] | None = None  # (monotonic time, free bytes)
        self._says = True  # False once the remote said it cannot tell (no About)
        self.short = False  # an upload was refused for want of room, and none landed since

    def refused(self, message: str, size: int) -> TargetUnavailable:
        """An upload the remote refused: TargetFull when it now has less room than the
        file (an SFTP server says only "Failure" when its disk is full), else what it
        said."""
        self._said = None  # (asked afresh)
        free = self.free()
        if free is not None and free < size:
            self.short = True
            return TargetFull(self.t.name, size, free)
        return self.t.error(message)

    def free_bytes(self) -> int | None:
        """What the remote says it has free, once it refused an upload for want of room
        and until a copy lands (None otherwise): a file larger than that then waits
        without being sent.  Not before: a remote whose About says 0 for "unknown"
        (some WebDAV servers) would hold back every copy, none of them tried."""
        return self.free() if self.short else None

    def free(self) -> int | None:
        """What the remote says it has free (``operations/about``: an SFTP server's
        disk, a cloud drive's quota), asked at most once a ``ROOM_AGE`` and again after
        an upload failed; None where it does not say (most object stores) or does not
        answer now."""
        said = self._said
        if said is None or time.monotonic() - said[0] >= ROOM_AGE:
            said = self._said = (time.monotonic(), self._ask())
        return said[1]

    def _ask(self) -> int | None:
        if not self._says:
            return None
        try:
            free = self.t.call("operations/about", fs=self.t.remote).get("free")
        except TargetUnavailable as exc:
            if "about" in exc.reason.lower() and "support" in exc.reason.lower():
                self._says = False  # ("doesn't support about": never asked again)
            return None
        return free if isinstance(free, int) else None
