"""Whether an S3 server refuses a PUT over an object (``If-None-Match: *``), as learned
by a probe and kept until a request goes unanswered: the next answer may come from
another server at the same address (a NAS replaced), which is asked again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

PROBE_AGAIN = 600.0  # seconds before a probe that failed is tried again


class OverwriteRule:
    def __init__(self) -> None:
        self._refused: bool | None = None  # what the probe learned
        self._probing = threading.Lock()  # (one probe for the threads that ask at once)
        self._probe_after = 0.0  # (a probe that failed: not before then)
        self._cuts = 0  # requests the server did not answer, so far (``forget``)
        self._asked_at = 0  # how many there were when ``_refused`` was learned
        self._thrown = False  # the last probe's answer was thrown away (``refused``)

    def forget(self) -> None:
        """A request got no answer.  A count, not a lock: a thread told of a cut never
        waits on a probe going on."""
        self._cuts += 1  # (two at once may count one: it still differs from before)

    def refused(self, probe: Callable[[], bool | None]) -> bool | None:
        """The server's rule, probed when not known (None: not learned; a probe that
        failed is asked again in a while, not at every upload).  An answer learned while
        a request went unanswered is not kept, and is asked again at the next call; thrown
        away twice running, in a while."""
        with self._probing:
            if self._refused is not None and self._asked_at != self._cuts:
                self._refused = None  # a request went unanswered since it was learned
            if self._refused is None and time.monotonic() >= self._probe_after:
                cuts = self._cuts
                answer = probe()
                if answer is None:
                    self._probe_after = time.monotonic() + PROBE_AGAIN
                elif cuts == self._cuts:
                    self._refused, self._asked_at, self._thrown = answer, cuts, False
                elif not self._thrown:
                    # Thrown away for another request cut meanwhile (a stop's among
                    # them): no failure to wait for, asked again at the next need.
                    self._thrown = True
                else:  # twice running: a link that cuts often, not a probe at every upload
                    self._probe_after = time.monotonic() + PROBE_AGAIN
            return self._refused
