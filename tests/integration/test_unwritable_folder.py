"""A folder inside a local target that photod's user may not write (another local user
made `2008/`, or root copied it in), the target's root writable: the target waits,
said once and naming that folder, and is back as soon as the folder is writable.

photod runs as root without the capabilities that let root ignore file modes, so
modes bind it as they bind any user (the test's Python may be in a folder only root
can enter: another account could not run it), and the folder is another user's."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import SAMPLES, Photod, target_files, wait_for
from tests.integration.conftest import Setup, listed
from tests.integration.test_truth import no_traceback
from tests.servers import need

pytestmark = pytest.mark.integration

NOBODY = 65534  # another user's folder (Debian's `nobody`; any uid but photod's will do)


def _modes_bind(p: Photod) -> None:
    """Run the daemon without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    need("setpriv", "apt install util-linux")
    p.prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                "--bounding-set=-dac_override,-dac_read_search", "--"]  # fmt: skip


@pytest.mark.parametrize(
    ("theirs", "mode"),
    [
        ("2008", 0o755),  # the year is theirs: the day's folder cannot be made in it
        ("2008/2008-05-30", 0o755),  # the day is theirs: the temporary cannot be made there
        ("2008", 0o700),  # the year is theirs, and private: it cannot even be entered
        ("2008", 0o733),  # the year is theirs: written into and entered, not listed
    ],
)
def test_a_folder_photod_may_not_write_is_said_once_and_waits_until_it_may(
    setup: Setup, theirs: str, mode: int
) -> None:
    """A photo of 30 May 2008 goes into a folder of the target another user owns (mode
    0755, 0700, or 0733: each copy opens its folders to read): one `target_unavailable` names that folder (not the target's root), its
    owner and mode, photod's user and what to do, and is not said again at each probe
    (the target does not come back to fail at the next copy: no `target_available`
    between); `photod status` says the same, with no traceback.  Once the folder is
    writable, the target is back by itself and both photos waiting land (the 2008 one
    and a 2015 one that came meanwhile)."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root, to give a folder to another user (as CI does)")
    lib = setup.home / "lib"
    (lib / theirs).mkdir(parents=True)
    for folder in (lib / theirs, lib / "2008"):
        os.chown(folder, NOBODY, NOBODY)
        folder.chmod(mode)
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    _modes_bind(p)
    p.start()
    (setup.inbox / "a.jpg").write_bytes((SAMPLES / "jpg_Canon_40D.jpg").read_bytes())
    [down] = p.wait_event("target_unavailable", target="lib", timeout=30)
    reason = f"{lib / theirs} is not writable by user root (owner nobody, mode {mode:04o}): "
    assert reason in down["reason"], down
    assert "give root read and write permission on it (chmod, chown)" in down["reason"], down

    later = (SAMPLES / "jpg_hdr_iphone_hdr_YES.jpg").read_bytes()  # (taken 10 April 2015)
    (setup.inbox / "b.jpg").write_bytes(later)
    p.wait_event("asset_ingested", count=2, timeout=30)
    time.sleep(12)  # more than two probes, and the copies' retries (1 s to 2 s)
    assert (1, 1) == (len(p.events("target_unavailable")), len(p.events("target_available")))
    [status] = [t for t in p.status()["targets"] if t["name"] == "lib"]
    assert (False, True) == (status["available"], reason in status["reason"]), status
    shown = p.cli("status")
    assert str(lib / theirs) in shown.stdout, shown.stdout
    assert {} == target_files(lib)

    (lib / theirs).chmod(0o777)  # (the owner lets everyone write there)
    p.wait_protected(2, timeout=30)
    assert 2 == len(p.events("target_available"))
    assert 1 == len(p.events("target_unavailable"))
    assert 0 == p.stop()
    no_traceback(p.output.read_text())


def test_a_folder_of_the_lists_photod_may_not_write_is_said_once_and_waits(
    setup: Setup,
) -> None:
    """The folder of this installation's checksum lists on the target (under
    `.photod/`) made another user's after a backup: the next photo's copy lands, its
    list cannot be written, and one `target_unavailable` names that folder (not the
    target's root) over several probes; once it is writable, the list names the photo."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root, to give a folder to another user (as CI does)")
    lib = setup.home / "lib"
    p = setup.photod([{"name": "lib", "path": str(lib)}])
    (setup.inbox / "a.jpg").write_bytes((SAMPLES / "jpg_Canon_40D.jpg").read_bytes())
    assert 0 == p.cli("run", "--once").returncode
    [sums] = lib.glob(".photod/installations/*/sums")
    os.chown(sums, NOBODY, NOBODY)
    sums.chmod(0o755)
    _modes_bind(p)
    came = len(p.events("target_available"))  # (the run's)
    p.start()
    (setup.inbox / "b.jpg").write_bytes((SAMPLES / "jpg_hdr_iphone_hdr_YES.jpg").read_bytes())
    [down] = p.wait_event("target_unavailable", target="lib", timeout=30)
    assert down["reason"].startswith(f"{sums} is not writable by user root "), down
    time.sleep(12)  # more than two probes
    assert (1, came + 1) == (
        len(p.events("target_unavailable")),
        len(p.events("target_available")),
    )

    sums.chmod(0o777)
    p.wait_event("target_available", count=came + 2, timeout=30)
    wait_for(lambda: set(target_files(lib)) == set(listed(lib)), 30, "the list to name both")
    assert 2 == len(listed(lib))
    assert 1 == len(p.events("target_unavailable"))
    assert 0 == p.stop()
    no_traceback(p.output.read_text())
