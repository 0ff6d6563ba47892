"""The process: single-instance lock, signals, sd_notify, start and stop.

TERM/INT stop cleanly (copies in flight are rolled back, nothing partial stays), HUP
reloads the config (a bad new config is reported and the old one kept).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

from photod import config as configmod
from photod import jobs, logs
from photod.catalog import Catalog
from photod.config import Config
from photod.errors import AlreadyRunning, ConfigError
from photod.logs import log
from photod.pipeline import Pipeline

LOCK_NAME = "photod.lock"
CATALOG_NAME = "catalog.sqlite"


def sd_notify(message: str) -> None:
    """Tell systemd about our state (Type=notify); a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode("utf-8"), addr)
    except OSError:
        pass


class StateLock:
    """An flock on the state dir: one daemon per catalog.  The kernel drops it when the
    process dies, so a crash never leaves a stale lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LOCK_NAME
        self.file: IO[str] = open(self.path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            pid = self.file.read().strip()
            self.file.close()
            raise AlreadyRunning(str(state_dir), pid) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.close()


def running_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding this state dir, or None when none runs."""
    path = state_dir / LOCK_NAME
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else 0
    except FileNotFoundError:
        return None
    return None


def _status_line(pipeline: Pipeline) -> str:
    assets, _ = pipeline.catalog.counts()
    down = [n for n, s in pipeline.targets.items() if not s.available]
    text = f"{len(pipeline.watchers)} folder(s), {assets} assets"
    return text + (f"; unavailable: {', '.join(down)}" if down else "")


def _reloaded(old: Config) -> Config:
    """The config file read again.  The catalog and the log stay where they are while
    the process lives: moving them needs a restart."""
    assert old.path is not None
    new = configmod.load(old.path)
    configmod.check_secrets(new)
    moved = [
        f"{old.path}: daemon.{key}: changed from {a} to {b}; restart photod to move it"
        for key, a, b in (
            ("state_dir", old.state_dir, new.state_dir),
            ("log_dir", old.log_dir, new.log_dir),
        )
        if a != b
    ]
    if moved:
        raise ConfigError(moved)
    return new


class Daemon:
    def __init__(self, cfg: Config, once: bool = False) -> None:
        self.cfg = cfg
        self.once = once
        self._wake = threading.Event()
        self._stop = False
        self._reload = False

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self._wake.set()

    def run(self) -> int:
        cfg = self.cfg
        logs.setup(
            cfg.log_dir, console=True, max_bytes=cfg.daemon.log_max_size, keep=cfg.daemon.log_keep
        )
        lock = StateLock(cfg.state_dir)
        catalog = Catalog(cfg.state_dir / CATALOG_NAME)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            if self.once:
                self._run_once(cfg, catalog)
                return 0
            while True:
                self._serve(cfg, catalog)
                if self._stop:
                    break
                self._reload = False
                sd_notify("RELOADING=1")
                try:
                    cfg = _reloaded(cfg)
                    log.info("config_reloaded", config=str(cfg.path))
                except ConfigError as exc:
                    log.error(
                        "config_invalid",
                        config=str(cfg.path),
                        problems=exc.problems,
                        action="kept the previous config",
                    )
        finally:
            catalog.close()
            lock.release()
            log.info("daemon_stopped")
            logs.shutdown()
        return 0

    def _serve(self, cfg: Config, catalog: Catalog) -> None:
        """Run one configuration until a signal asks to stop or reload."""
        started = time.monotonic()
        pipeline = Pipeline(cfg, catalog)
        pipeline.start(watch=True)
        scheduler = jobs.start(pipeline, cfg)
        log.info(
            "daemon_started",
            pid=os.getpid(),
            config=str(cfg.path),
            state_dir=str(cfg.state_dir),
            sources=[s.name for s in cfg.sources],
            targets=[t.name for t in cfg.targets],
            startup=round(time.monotonic() - started, 3),
        )
        # The status line counts assets in the catalog: only worth it under systemd.
        supervised = bool(os.environ.get("NOTIFY_SOCKET"))
        sd_notify(f"READY=1\nSTATUS={_status_line(pipeline)}" if supervised else "")
        while not self._wake.wait(5.0):
            if supervised and pipeline.alive():
                sd_notify(f"WATCHDOG=1\nSTATUS={_status_line(pipeline)}")
        self._wake.clear()
        stopping = time.monotonic()
        sd_notify("STOPPING=1")
        log.info(
            "daemon_stopping", reason="reload" if self._reload and not self._stop else "signal"
        )
        pipeline.stop_event.set()
        jobs.stop(scheduler)
        pipeline.stop()
        log.info("pipeline_stopped", duration=round(time.monotonic() - stopping, 3))

    def _run_once(self, cfg: Config, catalog: Catalog) -> None:
        """Scan, copy everything pending, and return: a one-shot backup."""
        pipeline = Pipeline(cfg, catalog)
        pipeline.start(watch=False)
        log.info("backup_started", config=str(cfg.path))
        started = time.monotonic()
        # Uploads to remote targets start while files are still being ingested, as in
        # the daemon, where each new asset wakes the upload job.
        ingesting = threading.Event()
        ingesting.set()

        def upload_meanwhile() -> None:
            while ingesting.is_set() and not self._stop:
                pipeline.upload_pending()
                time.sleep(0.2)

        uploader = threading.Thread(target=upload_meanwhile, name="upload", daemon=True)
        uploader.start()
        pipeline.reconcile()
        while pipeline.busy() and not self._stop:
            pipeline.settle_tick()
            time.sleep(0.05)
        ingesting.clear()
        uploader.join()
        if not self._stop:
            pipeline.retry_pending()
        pipeline.stop()
        assets, size = catalog.counts()
        log.info(
            "backup_finished",
            assets=assets,
            bytes=size,
            duration=round(time.monotonic() - started, 3),
        )
