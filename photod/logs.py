"""Structured events: structlog set up for the daemon, and ``photod logs`` reading them.

The daemon writes one JSON object per line to ``photod.jsonl`` in the log directory
(rotated), and to the console the timeline line ``photod logs`` prints (``render``):
every event on a terminal, warnings and errors otherwise (a service manager's journal).
Every event carries ``ts`` (ISO 8601 UTC), ``level`` and ``event``; ids (``asset``,
``source``, ``target``) let a person follow one photo through the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from photod import colour

LOG_NAME = "photod.jsonl"
FAILURE_LEVELS = {"warning", "error", "critical"}


_loading = threading.Lock()
INFO, WARNING = 20, 30  # logging's levels, without loading logging for them


def _structlog() -> Any:
    """structlog, loaded without rich.  When rich is installed (pymobiledevice3 brings
    it) structlog loads it for a console renderer and pretty tracebacks that photod
    never uses (it renders its own lines, and tracebacks without locals): 0.1 s of
    every daemon start.  An import of rich fails while structlog loads, and works
    again after."""
    with _loading:  # a second thread never sees a half-loaded structlog
        if "structlog" in sys.modules:
            return sys.modules["structlog"]
        blocked = "rich" not in sys.modules
        if blocked:
            sys.modules["rich"] = None  # type: ignore[assignment]  # importing it raises ImportError
        try:
            import structlog
        finally:
            if blocked and sys.modules.get("rich", False) is None:
                del sys.modules["rich"]
        return structlog


class _Events:
    """photod's event log (``log.info("asset_ingested", ...)``).  structlog takes a
    while to import: it loads at the first event or at ``setup``, so a command that
    only reads (`photod status`) never pays for it."""

    _logger: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Events._logger is None:
            _Events._logger = _structlog().get_logger("photod")
        return getattr(_Events._logger, name)


log: Any = _Events()

# Callables told of every event photod logs (the notifier); they must not block.
listeners: list[Any] = []


def _tap(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for listener in listeners:
        # A listener's bug must not lose the event itself.
        with contextlib.suppress(Exception):
            listener(dict(event))
    return event


def _front(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """ts, level, event first: the order a person reads a line in."""
    head = {k: event.pop(k) for k in ("ts", "level", "event") if k in event}
    return {**head, **event}


_LEVELS = {"debug": 10, "info": INFO, "warning": WARNING, "error": 40, "critical": 50}


class _Teed:
    """The console's timeline line of one of photod's events, when the console takes
    its level; rendered from a copy (the JSON log renders an exception its own way)."""

    def __init__(self, out: Any, timeline: list[Any]) -> None:
        self.out, self.timeline = out, timeline

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> Any:
        if _LEVELS.get(event["level"], 0) >= self.out.level:
            line: Any = dict(event)
            try:
                for step in self.timeline:
                    line = step(logger, name, line)
            except Exception:  # (a field that cannot be shown: the event is still said)
                line = f"{event['level']} {event.get('event')} (its fields cannot be shown)"
            self.out.write(line)
        return event


class _Lines:
    """structlog's logger for photod's events: each level's method takes the line the
    processors rendered."""

    def __init__(self, write: Any) -> None:
        self.debug = self.info = self.warning = self.error = self.critical = self.msg = write


def setup(
    log_dir: Path | None,
    console: bool = True,
    max_bytes: int = 10 * 1024**2,
    keep: int = 5,
    level: int = INFO,
) -> None:
    """photod's events and the stdlib loggers (APScheduler, watchdog) to one JSON log
    and one console.  photod's own events never pass through logging: structlog drops
    those below ``level`` before any work, renders each line once and hands it to the
    same writers the stdlib records reach through a ``ProcessorFormatter`` (a LogRecord,
    the handler chain and a second pass over the event were a seventh of the daemon's
    CPU per small phone file)."""
    import logging  # here: a command that logs nothing (`status`) never loads it

    from photod import logfile  # (logging.handlers: socket, pickle) only to write the log

    structlog = _structlog()

    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts")
    # A library's record: its level, its ``extra`` fields, the same time stamp.
    foreign: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        stamp,
    ]
    as_json: list[Any] = [
        # show_locals=False: frame locals can hold file contents or credentials.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        _front,
        structlog.processors.JSONRenderer(ensure_ascii=False),
    ]
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    # A library's line has no source file, thread or process in it: logging need not
    # look them up for each record (its HOWTO's "Optimization"; a frame walk per record).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    own: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamp,
        _tap,
    ]
    file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        file = logfile.RotatedFile(log_dir / LOG_NAME, max_bytes, keep)
        file.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign,
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *as_json],
            )
        )
        root.addHandler(file)
    if console:
        out = logfile.Console(sys.stderr)
        # A person at a terminal sees every event; a service manager's journal gets the
        # warnings and errors (the full story is in the JSON log, `photod logs`), which
        # also spares a bulk import the cost of rendering every event twice.
        tty = sys.stderr.isatty()
        out.setLevel(level if tty or log_dir is None else logging.WARNING)
        # The same timeline line `photod logs` prints (hashes short, local time), the
        # level in colour on a terminal; a traceback follows it as Python prints it.
        timeline = [
            structlog.processors.format_exc_info,
            lambda _, __, event: render(event, tty),
        ]
        out.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign,
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *timeline],
            )
        )
        root.addHandler(out)
        own.append(_Teed(out, timeline))
    structlog.configure(
        processors=[logfile.Guarded([*own, *as_json] if file else [*own, lambda *_: ""])],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _Lines(file.write if file else lambda _: None),
        cache_logger_on_first_use=True,
    )
    # The logger photod's events went to so far holds the writers of the last set-up
    # (structlog keeps it at its first event): the next event takes this one's.
    _Events._logger = None
    # APScheduler logs every job run at INFO; only its problems belong in our log.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached": a tick that is still
    # busy is simply not doubled (photod's jobs coalesce); not a problem to report.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    logging.getLogger("apscheduler.executors").setLevel(logging.ERROR)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    # uvicorn says "Shutting down" each time the dashboard stops: not one of our events.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("PIL").setLevel(logging.WARNING)
    # boto3 says "Found credentials in shared credentials file" at every S3 probe.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("boto3").setLevel(logging.WARNING)
    # Anyone on this computer can send the dashboard's port junk ("Invalid HTTP request
    # received") or exhaust it ("Exceeded concurrency limit"), each a line: a flood
    # rotated the whole event log away in seconds, photod's own history with it.
    for name in ("uvicorn.error", "asyncio"):
        logging.getLogger(name).addFilter(_Sparse())


class _Sparse:
    """A library's message at most once a minute for each kind (its logger, level,
    text before any arguments, and the exception it carries), however often it comes:
    a second, different crash is still said at once."""

    EVERY = 60.0
    KINDS = 256  # kinds remembered; the oldest are forgotten first

    def __init__(self) -> None:
        self.said: OrderedDict[tuple[str, int, str, str], float] = OrderedDict()
        self.lock = threading.Lock()

    def filter(self, record: Any) -> bool:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, record.levelno, str(record.msg), exc)
        now = time.monotonic()
        with self.lock:
            if now - self.said.get(kind, -self.EVERY) < self.EVERY:
                return False
            self.said[kind] = now
            self.said.move_to_end(kind)
            if len(self.said) > self.KINDS:
                self.said.popitem(last=False)
        return True


def shutdown() -> None:
    if "logging" in sys.modules:  # nothing to flush where nothing was set up
        sys.modules["logging"].shutdown()


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2h', '30m', '7d' ago, or an ISO date/time."""
    now = now or datetime.now(UTC)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"--since {text!r}: use a duration like 30m, 2h, 7d or a date like 2026-01-31"
        ) from exc
    return when if when.tzinfo else when.astimezone()


def _files(log_dir: Path) -> list[Path]:
    rotated = sorted(
        log_dir.glob(f"{LOG_NAME}.*"),
        key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
        reverse=True,
    )
    current = log_dir / LOG_NAME
    return [p for p in rotated if p.suffix[1:].isdigit()] + ([current] if current.exists() else [])


class Filter(NamedTuple):
    """What `photod logs` narrows the timeline to."""

    since: datetime | None = None
    failures: bool = False
    device: str | None = None  # a phone's name or UDID
    target: str | None = None
    asset: str | None = None  # a SHA-256 or a prefix of one (as the timeline shows it)

    def matches(self, event: dict[str, Any]) -> bool:
        if self.failures and event.get("level") not in FAILURE_LEVELS:
            return False
        if self.device is not None:
            ids = {str(event.get("device", "")), _udid(str(event.get("udid", "")))}
            if self.device not in ids and _udid(self.device) not in ids:
                return False
        if self.target is not None and not _names(event, self.target):
            return False
        return self.asset is None or str(event.get("asset", "")).startswith(self.asset.lower())


def _udid(text: str) -> str:
    return text.replace("-", "").lower()


def _names(event: dict[str, Any], target: str) -> bool:
    """Whether an event is about a target: its ``target``, or one of the targets a
    summary event lists (``targets`` as a list or a per-target table)."""
    if event.get("target") == target:
        return True
    many = event.get("targets")
    return isinstance(many, list | dict) and target in many


def read_events(
    log_dir: Path, since: datetime | None = None, failures: bool = False, only: Filter | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(raw line, event) in time order; lines that are not JSON are passed over.  The
    log's files are all opened first: one the running daemon renames or removes while
    this reads is read as it was (opened by name in turn, a rotation meanwhile passed
    over a whole file: the next name held the file after it)."""
    only = only or Filter(since, failures)
    opened = []
    try:
        for path in _files(log_dir):
            with contextlib.suppress(FileNotFoundError):  # (removed since it was listed)
                opened.append(open(path, encoding="utf-8", errors="replace"))  # noqa: SIM115
        for f in opened:
            for line in f:
                event = event_of(line, only)
                if event is not None:
                    yield line.rstrip("\n"), event
    finally:
        for f in opened:
            f.close()


def event_of(line: str, only: Filter) -> dict[str, Any] | None:
    """The event a line of the log holds, when ``only`` lets it through; else None
    (a line that is not JSON too).  What its text alone rules out is not parsed."""
    if (only.asset and only.asset.lower() not in line) or (
        only.failures and not may_be_failure(line)
    ):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    since = only.since
    cutoff = since.astimezone(UTC).isoformat().replace("+00:00", "Z") if since else ""
    if cutoff and str(event.get("ts", "")).replace("+00:00", "Z") < cutoff:
        return None
    return event if only.matches(event) else None


def newest_lines(log_dir: Path, block: int = 1 << 16) -> Iterator[str]:
    """The log's lines newest first, each file read from its end a block at a time
    (the current file, then the rotated ones): what shows the last few hundred events
    reads those, not the whole history."""
    for path in reversed(_files(log_dir)):
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below; the generator may stop early)
        except FileNotFoundError:
            continue  # rotated away meanwhile
        with f:
            end = f.seek(0, os.SEEK_END)
            rest = b""
            while end > 0:
                start = max(0, end - block)
                f.seek(start)
                lines = (f.read(end - start) + rest).split(b"\n")
                rest = lines[0]  # (perhaps cut: joined to the block before it)
                for line in reversed(lines[1:]):
                    if line:
                        yield line.decode("utf-8", "replace")
                end = start
            if rest:
                yield rest.decode("utf-8", "replace")


def may_be_failure(line: str) -> bool:
    """Whether a line of the log may hold a warning or an error: False for the info
    and debug lines, told from their text without parsing them (as the log writes
    them: a string's own quotes are escaped, so no value can look like this)."""
    return '"level": "info"' not in line and '"level": "debug"' not in line


def local_time(stamp: str | datetime | None, seconds: bool = False) -> str:
    """A moment as photod shows it to a person, everywhere (status, logs, pause): this
    computer's local time, ``YYYY-MM-DD HH:MM`` (``:SS`` with ``seconds``), no zone
    letter.  A time with a zone (``Z``, ``+02:00``) is turned into local time; one
    without is local already (a phone's listing); text that is no time comes back as
    it is."""
    if stamp is None or stamp == "":
        return ""
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return stamp
    else:
        when = stamp
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


_HASH = re.compile(r"[0-9a-f]{64}")
_LEVEL_COLOURS = {"warning": colour.YELLOW, "error": colour.RED, "critical": colour.RED}


def _flat(value: Any, inner: bool = False) -> str:
    """A value as a timeline shows it: a hash by its first 12 digits (enough for
    ``photod logs --asset``), a list as ``a,b``, a table as ``k:v,k:v`` (nested ones in
    brackets), true/false and null as the JSON log writes them."""
    if isinstance(value, str):
        return value[:12] if _HASH.fullmatch(value) else value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        text = ",".join(f"{k}:{_flat(v, True)}" for k, v in value.items())
        return f"{{{text}}}" if inner or not text else text
    if isinstance(value, list | tuple):
        text = ",".join(_flat(v, True) for v in value)
        return f"[{text}]" if inner or not text else text
    return str(value)


# What JSON leaves as it is and a terminal does not show as text: DEL, the C1 controls
# (U+009B opens an escape sequence as ESC [ does) and the direction overrides (a file
# named "photo\u202egpj.exe" shows as "photoexe.jpg").
_HIDDEN = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _quoted(text: str) -> str:
    """The one quoting rule of a timeline line: in double quotes (JSON's escapes) when
    empty or holding a space, a quote, a backslash or a character that does not print."""
    plain = text and not any(c.isspace() or c in '"\\' or not c.isprintable() for c in text)
    if plain:
        return text
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _exception(value: Any) -> str:
    """The JSON log's exception (structlog's list of dicts) as one short phrase: the
    type, the message, and where it was raised."""
    if not (isinstance(value, list) and value and isinstance(value[0], dict)):
        return _flat(value)
    first = value[0]
    frames = first.get("frames") or [{}]
    at = frames[-1] if isinstance(frames[-1], dict) else {}
    where = f" (at {at.get('filename')}:{at.get('lineno')})" if at.get("filename") else ""
    return f"{first.get('exc_type', '?')}: {first.get('exc_value', '')}{where}"


def render(event: Mapping[str, Any], tty: bool | None = None) -> str:
    """One timeline line, for `photod logs` and the daemon's terminal alike: local time,
    level, event, then key=value (a key whose value is None is left out).  A traceback
    (the daemon's console) follows on the lines below.  ``tty``: whether the line goes
    to a terminal (None: whether standard output is one), where the level of a warning
    or an error is in colour unless NO_COLOR is set."""
    on = colour.enabled(tty)
    rest, below = [], ""
    for key, value in event.items():
        if key in ("ts", "level", "event") or value is None:
            continue
        if key == "exception" and isinstance(value, str):
            below = "\n" + value.rstrip("\n")  # the console's traceback, as Python prints it
            continue
        text = _exception(value) if key == "exception" else _flat(value)
        rest.append(f"{key}={_quoted(text)}")
    level = str(event.get("level", ""))
    shown = colour.padded(
        level.upper(), 8, _LEVEL_COLOURS.get(level, ""), level in _LEVEL_COLOURS and on
    )
    ts = local_time(str(event.get("ts", "?")), seconds=True)
    return f"{ts}  {shown} {event.get('event', '')}  {' '.join(rest)}".rstrip() + below
