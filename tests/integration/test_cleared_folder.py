"""A watch folder emptied after each import ("import then clear"): the catalog keeps
the photos, and no row of a file that is gone; a folder photod cannot read, or a drive
unplugged from under the watch folder, is no folder whose every file was deleted."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest

from tests.conftest import target_files
from tests.integration.conftest import Setup
from tests.integration.test_truth import make_photos, no_traceback
from tests.servers import need

pytestmark = pytest.mark.integration


def _rows(setup: Setup) -> tuple[int, int]:
    """(the catalog's rows of watch-folder files, its photos)."""
    db = sqlite3.connect(setup.home / "state" / "catalog.sqlite")
    try:
        return tuple(
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("source_files", "assets")
        )  # type: ignore[return-value]
    finally:
        db.close()


def test_an_emptied_watch_folder_keeps_its_photos_and_no_row_of_a_gone_file(
    setup: Setup,
) -> None:
    """Each file deleted from the watch folder after its import kept its row in the
    catalog for ever (a folder emptied after each import: the catalog grew at every
    one, and each start-up scan read past the rows of files long gone).  Now a scan
    drops them, loose files and whole sub-folders alike; the photos stay in the
    catalog and on the target, and the next scan finds nothing changed."""
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    made = make_photos(setup.inbox, 3) | make_photos(setup.inbox / "2024-05", 3, start=3)
    assert 0 == p.cli("run", "--once").returncode
    assert (6, 6) == _rows(setup)

    for name in make_photos(setup.home / "first", 3):  # import, then clear
        (setup.inbox / name).unlink()
    shutil.rmtree(setup.inbox / "2024-05")
    made |= make_photos(setup.inbox, 2, start=6)
    once = p.cli("run", "--once")
    assert 0 == once.returncode, once.stdout + once.stderr
    assert (2, 8) == _rows(setup)
    assert sorted(made.values()) == sorted(target_files(lib).values())
    last = p.events("scan_finished")[-1]
    assert (2, 6) == (last["files"], last["gone"]), last

    assert 0 == p.cli("run", "--once").returncode
    last = p.events("scan_finished")[-1]
    assert (2, 0, 0) == (last["files"], last["changed"], last["gone"]), last
    assert (2, 8) == _rows(setup)


def test_a_folder_photod_cannot_read_keeps_its_rows(setup: Setup) -> None:
    """The worst day: a sub-folder photod may not read (its mode, photod run by root
    without the capability that ignores modes) is no folder emptied: its files keep
    their rows (and are not read again once it can read it), while those of a file
    deleted beside it go."""
    need("setpriv", "apt install util-linux")
    bound = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search", "--"]  # fmt: skip
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])

    def run() -> None:
        done = subprocess.run([*bound, *p.cli_command(), "run", "--once"], env=p.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert 0 == done.returncode, done.stdout + done.stderr
        no_traceback(done.stdout + done.stderr)

    make_photos(setup.inbox / "open", 2)
    make_photos(setup.inbox / "locked", 2, start=2)
    run()
    assert (4, 4) == _rows(setup)

    (setup.inbox / "locked").chmod(0)
    try:
        (setup.inbox / "open" / "IMG_0000.JPG").unlink()
        run()
        assert (3, 4) == _rows(setup)
        assert any(e["path"].endswith("/locked") for e in p.events("folder_unreadable"))
    finally:
        (setup.inbox / "locked").chmod(0o755)
    run()
    last = p.events("scan_finished")[-1]
    assert (3, 0, 0) == (last["files"], last["changed"], last["gone"]), last
    assert (3, 4) == _rows(setup)


def test_a_drive_unplugged_from_under_the_watch_folder_keeps_its_rows(setup: Setup) -> None:
    """The watch folder on a drive (here a tmpfs) that is unplugged: what is left at
    its path is an empty folder on another device, its mount point.  Its files are
    away, not deleted: their rows stay."""
    need("mount", "apt-get install mount")
    p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}])
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(setup.inbox)], check=True)
    try:
        make_photos(setup.inbox, 3)
        assert 0 == p.cli("run", "--once").returncode
        assert (3, 3) == _rows(setup)
    finally:
        subprocess.run(["umount", str(setup.inbox)], check=True)
    assert 0 == p.cli("run", "--once").returncode
    last = p.events("scan_finished")[-1]
    assert (0, 0) == (last["files"], last["gone"]), last
    assert (3, 3) == _rows(setup)
