"""Where the daemon's events land: the rotated JSON log and the console.

Two ways lead here, and both hand over finished lines under one lock per destination:
photod's own events, rendered by structlog alone (``logs.setup``: no LogRecord, no
formatter, no second pass through logging), and the records of the libraries that log
through the standard library (APScheduler, watchdog, pymobiledevice3), rendered by a
structlog ``ProcessorFormatter``.  So a line of one never cuts into a line of the
other, and both are rotated by the same count.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from logging.handlers import RotatingFileHandler
from typing import Any


class RotatedFile(RotatingFileHandler):
    """The JSON log, rotated by size (``maxBytes``, ``backupCount`` files kept).

    Each line goes to the file in one ``write`` of its bytes to a descriptor opened for
    appending, nothing buffered in between: a crash leaves whole lines, or at worst (a
    kill or a full disk mid-line: the kernel stops a write at a page) the start of one,
    and then the next line starts on a line of its own, so `photod logs` passes over
    the torn one and loses nothing else."""

    regular = True  # a regular file: rotated (a link to /dev/null or a pipe never is)
    torn = False  # the file does not end with a newline: the next line starts one
    size = 0  # the file's size as this handler wrote it (looked at again to rotate)

    def __init__(self, path: os.PathLike[str], max_bytes: int, keep: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")

    def _open(self) -> Any:
        # Unbuffered bytes: what `put` writes is in the file when it returns.
        stream = open(self.baseFilename, "ab", buffering=0)  # noqa: SIM115 (the handler closes it)
        st = os.fstat(stream.fileno())
        # Never roll over what is not a regular file (a log dir's photod.jsonl linked to
        # /dev/null): as the stock handler, which asks at every event (bpo-45401).
        self.regular = stat.S_ISREG(st.st_mode)
        self.torn = self.regular and st.st_size > 0 and not _ends_a_line(self.baseFilename)
        self.size = st.st_size
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        """A standard library record (the caller, ``handle``, holds the lock)."""
        try:
            self.put(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        """One of photod's own events, already rendered."""
        with self.lock:  # type: ignore[union-attr]  # (a handler always has one)
            try:
                self.put(line)
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": line}))

    def put(self, line: str) -> None:
        """Write one line; the caller holds the lock."""
        data = (line + "\n").encode("utf-8", "backslashreplace")  # a name not in UTF-8 too
        if self.stream is None:  # closed (logging's shutdown): opened again, as stock
            self.stream = self._open()
        if self.regular and 0 < self.maxBytes <= self.size + len(data):
            # The size asked of the file itself before it is rotated, not at each line:
            # someone may have emptied it meanwhile (a logrotate's copytruncate).
            self.size = os.fstat(self.stream.fileno()).st_size
            if self.size and self.size + len(data) >= self.maxBytes:
                self.doRollover()
        if self.torn:
            data = b"\n" + data
        fd = self.stream.fileno()
        view = memoryview(data)
        while view:  # a regular file takes it all in one go, short of a full disk or a kill
            written = os.write(fd, view)
            self.size += written
            view = view[written:]
            self.torn = bool(view)  # (and stays so when the next write raises)


def _ends_a_line(path: str) -> bool:
    """Whether a file ends with a newline (a crash, or a full disk, may have cut its
    last line)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:  # a log photod may append to but not read: as before, appended to
        return True


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """The timeline line on standard error, for photod's events and a library's."""

    def write(self, line: str) -> None:
        """One of photod's own events, already rendered."""
        with self.lock:  # type: ignore[union-attr]  # (a handler always has one)
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": line}))


class Guarded:
    """photod's processor chain, run so that what an event holds can never raise into
    the code that logged it (an error's own event, in an ``except``, above all): a
    field JSON cannot take (a dict keyed by a tuple), a value whose ``repr`` raises.
    Such an event is still written, each field as text, with ``log_error`` saying
    why; the stdlib path's handler does the same for a library's record by its own
    rules (``handleError``)."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps

    def __call__(self, logger: Any, name: str, event: Any) -> Any:
        fields = dict(event)  # (a step may take a field out of the event it is given)
        try:
            for step in self.steps:
                event = step(logger, name, event)
            return event
        except Exception as exc:  # (any: a caller's field, whatever it is)
            if isinstance(event, dict):
                fields.update(event)  # (the time stamp and level the steps added)
            return _as_text(fields, exc)


def _as_text(fields: dict[Any, Any], exc: Exception) -> str:
    if "exception" in fields:
        fields.pop("exc_info", None)  # (rendered already: the JSON of the traceback)
    line = {k: _text(fields.pop(k)) for k in ("ts", "level", "event") if k in fields}
    line.update({str(_text(k)): _text(v) for k, v in fields.items()})
    line["log_error"] = f"this event's fields could not be written as they were ({_text(exc)})"
    return json.dumps(line, ensure_ascii=False)


def _text(value: Any) -> Any:
    """The value as it is when JSON takes it (a list of targets stays one: `photod logs
    --target` finds it), else as text."""
    try:
        json.dumps(value, ensure_ascii=False)
        return value
    except Exception:  # (whatever JSON raises of it: shown as text instead)
        pass
    try:
        return repr(value)
    except Exception:  # (a repr that raises: named, not shown)
        return f"<a {type(value).__name__} that cannot be shown>"
