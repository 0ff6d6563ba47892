"""Each phone's record, as `photod status` shows it, and the phones' one way to the
catalog.

The phones' event loop (``devices``) must never wait on SQLite: a catalog busy with a
long write (a scrub, a snapshot) would stall every phone's session at once.  So every
catalog call made on that loop goes through ``CatalogLane``: one thread of its own runs
them in the order they were made (a phone's states reach the catalog in order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from photod.catalog import Catalog, DeviceRecord, now_iso
from photod.errors import DeviceProblem
from photod.logs import log

P = ParamSpec("P")
T = TypeVar("T")


class CatalogLane:
    """Catalog calls from the phones' loop, run in turn on one thread off the loop."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="devices-db")

    def post(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T] | None:
        """Queue a call; the loop goes on at once (None: photod is stopping, the lane
        is closed)."""
        try:
            return self._thread.submit(fn, *args, **kwargs)
        except RuntimeError:
            return None

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Queue a call and wait for its answer (the caller waits, not the loop)."""
        return await asyncio.wrap_future(self._thread.submit(fn, *args, **kwargs))

    def close(self) -> None:
        """Run what is queued (the last states: "photod stopped"), then stop."""
        self._thread.shutdown(wait=True)


class PhoneRecords:
    """Each phone's record (state, detail, since, last import) by UDID: read by
    `photod status` through the daemon, saved to the catalog at each change."""

    def __init__(self, lane: CatalogLane) -> None:
        self.lane = lane
        self._records: dict[str, DeviceRecord] = {}

    def __getitem__(self, udid: str) -> DeviceRecord:
        return self._records[udid]

    def describe(self, udid: str, name: str, ios: str, model: str | None = None) -> None:
        """The phone's name, iOS and model as it tells them; saved with the next state."""
        old = self._records[udid]
        model = old.model if model is None else model
        self._records[udid] = old._replace(name=name, ios=ios, model=model)

    def items(self) -> list[tuple[str, DeviceRecord]]:
        """A copy: read from other threads."""
        return list(self._records.items())

    async def begin(self, udid: str, source: str, name: str = "") -> None:
        """A phone's record at attach: what the catalog knew of it, state 'attached'."""
        known = await self.lane.call(self.lane.catalog.devices)
        old = next((d for d in known if d.udid == udid), None)
        self._records[udid] = DeviceRecord(
            udid,
            source,
            old.name if old else name,
            old.model if old else "",
            old.ios if old else "",
            "attached",
            "",
            now_iso(),
            last_seen="",
            last_import=old.last_import if old else {},
        )

    def set(self, udid: str, state: str, detail: str = "", **last: Any) -> None:
        """A new state (and counts of the last import), saved when it is news."""
        record = self._records[udid]
        if (record.state, record.detail) != (state, detail) or last:
            since = now_iso() if record.state != state else record.since
            merged = {**record.last_import, **last} if last else record.last_import
            record = record._replace(state=state, detail=detail, since=since, last_import=merged)
            self._records[udid] = record
            self.save(record)

    def save(self, record: DeviceRecord) -> None:
        self.lane.post(self._save_now, record)

    def _save_now(self, record: DeviceRecord) -> None:
        try:
            self.lane.catalog.save_device(record)
        except Exception as exc:  # a full state dir: status shows the phone a moment late
            log.warning("device_state_unsaved", udid=record.udid, error=str(exc))

    def problem(self, udid: str, exc: DeviceProblem, level: Callable[..., Any]) -> None:
        """Say what is wrong with the phone (one event) and show it as its state."""
        record = self._records[udid]
        level(
            f"device_{exc.state}",
            device=record.name,
            udid=udid,
            action=exc.action,
            detail=exc.detail if exc.detail != exc.action else "",
        )
        self.set(udid, exc.state, exc.action)
