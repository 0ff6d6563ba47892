"""Whether another upload waits to take the name a copy is about to take on an rclone
remote, with other bytes.

rclone's move with ``IgnoreExisting`` looks at the name, then renames: two computers
of a family publishing one name at the same instant both pass the look, the later
rename replaces the earlier file, and both were told their copy is there (one was
gone).  No remote rclone reaches offers a rename that refuses a taken name, so each
upload's temporary carries a tag of the name it is for, and a copy looks in
``.photod/tmp/`` after its temporary is whole and before it moves: a temporary of the
same name from another computer's upload, holding other bytes, means the name is
contested, and the copy goes under its other name (``KeyExists(other=True)``: the
suffix of its own SHA-256, which no other photo takes).  Since each temporary is there
from before its look until its move, of two uploads that both moved, one looked after
the other's move, and rclone's own look then saw the name taken.  (It needs a listing
that shows a finished upload at once: a local disk, SFTP, S3, GCS, B2 and Azure do.)

Not rivals: the same bytes (whichever rename comes last, the name holds them); an
upload still being sent (on SFTP or a local disk rclone writes the temporary in place,
and it grows: its own look comes after it is whole, and sees this copy's temporary or
its file).  This installation's own are looked at too: one key is one photo's in its
catalog, but a computer cloned from its disk writes under its id; a temporary an
earlier try left holding other bytes sends the copy beside, which is safe.  A
stand-in (``rclonedirect``: another commit going straight to the name, on a bucket
store) holds no bytes to compare: it is waited for a while (the same photo from two
computers, once there, is found and adopted, not kept twice), and is a rival if it
stays.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

from photod.errors import Stopping, TargetUnavailable
from photod.targets.objects import TMP
from photod.targets.rcloneproof import remote_sha256

if TYPE_CHECKING:
    from photod.targets.rclone import RcloneTarget

GROWING = 1.0  # seconds a smaller temporary is watched for growth (an upload in flight)
STAND_IN_LOOKS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before each look for its end
# What a stand-in holds (``rclonedirect``: a commit going straight to its name on a
# bucket store): no bytes of its photo to compare, and it never grows.
STAND_IN = b"photod: an upload to this name is in flight; see photod's README\n"


def name_tag(key: str) -> str:
    """The end of a temporary's name that says which name its upload is for."""
    return "." + hashlib.sha256(key.encode()).hexdigest()[:16]


def in_tmp(t: RcloneTarget, times: bool = False) -> list[dict[str, object]]:
    """What ``.photod/tmp/`` holds: the uploads in flight, their temporaries and
    stand-ins (each item's ``Path`` and ``Size``, and with ``times`` its ``ModTime``)."""
    answer = t.call("operations/list", missing_ok=True, fs=t.remote, remote=TMP.rstrip("/"),
                    opt={"filesOnly": True, "noModTime": not times, "noMimeType": True})  # fmt: skip
    return list(answer.get("list", []))


def others_for(t: RcloneTarget, temp_key: str, key: str) -> list[tuple[str, int]]:
    """The other uploads for ``key`` waiting in ``.photod/tmp/`` (another computer's,
    a clone's, an earlier try's: all but ``temp_key``): their names and sizes."""
    tag = name_tag(key)
    found = ((str(item.get("Path", "")), int(str(item.get("Size", -1)))) for item in in_tmp(t))
    return [(other, size) for other, size in found if other != temp_key and other.endswith(tag)]


def stand_in_changed(t: RcloneTarget, other: str) -> int | None:
    """Another commit's stand-in, watched over STAND_IN_LOOKS: None once it went (its
    photo is proved under its name, where rclone's look sees it, or its copy was given
    up), else its size then (that of the temporary that took its place, or its own:
    still there).  photod's stop ends the wait."""
    stop = t.rcd.stop_event
    for wait in STAND_IN_LOOKS:
        if stop is None:
            time.sleep(wait)
        elif stop.wait(wait):
            raise Stopping
        if (now := t.size(other)) != len(STAND_IN):
            return now
    return len(STAND_IN)


def rival(
    t: RcloneTarget, temp_key: str, key: str, sha256: str, size: int, proof: tuple[str, str]
) -> bool:
    """Whether another upload for ``key`` (another computer's, a clone's) holds other
    bytes than ours (the upload at ``temp_key``: ``size`` bytes, ``sha256``, the
    remote's ``proof`` hash).
    A larger one does; a smaller one unless it grows (in flight); one of our size
    where the remote's hash of it or its bytes read back say so, or it cannot be read
    (two uploads of one name at once are rare: that cost is too).  One gone meanwhile
    was moved or removed: rclone's look sees the first."""
    for other, seen in others_for(t, temp_key, key):
        if seen == len(STAND_IN) != size:  # (a stand-in's size: no photo's upload shows it long)
            if (now := stand_in_changed(t, other)) is None:
                continue
            if now == len(STAND_IN):
                return True  # (still there: going beside it is safe, waiting may be long)
            seen = now  # (its commit's name was taken: its temporary, judged as one)
        if seen < size:
            time.sleep(GROWING)
            if (now := t.size(other)) is None or now > seen:
                continue  # (moved, removed, or still coming)
        if seen != size:
            return True
        try:
            if remote_sha256(t, other, sha256, *proof)[0] != sha256:
                return True
        except TargetUnavailable:
            if t.size(other) is not None:
                return True  # (unread: going beside it is safe, waiting on it may be for ever)
    return False
