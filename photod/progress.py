"""A progress bar for the commands that copy (restore): rich on a terminal, nothing
otherwise."""

from __future__ import annotations

import sys
from typing import Any


class Bar:
    """A rich progress bar on a terminal, nothing otherwise (a pipe, a log, cron)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> Bar:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def total(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=n)

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
