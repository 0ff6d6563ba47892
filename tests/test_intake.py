"""The watch folders' intake, without a daemon: what a rewatch says."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from photod import config
from photod.catalog import Catalog
from photod.ingest import Ingestor
from photod.intake import FolderIntake
from photod.sources.folder import FolderWatcher


def test_a_folder_whose_watch_cannot_start_is_said_gone_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder there whose watch cannot start (a network mount whose root answers and
    whose tree does not: EIO) was said gone, then back (`source_available`), then gone
    again at every rewatch, every few seconds for as long as it lasted.  It is said
    gone once, and back only once its watch runs."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    text = (f'[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\n'
            f'type = "folder"\npath = "{inbox}"\n[[targets]]\nname = "lib"\n'
            f'type = "local"\npath = "{tmp_path / "lib"}"\n')  # fmt: skip
    cfg = config.parse(text, tmp_path / "c.toml")
    catalog = Catalog(tmp_path / "catalog.sqlite")
    workers = ThreadPoolExecutor(1)
    ingestor = Ingestor(cfg.ingest, {"in": inbox}, catalog, None)  # type: ignore[arg-type]
    intake = FolderIntake(cfg.folders, cfg.ingest, ingestor, catalog, workers, tmp_path,
                          threading.Event(), lambda job: None)  # fmt: skip
    intake.watching = True

    def broken(self: FolderWatcher) -> bool:
        raise OSError(5, "Input/output error")

    try:
        monkeypatch.setattr(FolderWatcher, "start", broken)
        with capture_logs() as events:
            for _ in range(4):
                intake.rewatch()
        said = [e["event"] for e in events if e["event"].startswith("source_")]
        assert ["source_unavailable"] == said
        monkeypatch.undo()
        with capture_logs() as events:
            for _ in range(2):
                intake.rewatch()
        said = [e["event"] for e in events if e["event"].startswith("source_")]
        assert "source_available" in said and "source_unavailable" not in said
    finally:
        intake.stop()
        workers.shutdown()
        catalog.close()
