"""The record of the temporaries of copies in flight: each noted in the catalog before
any byte is written, so that a crash's tidy finds and removes it; kept in step with
what the writer says as it goes (an S3 upload's id, once the server gave it), and
dropped once nothing of it is left on the target.  The fleet's tidy when a target is
back leaves the ones in flight alone (``writing``).  Every copy (``copies.Copier``)
goes through one ``Temporaries``.
"""

from __future__ import annotations

import functools
import threading
import weakref

from photod.catalog import Catalog
from photod.errors import PhotodError
from photod.fleet import TargetState
from photod.targets.base import Writer


class Temporaries:
    def __init__(self, catalog: Catalog, targets: dict[str, TargetState]) -> None:
        self.catalog = catalog
        self.targets = targets
        # What the catalog holds for each open writer's temporary (``renote``), held
        # weakly: a writer that commits is never ended here, and leaves with itself.
        self._noted: weakref.WeakKeyDictionary[Writer, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def register(self, writers: dict[str, Writer]) -> None:
        """Note the temporaries (a ``temp_key``) before any byte is written."""
        with self._lock:  # (with the catalog's record: ``writing``)
            self.catalog.add_temps([(n, w.temp_key) for n, w in writers.items() if w.temp_key])
            for w in writers.values():
                self._noted[w] = w.temp_key
        for name, w in writers.items():  # an upload says when the server named it, even
            inner: object = w  # inside an encrypted or throttled writer
            while inner is not None:
                if hasattr(inner, "started"):
                    inner.started = functools.partial(self.renote, name, w)
                inner = getattr(inner, "inner", None) or getattr(inner, "writer", None)

    def renote(self, name: str, writer: Writer) -> None:
        """Record a writer's temporary again when it says more than the catalog holds
        (an S3 upload's id, once the server started it): a crash's tidy then ends that
        upload by its id, and no other computer's to the same name."""
        now = writer.temp_key
        with self._lock:
            was = self._noted.get(writer, now)
            self._noted[writer] = now
            if was != now:
                self.catalog.move_temp(name, was, now)

    def writing(self) -> set[str]:
        """The temporaries of the copies in flight, as the catalog records them: a
        target's tidy when it is back leaves them (``Fleet._tidy``)."""
        with self._lock:
            return {temp for temp in self._noted.values() if temp}

    def abort_all(self, writers: dict[str, Writer]) -> None:
        for name, w in writers.items():
            self.end(name, w)

    def end(self, name: str, writer: Writer) -> bool:
        """Abort a copy.  Its temporary's record goes once nothing of it is left on the
        target; while something is (an upload cut, its abort too), the target's tidy
        when it is back (``Fleet._tidy``) removes it then, not left there for ever."""
        self.renote(name, writer)  # (the record kept must name what is left)
        ended = writer.abort()
        with self._lock:  # no longer in flight: what is left is the tidy's
            self._noted.pop(writer, None)
        if ended and writer.temp_key:
            self.catalog.drop_temp(name, writer.temp_key)
        return ended

    def forsake(self, name: str, key: str) -> None:
        """The copy to ``name`` of the photo at ``key`` needs no upload now (another
        installation's copy proved and recorded, or one found there): an upload kept
        for it (S3, a cut network: ``Kept``) is ended, not left on the server, billed,
        until a restart (its abort cut too: recorded, for the target's tidy)."""
        target = self.targets[name].target
        kept = getattr(target, "kept", None)
        temp = kept.forget(key) if kept is not None else None
        if temp is None:
            return
        try:
            target.delete_temp(temp)
        except PhotodError:
            return
        self.catalog.drop_temp(name, temp)
