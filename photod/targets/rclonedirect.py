"""A photo sent through rclone to a bucket store (S3, B2, GCS, Azure...) goes straight
to its name, not through a temporary moved there.

Such a store shows an object only once its upload is whole, so nothing partial is ever
under a real name without a temporary; and on it rclone's move is a copy of every byte
on the server, then a delete: twice the server's work for each photo (measured, 200
photos of 2 MB to ``rclone serve s3``: 59 ms of CPU a photo through a temporary, 47
straight, with rcd's and the server's).

What the temporary did in the race of two computers for one name (``rclonerival``),
a stand-in does: a small object under the temporary's name in ``.photod/tmp/``, put
before the look, there until the photo under its name is proved.  The look lists
``.photod/tmp/`` and then asks the name: another upload's temporary or stand-in for the
name, or a file there, and the copy goes the old way, through its temporary (which takes
the stand-in's place).  Of two uploads for one name, each put its stand-in before its
look, so the later look sees the earlier one's, or once that one is done, its file:
never both straight to the name.

An upload cut before its body's end (a copy given up, photod stopped or killed) leaves
nothing under the name: rclone completes no object whose body did not end (measured, cut
at 3 MB, one PUT, and at 12 MB, a multipart upload: nothing, the upload aborted).  One
sent whole that the store did not say it stored may land yet: its stand-in stays till
the target's tidy.  The stand-in is a copy's temporary: recorded in the catalog before
it is put, removed by the tidy after a crash (a snapshot's, unrecorded, by its age:
``RcloneTarget._sweep`` leaves every stand-in to the age rule, a clone's upload may be
under way under this computer's id).
"""

from __future__ import annotations

import http.client
import urllib.parse
from typing import TYPE_CHECKING

from photod.errors import KeyExists, PhotodError, TargetUnavailable
from photod.models import VerifyMethod
from photod.targets.rcloneproof import remote_sha256
from photod.targets.rclonerival import STAND_IN, in_tmp, name_tag
from photod.targets.rclonesays import complaint

if TYPE_CHECKING:
    from photod.targets.rclone import RcloneTarget, RcloneWriter

# Seconds a stand-in stays unchanged in a long upload (a movie over a slow link): a
# sweep takes one seen unchanged for a day for a crash's (``RcloneTarget._sweep``).
STAND_IN_REFRESH = 6 * 3600.0


def part_head(boundary: str, name: str) -> bytes:
    """The head of an upload's one form part, for a file ``name``: in RFC 2231's form,
    which carries any name (a photo's own, with spaces, quotes or emoji) as it is."""
    quoted = urllib.parse.quote(name, safe="")
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file0"; '
        f"filename*=UTF-8''{quoted}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


def put_stand_in(t: RcloneTarget, temp_key: str) -> None:
    """Put the stand-in at ``temp_key``: one small upload, whole when this returns."""
    folder, _, name = temp_key.rpartition("/")
    boundary = "photod-stand-in"
    body = part_head(boundary, name) + STAND_IN + f"\r\n--{boundary}--\r\n".encode()
    query = urllib.parse.urlencode({"fs": t.remote, "remote": folder})
    conn = t.rcd.connection()
    try:
        conn.request("POST", f"/operations/uploadfile?{query}", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
        response = conn.getresponse()
        said = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise TargetUnavailable(t.name, t.rcd.why(exc)) from exc
    finally:
        conn.close()
    if response.status != 200:
        raise t.error(complaint(said))


def free_to_go_straight(t: RcloneTarget, temp_key: str, key: str) -> bool:
    """After the stand-in is put: whether no other upload for ``key`` waits in
    ``.photod/tmp/`` (a temporary or a stand-in of another computer's, of a clone's, or
    an earlier try's) and no file has the name."""
    tag = name_tag(key)
    for item in in_tmp(t):
        other = str(item.get("Path", ""))
        if other != temp_key and other.endswith(tag):
            return False
    return t.size(key) is None


def commit_straight(w: RcloneWriter, key: str, sha256: str, proof: tuple[str, str]) -> VerifyMethod:
    """End an upload that went straight to its name, and prove it there: by the
    remote's hash, or read back.  Other bytes there are taken for another's file (a
    name taken: KeyExists), never removed nor moved: another computer's counted copy,
    on a store whose listing lagged, or ours damaged on its way (left there, unrecorded:
    the next try sees the name taken, reads it, and goes beside)."""
    if key != w.key:  # (its bytes went to ``w.key``: this copy fails, the next goes beside)
        raise KeyExists(key, other=True)
    t = w.t
    w._finish_upload()
    stored, method = remote_sha256(t, key, sha256, *proof)
    if stored != sha256:
        raise KeyExists(key, other=True)
    try:
        t.delete_temp(w.temp_key)  # (the stand-in: its job is done)
    except PhotodError:
        t._left_behind(w.temp_key)  # (the target's next check removes it)
    return method
