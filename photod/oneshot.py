"""`photod run --once`: scan, copy everything pending, and return (a one-shot backup),
with what it did and what it left unprotected, for the paragraph it prints."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from photod import failpoints, policy
from photod.logs import listeners, log
from photod.models import PolicyRule
from photod.mounts import present
from photod.paths import other_form
from photod.pipeline import Pipeline, halt

_n = policy.plural  # '1 copy', '2 copies'


def rule_text(rule: PolicyRule) -> str:
    return (
        f"{_n(rule.copies, 'copy', 'copies')}, {_n(rule.media, 'kind')} of media, "
        f"{rule.offsite} offsite"
    )


@dataclass
class Summary:
    """What one run did (counted from its events) and what it left (from the catalog
    and the targets at its end)."""

    rule: PolicyRule = field(default_factory=PolicyRule)
    known: int = 0  # files of the watch folders the catalog knows, after the run (new ones too)
    new: int = 0  # new photos and videos taken in
    again: int = 0  # files whose bytes were already backed up (another name, another folder)
    skipped: int = 0  # files not taken (not a photo or video, a link, unreadable)
    copies: int = 0  # copies written and verified on targets
    failed: dict[str, str] = field(default_factory=dict)  # target -> its last copy's error
    assets: int = 0
    short: int = 0  # assets that fall short of the policy
    needs: Counter[str] = field(default_factory=Counter)  # what they miss -> how many
    lost: int = 0  # assets with no good copy left anywhere
    down: dict[str, str] = field(default_factory=dict)  # target not written to -> why
    missing: list[str] = field(default_factory=list)  # watch folders not there to look at
    stopped: bool = False  # a signal ended the run early
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def protected(self) -> bool:
        """Every photo meets the policy and none is lost."""
        return not self.short and not self.lost

    @property
    def ok(self) -> bool:
        """Protected, and every watch folder was there to look at (a cron job backing up a
        folder on a drive that is not mounted must not end well for ever)."""
        return self.protected and not self.missing

    def on_event(self, event: dict[str, Any]) -> None:
        """A log listener: counts what the run does as it does it."""
        name = event.get("event")
        with self._lock:
            if name == "asset_ingested":
                self.new += 1
            elif name == "asset_seen_again":
                self.again += 1
            elif name in ("file_skipped", "file_unreadable"):
                self.skipped += 1
            elif name in ("replica_written", "replica_repaired"):
                self.copies += 1
            elif name == "replica_failed":
                self.failed[str(event.get("target"))] = str(event.get("error", ""))

    def include(self, earlier: Summary) -> None:
        """A run's first part, before the catalog was settled again: its copies count
        too; what it took in is taken again (or known) by the second part's scan."""
        self.copies += earlier.copies
        self.new, self.again = max(self.new, earlier.new), max(self.again, earlier.again)
        self.skipped = max(self.skipped, earlier.skipped)

    def take_stock(self, pipeline: Pipeline) -> None:
        """What the run leaves: each photo judged by the policy, the targets not written."""
        catalog, cfg = pipeline.catalog, pipeline.cfg
        infos = catalog.counting(cfg.target_infos(), cfg.schedule.scrub_cycle)
        self.rule = pipeline.cfg.policy.rule()
        self.known = sum(catalog.source_count(s.name) for s in pipeline.cfg.folders)
        for held, count, _ in catalog.holdings():
            self.assets += count
            verdict = policy.evaluate(self.rule, held, infos)
            if not verdict.compliant:
                self.short += count
                for need in verdict.missing:
                    self.needs[need] += count
        self.lost = catalog.lost_count()
        self.missing = ["; ".join(filter(None, (f"'{s.name}' ({s.path}", other_form(s.path)))) + ")"
                        for s in cfg.folders if not present(s.path)]  # fmt: skip
        for name, state in pipeline.targets.items():
            why = "" if state.available else state.reason
            self.down[name] = why or state.paused()
        self.down = {name: why for name, why in self.down.items() if why}

    def render(self) -> str:
        """One paragraph, in plain words."""
        said = [f"{self.new} new"] if self.new else []
        if self.again:
            said.append(f"{self.again} already backed up under another name")
        if self.skipped:
            said.append(f"{self.skipped} not taken (not a photo or video, or unreadable: "
                        "`photod logs` says why)")  # fmt: skip
        text = f"photod run --once: {_n(self.known + self.skipped, 'file')} in the watch folders"
        text += (": " + ", ".join(said) if said else "") + "; "
        text += f"{_n(self.copies, 'copy', 'copies')} written and verified."
        if self.missing:
            many = len(self.missing) > 1
            text += (f" Watch folder{'s' if many else ''} {', '.join(self.missing)} "
                     f"{'are' if many else 'is'} missing: nothing in {'them' if many else 'it'} "
                     "was looked at (is the drive mounted?).")  # fmt: skip
        if self.stopped:
            text += " Stopped before the end: the rest is copied at the next run."
        rule = rule_text(self.rule)
        if self.protected:
            if not self.assets:
                return text + " Nothing is backed up yet: drop photos into a watch folder."
            every = (
                "The one photo or video is"
                if self.assets == 1
                else f"All {self.assets} photos and videos are"
            )
            return text + f" {every} protected ({rule})."
        if self.lost:
            text += (f" {_n(self.lost, 'photo or video', 'photos and videos')} LOST: no good "
                     "copy left anywhere (`photod status` lists them).")  # fmt: skip
        if self.short:
            needs = "; ".join(f"{n} {'needs' if n == 1 else 'need'} {what}"
                              for what, n in self.needs.items())  # fmt: skip
            text += (f" NOT PROTECTED: {self.short} of {self.assets} photos and videos "
                     f"{'falls' if self.short == 1 else 'fall'} short of the policy ({rule}): "
                     f"{needs}.")  # fmt: skip
        why = [
            f"target '{name}' was not written to: {reason}" for name, reason in self.down.items()
        ]
        why += [f"copies to '{name}' failed: {error}" for name, error in self.failed.items()
                if name not in self.down]  # fmt: skip
        if why:
            text += " Because " + "; ".join(why) + "."
        return text + " The next run (or the daemon) copies what is missing."


def run_once(
    pipeline: Pipeline, stopped: Callable[[], bool], earlier: Summary | None = None
) -> Summary:
    """Run ``pipeline`` through one backup; ``stopped`` says a signal asked to stop
    (what is in flight is rolled back, as in the daemon).  Returns what it did (with
    ``earlier``: the run's first part, before the catalog was settled again)."""
    summary = Summary()
    listeners.append(summary.on_event)
    # One backup of what is there now: a movie or sidecar whose still is not there is
    # taken alone at once (a run from cron must not wait a minute for a still that the
    # daemon, watching, would have waited for).
    pipeline.ingestor.companion_wait = 0.0
    try:
        _run(pipeline, stopped)
    finally:
        listeners.remove(summary.on_event)
    summary.stopped = stopped()
    summary.take_stock(pipeline)
    if earlier is not None:
        summary.include(earlier)
    return summary


def _run(pipeline: Pipeline, stopped: Callable[[], bool]) -> None:
    started = time.monotonic()
    # Uploads to remote targets start while files are still being ingested, as in
    # the daemon, where each new asset wakes the upload job.
    ingesting = threading.Event()
    ingesting.set()

    def upload_meanwhile() -> None:
        while ingesting.is_set() and not stopped():
            pipeline.upload_pending()
            time.sleep(0.2)

    uploader = threading.Thread(target=upload_meanwhile, name="upload", daemon=True)
    done = False
    try:
        pipeline.start(watch=False)
        log.info("backup_started", config=str(pipeline.cfg.path))
        uploader.start()
        pipeline.reconcile()
        while pipeline.busy() and not stopped():
            failpoints.hit("backup_waiting")  # a bug while the copies go on, for its test
            pipeline.settle_tick()
            time.sleep(0.05)
        ingesting.clear()
        uploader.join()
        if not stopped():
            pipeline.retry_pending()
        done = True
    finally:  # (a bug above, too: what is in flight is rolled back, as at a stop)
        if not done:
            ingesting.clear()
            halt(pipeline)
            if uploader.ident is not None:
                uploader.join()
        pipeline.stop(snapshot=done)
    assets, size = pipeline.catalog.counts()
    log.info(
        "backup_finished",
        assets=assets,
        bytes=size,
        duration=round(time.monotonic() - started, 3),
    )
