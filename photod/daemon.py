"""The process: single-instance lock, signals, sd_notify, start and stop.

TERM/INT stop cleanly (copies in flight are rolled back, nothing partial stays), HUP
reloads the config (a bad new config is reported and the old one kept).
"""

from __future__ import annotations

import contextlib
import gc
import resource
import signal
import threading
import time
from pathlib import Path
from shutil import disk_usage
from typing import Any

from photod import (
    catalog_guard,
    failpoints,
    jobs,
    live,
    logs,
    oneshot,
    precheck,
    private,
    reloads,
    sdnotify,
    signals,
)
from photod import config as configmod
from photod.activity import Activity
from photod.catalog import CATALOG_NAME, Catalog, now_iso
from photod.config import Config
from photod.control import ControlServer
from photod.dashboard.server import DashboardServer
from photod.errors import (
    CatalogDamaged,
    CatalogUntrusted,
    CatalogUnwritable,
    DaemonFailed,
    PhotodError,
    StateDirFull,
    kind_of,
)
from photod.fleet import build_targets
from photod.logs import log
from photod.notify import Left, Notifier, load_left, save_left
from photod.pause import Pause
from photod.pipeline import Pipeline, halt
from photod.snapshotdue import Snapshotted
from photod.statelock import StateLock, said_if_unwritable
from photod.targets.records import Installation
from photod.throttle import few_arenas, give_back_memory, lower_priority

HOLD_LOOK = 5.0  # seconds between looks while the catalog cannot be acted on
# Seconds before a rebuild that failed is tried again, doubling up to the most: each try
# may download a whole catalog's snapshot from an offsite target (paid egress).
REBUILD_WAIT, REBUILD_WAIT_MAX = 10.0, 600.0
FILES_MAX = 65536  # open files the daemon asks for, at most (its hard limit allowing)


def _free(folder: Path) -> int | None:
    """Free bytes where ``folder`` is; None when that cannot be asked (the disk gone:
    what is said must not fail on it)."""
    try:
        return disk_usage(folder).free
    except OSError:
        return None


def _set_up_process(cfg: Config) -> StateLock:
    """Private files, the event log, the lock (raises AlreadyRunning), folders only
    their owner reads, and a low priority: all before any thread starts, since every
    thread inherits them."""
    private.go_private()  # before anything is written: the state is private
    private.refuse_theirs(cfg.state_dir, cfg.log_dir, cfg.log_dir / logs.LOG_NAME)
    # systemd's soft limit of 1,024 open files is few for a daemon that others can make
    # hold sockets (the dashboard's port): as many as the hard limit allows, up to 64 Ki.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FILES_MAX if hard == resource.RLIM_INFINITY else min(hard, FILES_MAX)
    for ask in (want, 10240):  # (macOS refuses more than kern.maxfilesperproc)
        if soft != resource.RLIM_INFINITY and soft < ask:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (ask, hard))
                break
    with said_if_unwritable(cfg.state_dir):
        logs.setup(
            cfg.log_dir, console=True, max_bytes=cfg.daemon.log_max_size, keep=cfg.daemon.log_keep
        )
        # The lock first: it judges a lock file left open to others by its mode.
        lock = StateLock(cfg.state_dir)
    lock.sweep()  # what a photod killed mid-snapshot or mid-drill left
    widened = private.tighten([cfg.state_dir, cfg.log_dir, cfg.runtime_dir])
    if widened:
        log.warning("permissions_tightened", count=len(widened), paths=widened[:20],
                    detail="photod's folders were open to other users (a start with a "
                    "wide umask); now only their owner reads them")  # fmt: skip
    # First, before any thread starts: every thread inherits these.
    lower_priority(cfg.daemon.priority, nice=10)
    few_arenas()
    configmod.keep_last_good(cfg)  # what `photod status` reaches it with if the file breaks
    return lock


def _dashboard(
    running: DashboardServer | None, cfg: Config, old: Config | None, daemon: Daemon
) -> DashboardServer | None:
    """The dashboard ``cfg`` asks for: the running one while its settings are the same
    and it serves, else that one stopped and a new one started (``old``: the config it
    was started with, None at the start)."""
    same = old is not None and cfg.dashboard == old.dashboard
    if running is not None and same and running.serving():
        return running
    if running is not None:
        running.stop()
    if not cfg.dashboard.enabled:
        return None
    new = DashboardServer(
        lambda: daemon.cfg, lambda: daemon._control({"cmd": "status"}), daemon._started
    )
    new.start()
    return new


def _watch(
    wake: threading.Event, pipeline: Pipeline, scheduler: Any, control: ControlServer | None
) -> str:
    """Wait for a signal or a reason to settle the catalog again, telling systemd's
    watchdog each 5 s that every part lives; the damage SQLite reported, if any."""
    # The status line counts assets in the catalog: only worth it under systemd.
    supervised = sdnotify.supervised()
    sdnotify.send(f"READY=1\nSTATUS={live.status_line(pipeline)}" if supervised else "")
    line_at = trimmed_at = time.monotonic()
    while not wake.wait(5.0):
        problem = pipeline.catalog.problem
        if isinstance(problem, CatalogDamaged):
            log.error("catalog_damaged", detail=problem.detail,
                      action="stopped; the catalog is checked and rebuilt from the targets")  # fmt: skip
            return problem.detail
        if isinstance(problem, CatalogUnwritable):  # settled again: held until it can write
            return problem.found
        if time.monotonic() - trimmed_at > 60:
            give_back_memory()  # memory stays flat over days, not at its peak
            trimmed_at = time.monotonic()
        if (
            supervised
            and pipeline.alive()
            and scheduler.running
            and (control is None or control.alive())
        ):
            # The line costs a pass over the catalog's groups: once a minute.
            fresh = time.monotonic() - line_at > 60
            sdnotify.send(
                "WATCHDOG=1" + (f"\nSTATUS={live.status_line(pipeline)}" if fresh else "")
            )
            line_at = time.monotonic() if fresh else line_at
    return ""


def _no_room(cfg: Config) -> catalog_guard.Verdict:
    """The hold while the state dir has no room for the catalog (not even its journal):
    nothing to restart or to report; photod goes on by itself once there is room."""
    return catalog_guard.Verdict(
        "hold", f"no room left in the state dir {cfg.state_dir} for the catalog",
        "nothing is written anywhere; new files wait",
        "free some space on that disk, or move [daemon] state_dir; a running photod goes "
        "on by itself as soon as there is room",
    )  # fmt: skip


def _checks_idle(cfg: Config) -> None:
    """The catalog's check in the background at idle priority, on this thread only and
    on the one begun early if it goes on (``precheck``): the daemon goes on meanwhile."""
    lower_priority("idle")
    if (early := precheck.handed_thread(cfg.state_dir / CATALOG_NAME)) is not None:
        lower_priority("idle", thread=early)


def _described(exc: BaseException) -> str:
    """A bug in one line: the first error, then any raised while stopping after it."""
    chain: list[BaseException] = [exc]
    while (cause := chain[-1].__context__) is not None and len(chain) < 4:
        chain.append(cause)
    return "; then ".join(f"{type(e).__name__}: {e}" for e in reversed(chain))


class Daemon:
    def __init__(self, cfg: Config, once: bool = False) -> None:
        self.cfg = cfg
        self.once = once
        self._wake = threading.Event()
        self._stop = False
        self._stopping = threading.Event()  # the same, for long work (a rebuild)
        self._reload = False
        self._pause = Pause()  # `photod pause`, kept across reloads
        self._pipeline: Pipeline | None = None
        self._scheduler: Any = None
        # Why the catalog is not acted on now (None while it is), for `photod status`.
        self._held: catalog_guard.Verdict | None = None
        self._resettle = ""  # why the catalog must be checked again now
        self._control_server: ControlServer | None = None
        self._reloading: reloads.Reload | None = None
        # Set once started (the first scan, or the catalog held): the dashboard loads then.
        self._started = threading.Event()
        self.summary: oneshot.Summary | None = None  # what `run --once` did and left
        self._left: Left | None = None  # what the last notifier had not told (a reload)
        self._snapshotted: Snapshotted | None = None  # the last snapshot, at a reload

    def _on_signal(self, signum: int) -> None:  # on the thread "signals" (photod.signals)
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
            self._stopping.set()
        self._wake.set()

    def _distrust(self, why: str) -> None:
        """Stop, and settle the catalog again (a target has a newer snapshot, or damage)."""
        self._resettle = why
        self._wake.set()

    def run(self) -> int:
        cfg = self.cfg
        lock = _set_up_process(cfg)
        end_signals = signals.listen(self._on_signal)
        control = None if self.once else ControlServer(cfg.control_socket, self._control)
        self._control_server = control
        dashboard: DashboardServer | None = None
        unclean = lock.unclean
        self._left = load_left(cfg.state_dir)  # what the last daemon had not told
        clean = False  # whether this run ends as a clean stop (the next start trusts it)
        resettled = -60.0  # when the catalog was last settled again while running
        again = False  # `run --once` settled again midway (a target knew more), and ran again
        try:
            if control is not None:
                try:
                    control.start()
                except OSError as exc:
                    raise PhotodError(f"cannot open the control socket {control.path}: "
                                      f"{exc.strerror or exc}") from exc  # fmt: skip
                dashboard = _dashboard(None, cfg, None, self)
            while not self._stop:
                if self._reload:  # (a reload while held, too: the new targets settle)
                    self._reload = False
                    self._wake.clear()  # (the signals folded into this one reread)
                    reload = self._reloading or reloads.Reload(time.monotonic(), None)
                    cfg = self.cfg = reloads.reread(old := cfg, reload)
                    if self._reloading is None:  # held: nothing runs to say it later
                        reloads.say_reloaded(cfg, reload)
                    if control is not None:  # (one that could not listen is tried again)
                        dashboard = _dashboard(dashboard, cfg, old, self)
                trusted = self._settle(cfg)
                if trusted is None:
                    if self._reload and not self._stop:
                        continue
                    break
                if not gc.get_freeze_count():  # the loaded modules: never walked by the GC
                    gc.freeze()  # (once: later settles' leftovers must stay collectable)
                catalog, verdict = trusted
                me, relist = verdict.me, verdict.relist or unclean
                assert me is not None
                try:
                    if self.once:
                        checked = not verdict.unchecked or self._check_deeply(cfg, catalog, None)
                        if not checked and not self._resettle:
                            return 0  # stopped before the check ended: nothing was done
                        if checked:  # (else damaged: settled again, rebuilt, then the run)
                            self._run_once(cfg, catalog, me, relist)
                            if not self._resettle or self._stop or again:
                                clean = True
                                return 0
                            again = True  # (a target knew more: settled again, run once more)
                    else:
                        self._serve(cfg, catalog, me, relist, verdict.unchecked)
                finally:
                    catalog.close()
                unclean = False
                if self._stop:
                    break
                if self._resettle:
                    # Settled again at once, unless it keeps happening (a bug must not
                    # spin): then a pause first.
                    if time.monotonic() - resettled < 30:
                        self._wake.wait(HOLD_LOOK)
                        self._wake.clear()
                    resettled = time.monotonic()
            clean = not unclean  # a stop while holding keeps the last crash's mark
        except Exception as exc:
            if isinstance(exc, PhotodError):
                raise
            log.exception("daemon_failed", error=(error := _described(exc)))
            raise DaemonFailed(error) from exc
        finally:
            if dashboard is not None:
                dashboard.stop()
            if control is not None:
                control.stop()
            with contextlib.suppress(OSError):  # (a full disk: told at the next failure)
                save_left(self._left, cfg.state_dir, now_iso())
            lock.release(clean)
            end_signals()
            log.info("daemon_stopped")
            logs.shutdown()
        return 0

    def _settle(self, cfg: Config) -> tuple[Catalog, catalog_guard.Verdict] | None:
        """The catalog once it can be trusted (rebuilt if need be), with this
        installation and whether the targets' lists must be compared in full.  While it
        cannot be trusted, nothing is written anywhere: the daemon says so once (event,
        notification, status) and looks again every few seconds.  None when stopping."""
        thorough = bool(self._resettle)  # (cleared once a settle has run: a reload keeps it)
        if thorough:
            log.warning("catalog_rechecked", reason=self._resettle)
        targets = build_targets(cfg.targets_settings(), self._stopping)
        notifier = Notifier(cfg.notify, left=self._left)
        notifier.start()
        logs.listeners.append(notifier.on_event)
        said = self._held.found if self._held else ""  # a reload while held: not said again
        full = said == _no_room(cfg).found
        retry_at, wait = 0.0, REBUILD_WAIT  # when a rebuild that failed is tried again
        try:
            while not self._stop and not self._reload:
                self._resettle = ""
                was_full, full = full, False
                kind = ""  # what an unexpected error is said by (not its text)
                try:
                    # A rebuild or a check of every page can outlast systemd's start
                    # timeout or its watchdog: killed, it would begin again for ever.
                    with sdnotify.keep_alive("checking the catalog before acting on it"):
                        failpoints.hit("catalog_settling")  # an odd disk's error, for its test
                        held = (self._held.found, self._held.tried) if self._held else ("", "")
                        failed = self._held if time.monotonic() < retry_at else None
                        verdict = catalog_guard.settle(cfg, targets, self._stopping, thorough,
                                                       quiet=held, failed=failed)  # fmt: skip
                    if verdict.tried and verdict is not failed:  # a rebuild failed just now
                        retry_at, wait = time.monotonic() + wait, min(2 * wait, REBUILD_WAIT_MAX)
                except StateDirFull as exc:  # no bug: said once, and room is the fix
                    verdict, full = _no_room(cfg), True
                    if not was_full:
                        log.error("state_dir_full", state_dir=str(cfg.state_dir),
                                  detail=exc.detail, free=_free(cfg.state_dir),
                                  action="photod acts on nothing until there is room, "
                                  "then goes on by itself")  # fmt: skip
                    said = verdict.found  # (said so: not a catalog_untrusted too)
                except Exception as exc:  # a bug or an odd disk: hold, and say it once
                    # (by its kind: a look every few seconds, and its text may change)
                    kind = f"the catalog could not be checked ({kind_of(exc)})"
                    if kind != said:
                        log.exception("catalog_check_failed", error=str(exc))
                    verdict = catalog_guard.Verdict(
                        "hold", f"the catalog could not be checked ({exc})",
                        "nothing is written anywhere", "`photod doctor`, then restart photod",
                    )  # fmt: skip
                if was_full and not full:
                    log.info("state_dir_room", state_dir=str(cfg.state_dir),
                             free=_free(cfg.state_dir))  # fmt: skip
                if verdict.action == "go" and verdict.me is not None:
                    self._held = None
                    return catalog_guard.opened(cfg, verdict.me), verdict
                self._held = verdict
                self._started.set()  # the dashboard shows why nothing is done
                thorough = False  # looked at in full once: then the start-up budget again
                if (kind or verdict.found) != said:
                    log.error("catalog_untrusted", found=verdict.found, keeps=verdict.keeps,
                              fix=verdict.fix)  # fmt: skip
                    said = kind or verdict.found
                if self.once:
                    raise CatalogUntrusted(verdict.found, verdict.fix)
                status = f"NOT ACTING: {verdict.found}; {verdict.fix}"
                sdnotify.send(f"READY=1\nWATCHDOG=1\nSTATUS={status}")
                self._wake.wait(HOLD_LOOK)
                self._wake.clear()
            return None  # stopping, or reloading: run() reads the config, then settles anew
        finally:
            for state in targets.values():
                state.target.close()
            logs.listeners.remove(notifier.on_event)
            notifier.stop()
            self._left = notifier.left()

    def _check_deeply(self, cfg: Config, catalog: Catalog, pipeline: Pipeline | None) -> bool:
        """Finish the check of a catalog too large for the start-up budget; targets are
        made available (written to) only once it has passed (True)."""
        started = time.monotonic()
        if pipeline is not None:
            _checks_idle(cfg)
        why = catalog_guard.deep_check(cfg.state_dir / CATALOG_NAME, self._stopping)
        if why is None:
            return False  # stopping
        if why:  # (`run --once` too: settled again, and rebuilt, before its run)
            catalog.noticed(CatalogDamaged(catalog.path, why))
            log.error("catalog_damaged", detail=why,
                      action="stopped; the catalog is checked and rebuilt from the targets")  # fmt: skip
            self._distrust(why)
            return False
        log.info("catalog_checked", duration=round(time.monotonic() - started, 3))
        if pipeline is not None:
            pipeline.fleet.trusted.set()
            pipeline.wake("probe")
        return True

    def _serve(
        self, cfg: Config, catalog: Catalog, me: Installation, relist: bool, unchecked: bool
    ) -> None:
        """Run one configuration until a signal asks to stop or reload, or the catalog
        must be settled again.  ``unchecked``: the catalog's check goes on in the
        background, and no target is written to until it passes."""
        started = time.monotonic()
        notifier = Notifier(cfg.notify, left=self._left)
        notifier.start()
        scheduler, activity = jobs.scheduler(), Activity()
        waker = jobs.Waker(scheduler, activity)
        pipeline = Pipeline(cfg, catalog, me, relist, notifier=notifier,
                            pause=self._pause, trusted=not unchecked,
                            distrust=self._distrust, activity=activity,
                            wake=waker, scanned=self._started.set,
                            snapshotted=self._snapshotted)  # fmt: skip
        self._snapshotted = None
        logs.listeners.append(notifier.on_event)
        checker = None
        reason = "failed"  # a bug from here on: what runs stops as at any stop
        try:
            if unchecked:
                checker = threading.Thread(target=self._check_deeply, name="catalog-check",
                                           args=(cfg, catalog, pipeline), daemon=True)  # fmt: skip
                checker.start()
            reload, self._reloading = self._reloading, None
            if reload is not None and pipeline.devices is not None:
                pipeline.devices.usbmuxd_up = reload.usbmuxd_up  # "usbmuxd_waiting" said once
            pipeline.start(watch=True)
            jobs.start(scheduler, pipeline, cfg)
            self._pipeline, self._scheduler = pipeline, scheduler
            failpoints.hit("daemon_serving")  # a bug once its jobs run, for its test
            reloads.say_running(cfg, me, started, reload)
            damage = _watch(self._wake, pipeline, scheduler, self._control_server)
            self._resettle = damage or self._resettle
            reason = "signal" if self._stop else "catalog" if self._resettle else "reload"
        finally:
            self._stop_serving(reason, pipeline, scheduler, waker, checker, notifier)

    def _stop_serving(self, reason: str, pipeline: Pipeline, scheduler: Any, waker: jobs.Waker,
                      checker: threading.Thread | None, notifier: Notifier) -> None:  # fmt: skip
        self._wake.clear()
        stopping = time.monotonic()
        # (READY=1 ends a reload)
        sdnotify.send("RELOADING=1" if reason == "reload" else "STOPPING=1")
        if reason == "reload":  # said once it runs again: `daemon_reloaded`
            self._reloading = reloads.Reload(
                stopping, getattr(pipeline.devices, "usbmuxd_up", None)
            )
        else:
            log.info("daemon_stopping", reason=reason)
        self._pipeline = None
        halt(pipeline)
        try:  # (each step runs whatever the one before it raised)
            jobs.stop(scheduler, waker)
            if checker is not None and checker.is_alive():
                self._stopping.set()  # interrupts the check (a new one runs at the next start)
                checker.join()
                if not self._stop:
                    self._stopping.clear()
        finally:
            try:  # never a snapshot of a doubtful catalog (distrusted while stopping, too)
                pipeline.stop(snapshot=reason in ("signal", "reload") and not self._resettle)
                if reason == "reload" and not self._resettle:
                    self._snapshotted = pipeline.due.handover()
            finally:
                logs.listeners.remove(notifier.on_event)
                notifier.stop()  # what is queued still goes out
                self._left = notifier.left()
        if self._reloading is None:
            log.info("pipeline_stopped", duration=round(time.monotonic() - stopping, 3))

    # -- the control socket -----------------------------------------------------------

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request from the command line (see control.py)."""
        if request["cmd"] == "reload":
            self._on_signal(signal.SIGHUP)
            return {"ok": True, "message": "reloading the config; `photod logs` shows the result"}
        return live.answer(request, self._pipeline, self._scheduler, self._held, self._pause)

    def _run_once(self, cfg: Config, catalog: Catalog, me: Installation, relist: bool) -> None:
        """Scan, copy everything pending, and return: a one-shot backup."""
        pipeline = Pipeline(cfg, catalog, me, relist, distrust=self._distrust)
        self.summary = oneshot.run_once(pipeline, lambda: self._stop, self.summary)
