"""The catalog snapshot as files, never whole in memory: a large library's catalog is
hundreds of MB (a million photos on three targets, about 2.5 GB), more than a small
computer's memory holds.  It is copied, proved, gzipped a chunk at a time into a
scratch file, and streamed to each target through a writer (``Target.put_private_file``);
the rebuild reads it back the same way (``unpack``)."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from photod import failpoints
from photod.catalog import Catalog, check_file
from photod.errors import CatalogDamaged, TargetUnavailable, Undecryptable
from photod.statelock import SNAPSHOT_SCRATCH
from photod.targets.base import CHUNK, Target


@contextlib.contextmanager
def packed(catalog: Catalog, scratch: Path) -> Iterator[tuple[Path, int]]:
    """The whole catalog, consistent, proved sound, gzipped into a scratch file in
    ``scratch``: its path and asset count, while the context lasts.  Raises
    CatalogDamaged rather than hand a damaged copy to the targets."""
    with tempfile.TemporaryDirectory(prefix=SNAPSHOT_SCRATCH, dir=scratch) as tmp:
        path = Path(tmp) / "catalog.sqlite"
        catalog.snapshot(path)
        failpoints.hit("snapshot_copied")  # a kill here leaves the copy (the next start sweeps it)
        why, assets = check_file(path)
        if why:
            raise CatalogDamaged(catalog.path, f"its snapshot is not sound: {why}")
        gz = path.with_name(path.name + ".gz")
        with open(path, "rb") as src, open(gz, "wb") as raw:
            with gzip.GzipFile("", "wb", 6, raw, mtime=0) as out:
                shutil.copyfileobj(src, out, CHUNK)
            raw.flush()
        path.unlink()
        yield gz, assets


def unpack(target: Target, name: str, dest: Path) -> None:
    """Snapshot ``name`` of ``target``, ungzipped into ``dest`` a chunk at a time (and
    ``dest`` removed when it fails).  Raises FileNotFoundError when it is not there,
    Undecryptable, OSError, EOFError or zlib.error for a damaged one, and
    TargetUnavailable when the target fails to give it (never taken for damage)."""
    with target.open_private(name) as src:
        try:
            with gzip.GzipFile(fileobj=_Read(target.name, src)) as plain, open(dest, "wb") as out:
                shutil.copyfileobj(plain, out, CHUNK)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


class _Read(io.RawIOBase):
    """A target's stream, a failed read of it said as the target's failure."""

    def __init__(self, name: str, src: BinaryIO) -> None:
        self.name, self.src = name, src

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.src.read(len(buf))
        except Undecryptable:
            raise
        except OSError as exc:
            raise TargetUnavailable(self.name, f"a snapshot could not be read: {exc}") from exc
        buf[: len(data)] = data
        return len(data)
