"""A reload (SIGHUP, `photod reload`): the config read again, what it may not change,
and what it changed, said once as `daemon_reloaded`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from photod import config as configmod
from photod import failpoints, fleet
from photod.config import Config
from photod.errors import ConfigError
from photod.logs import log

if TYPE_CHECKING:
    from photod.targets.records import Installation


def _reloaded(old: Config) -> Config:
    """The config file read again.  The catalog and the log stay where they are while
    the process lives: moving them needs a restart."""
    assert old.path is not None
    failpoints.hit("config_reread")  # a config no check foresaw, for the test of reread
    new = configmod.load(old.path)
    fleet.check_secrets_and_keys(new)  # (at a start they stop photod; here it goes on)
    moved = [
        f"{old.path}: daemon.{key}: changed from {a} to {b}; restart photod to move it"
        for key, a, b in (
            ("state_dir", old.state_dir, new.state_dir),
            ("log_dir", old.log_dir, new.log_dir),
            ("runtime_dir", old.runtime_dir, new.runtime_dir),
        )
        if a != b
    ]
    if moved:
        raise ConfigError(moved)
    return new


def _changes(old: Config, new: Config) -> list[str]:
    """What a reload changed, by name only (a value may be a secret): a section's keys
    (``policy.copies``), the sources and targets by their names (``targets.b2``)."""
    a, b = old.model_dump(), new.model_dump()  # SecretStr compares its secret
    out: list[str] = []
    for section in sorted(a.keys() | b.keys()):
        x, y = a.get(section), b.get(section)
        if x == y:
            continue
        if isinstance(x, list) and isinstance(y, list):
            x, y = ({str(i.get("name")): i for i in v if isinstance(i, dict)} for v in (x, y))
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{section}.{k}" for k in sorted(x.keys() | y.keys()) if x.get(k) != y.get(k)]
        else:
            out.append(section)
    return out


@dataclass
class Reload:
    """A reload under way: said once, as `daemon_reloaded` when the new config runs, not
    as a stop and a start.  What it changed (None: the new config was wrong and the old
    one is kept, as `config_invalid` said), since when, and whether usbmuxd was up."""

    began: float
    usbmuxd_up: bool | None
    changed: list[str] | None = None


def say_running(cfg: Config, me: Installation, started: float, reload: Reload | None) -> None:
    if reload is None:
        log.info("daemon_started", pid=os.getpid(), config=str(cfg.path),
                 state_dir=str(cfg.state_dir), installation=me.folder,
                 sources=[s.name for s in cfg.sources], targets=[t.name for t in cfg.targets],
                 startup=round(time.monotonic() - started, 3))  # fmt: skip
    else:
        say_reloaded(cfg, reload)


def say_reloaded(cfg: Config, reload: Reload) -> None:
    if reload.changed is not None:  # (None: `config_invalid` said why it was not)
        log.info("daemon_reloaded", config=str(cfg.path), changed=reload.changed,
                 duration=round(time.monotonic() - reload.began, 3))  # fmt: skip


def reread(cfg: Config, reload: Reload | None = None) -> Config:
    """The config file read again, or the one running kept when the new one is wrong
    (said here; a good one is said once it runs); ``reload`` learns what changed."""
    try:
        new = _reloaded(cfg)
        if reload is not None:  # (reloads in a row: what each of them changed)
            reload.changed = sorted({*(reload.changed or []), *_changes(cfg, new)})
        configmod.keep_last_good(new)
        return new
    except ConfigError as exc:
        problems = exc.problems
    except Exception as exc:
        # A config no check foresaw (photod's bug, not the user's): it must not end the
        # backups a running config does.  Said as a bad config is, with what failed.
        problems = [f"{cfg.path}: could not be applied ({type(exc).__name__}: {exc}); "
                    "`photod config check` may say more"]  # fmt: skip
    log.error(
        "config_invalid", config=str(cfg.path), problems=problems, action="kept the previous config"
    )
    return cfg
