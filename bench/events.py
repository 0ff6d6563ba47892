"""The CPU one event costs photod (issue 21): ``log.info("asset_ingested", ...)`` as a
small phone file logs it, with the daemon's set-up (the JSON log in a folder, the
console a journal: warnings only, the notifier listening), beside the floor: the same
line made by ``json.dumps`` and written by ``os.write``, nothing else.

    python bench/events.py [--events 20000] [--threads 1] [--rounds 3]

CPU seconds of this process (time.process_time), so the figure does not move with the
load of the machine as much as a wall time would; the best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import result  # noqa: E402
from photod import logs  # noqa: E402

FIELDS = {  # an asset_ingested of a phone's photo, as the daemon logs it
    "asset": "25cfec6eccc64e8c29be2fd9bb73c4da61a9373988223c6391edf6a12c3ebf87",
    "source": "iphone",
    "path": "00008110-000A1B2C3D4E5F60/DCIM/100APPLE/IMG_0003.JPG",
    "bytes": 50000,
    "kind": "photo",
    "format": "jpeg",
    "captured_at": "2008-05-30T15:56:01",
    "captured_from": "exif",
    "key": "2008/2008-05-30/IMG_0003.JPG",
}


def cpu_per_event(log: object, count: int, threads: int) -> float:
    """CPU µs per call of ``log(**FIELDS)``, ``threads`` threads sharing ``count``."""

    def run() -> None:
        for _ in range(count // threads):
            log(**FIELDS)  # type: ignore[operator]

    workers = [threading.Thread(target=run) for _ in range(threads)]
    start = time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.process_time() - start) / count * 1e6


def photod_events(count: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as where:
        journal = sys.stderr
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (a journal: not a terminal)
        try:
            logs.setup(Path(where), console=True)
            logs.listeners.append(lambda event: None)  # the notifier's tap
            took = cpu_per_event(lambda **kw: logs.log.info("asset_ingested", **kw), count, threads)
        finally:
            logs.listeners.clear()
            logs.shutdown()
            logging.getLogger().handlers.clear()
            sys.stderr.close()
            sys.stderr = journal
    return took


def bare_lines(count: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as where:
        fd = os.open(Path(where) / "bare.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        lock = threading.Lock()

        def line(**kw: object) -> None:
            ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            data = json.dumps({"ts": ts, "level": "info", "event": "asset_ingested", **kw},
                              ensure_ascii=False) + "\n"  # fmt: skip
            with lock:
                os.write(fd, data.encode())

        try:
            return cpu_per_event(line, count, threads)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ours, floor = [], []
    for _ in range(args.rounds):  # alternating, as the load of the machine changes
        ours.append(photod_events(args.events, args.threads))
        floor.append(bare_lines(args.events, args.threads))
    print(f"events: {args.events:,} asset_ingested, {args.threads} thread(s), CPU per event")
    print(f"  photod (daemon's set-up)      {min(ours):6.1f} µs   rounds {ours}")
    print(f"  json.dumps + os.write (floor) {min(floor):6.1f} µs")
    result("events", "CPU per asset_ingested event", min(ours), None, "", unit="µs",
           floor=min(floor), floor_tool="json.dumps + os.write of the same line")  # fmt: skip


if __name__ == "__main__":
    main()
