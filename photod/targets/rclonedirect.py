"""A photo sent through rclone to a bucket store (S3, B2, GCS, Azure...) goes straight
to its name, not through a temporary moved there.

Such a store shows an object only once its upload is whole, so nothing partial is ever
under a real name without a temporary; and on it rclone's move is a copy of every byte
on the server, then a delete: twice the server's work for each photo (measured, 200
photos of 2 MB to ``rclone serve s3``: 59 ms of CPU a photo through a temporary, 47
straight, with rcd's and the server's).

A photo up to STREAM_CUTOFF (one PUT) is held in memory as it is written, and nothing is
sent before its commit; a larger one (a movie) streams into its temporary as before.
At the commit, what the temporary did in the race of two computers for one name
(``rclonerival``) a stand-in does: a small object under the temporary's name in
``.photod/tmp/``, put before a look at that folder and at the name, and there until
the photo under its name is proved.  Another upload's temporary or stand-in for the
name, or a file there, and the held bytes go to the temporary (taking the stand-in's
place) and the old way.  Of two commits for one name, each put its stand-in before its
look, so the later look sees the earlier one's, or once that one is done, its file:
never both straight to the name.  The stand-in lives for a commit's few requests, so no
sweep of old temporaries meets it in use (``RcloneTarget._sweep`` leaves stand-ins to
the age rule even under this computer's id: a clone's may be in use).

A copy given up before its commit sent nothing.  A photo sent straight that failed may
land yet (rclone's wait for the store's answer timed out): its stand-in stays, in the
catalog, keeping other computers' copies off the name till the target's tidy (when it
is back, or the next start).  Other bytes found under the
name at the proof are another's file (on a store whose listing lagged), or ours damaged
on the way: never moved nor removed; the held photo goes beside.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING

from photod import failpoints
from photod.errors import KeyExists, PhotodError
from photod.models import VerifyMethod
from photod.targets.rcloneproof import remote_sha256
from photod.targets.rclonerival import STAND_IN, others_for
from photod.targets.rclonesays import complaint

if TYPE_CHECKING:
    from photod.targets.rclone import RcloneTarget, RcloneWriter

BOUNDARY = "photod-upload-boundary"  # (never within a form's one part: its length is sent)
# A photo sent straight is sent once by rclone: one cut as a laptop went to sleep is not
# sent again on waking, a day on, over what another computer put there meanwhile.
STRAIGHT = {"LowLevelRetries": 1}


def part_head(boundary: str, name: str) -> bytes:
    """The head of an upload's one form part, for a file ``name``: in RFC 2231's form,
    which carries any name (a photo's own, with spaces, quotes or emoji) as it is."""
    quoted = urllib.parse.quote(name, safe="")
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file0"; '
        f"filename*=UTF-8''{quoted}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


def upload_whole(t: RcloneTarget, key: str, data: bytes | bytearray, config: str = "") -> None:
    """One upload of bytes held whole (its length said: no chunks for rcd to decode)."""
    folder, _, name = key.rpartition("/")
    parts = [part_head(BOUNDARY, name), data, f"\r\n--{BOUNDARY}--\r\n".encode()]
    params = {"fs": t.remote, "remote": folder, **({"_config": config} if config else {})}
    status, said = t.post(f"/operations/uploadfile?{urllib.parse.urlencode(params)}", parts,
                          {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                           "Content-Length": str(sum(map(len, parts)))})  # fmt: skip
    if status != 200:
        raise t.error(complaint(said))


def look(t: RcloneTarget, temp_key: str, key: str) -> tuple[bool, int | None]:
    """After the stand-in is put: whether another upload for ``key`` waits in
    ``.photod/tmp/`` (a temporary or a stand-in of another computer's, of a clone's, or
    an earlier try's), and the size of the file that has the name (None: free)."""
    return bool(others_for(t, temp_key, key)), t.size(key)


def commit_held(
    w: RcloneWriter, held: bytearray, key: str, sha256: str, proof: tuple[str, str]
) -> VerifyMethod:
    """Publish a photo held whole under ``key``: straight there where it is free, else
    through its temporary (``RcloneWriter.commit_moved``)."""
    t = w.t
    if not w.begun:  # (a second commit, under another name, has its stand-in)
        w.begun = True
        upload_whole(t, w.temp_key, STAND_IN)
        w.answered = True  # (rcd is done with it: it may be removed)
    waiting, there = look(t, w.temp_key, key)
    if there is not None:  # (the writer holds it still: committed again under another name)
        raise KeyExists(key, size=there)
    if waiting:
        return w.commit_moved(key, sha256, proof)
    config = json.dumps({**json.loads(w.config or "{}"), **STRAIGHT})
    w.answered = False  # (a failure here leaves the stand-in to the target's tidy)
    upload_whole(t, key, held, config)
    w.answered = True
    failpoints.hit("rclone_uploaded")  # (whole under its name, not yet proved)
    stored, method = remote_sha256(t, key, sha256, *proof)
    if stored != sha256:
        raise KeyExists(key, other=True)  # (the writer still holds it: beside, next)
    w.held = None
    try:
        t.delete_temp(w.temp_key)  # (the stand-in: its job is done)
    except PhotodError:
        t._left_behind(w.temp_key)  # (the target's next check removes it)
    return method
