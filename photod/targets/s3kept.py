"""An S3 target's multipart uploads given up on a cut network, kept on the server for
the next upload of the same file to resume (``s3upload.S3Writer``)."""

from __future__ import annotations

import threading
import weakref


class Kept:
    """One target's multipart uploads given up while the network was down for longer
    than ``part_retry``, by their file's key: (upload key, upload id, token, record).
    The next upload of that file in this process resumes one (``S3Writer``), its parts
    on the server not sent again.  Their records stay in the catalog (a crash's tidy
    ends them), and the fleet's tidy when the target is back leaves them (``temps``),
    from their keeping to the end of the writer that resumes one: a tidy between that
    writer's making and ``Temporaries.register`` (which makes it one in flight) aborted the
    upload, and every part was sent again.  Only while that writer lives: one given up
    unended (its try cut short before it was noted in flight) no longer keeps the
    tidy from ending the upload (it stayed on the server, billed, until a restart).
    One whose photo's copy is recorded with no upload is ended (``Temporaries.forsake``)."""

    def __init__(self) -> None:
        self._uploads: dict[str, tuple[str, str, str, str]] = {}
        # The records of those a writer resumes now, by that writer (held weakly).
        self._taken: weakref.WeakValueDictionary[str, object] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def keep(self, key: str, upload: tuple[str, str, str, str]) -> None:
        with self._lock:
            self._uploads[key] = upload
            self._taken.pop(upload[3], None)

    def take(self, key: str, writer: object) -> tuple[str, str, str, str] | None:
        with self._lock:
            upload = self._uploads.pop(key, None)
            if upload is not None:
                self._taken[upload[3]] = writer
            return upload

    def forget(self, key: str) -> str | None:
        """No try will resume the upload kept for ``key`` (its photo's copy was recorded
        without one): its record, to end now; one a writer took is not touched."""
        with self._lock:
            upload = self._uploads.pop(key, None)
            return None if upload is None else upload[3]

    def done(self, temp: str) -> None:
        """The writer that resumed the upload recorded as ``temp`` ended it."""
        with self._lock:
            self._taken.pop(temp, None)

    def temps(self) -> set[str]:
        with self._lock:
            return {upload[3] for upload in self._uploads.values()} | set(self._taken.keys())
