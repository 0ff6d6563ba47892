"""An S3 target with a real ``photod run`` when the server answers something photod
cannot use, or the network goes at the worst moment of an upload: what the user is
told, and that nothing is left on the server for ever."""

from __future__ import annotations

from pathlib import Path

from tests.fakephone import jpeg
from tests.integration.conftest import Setup
from tests.servers import ACCESS_KEY, BUCKET, SECRET_KEY, RefusingServer

SKEWED = "The difference between the request time and the current time is too large."


def s3_credentials(path: Path) -> Path:
    path.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    path.chmod(0o600)
    return path


def test_a_clock_the_server_refuses_is_said_to_be_the_clock(setup: Setup) -> None:
    """A server whose clock is 20 minutes behind this computer's refuses every request
    (403 RequestTimeTooSkewed, as S3 does past 15 minutes).  `photod doctor` says so on
    the target's line and on the clock's (never "OK clock"), with by how much and the
    fix; `photod run --once` says the same, never "throttled"."""
    server = RefusingServer(403, "RequestTimeTooSkewed", SKEWED, clock=-20 * 60)
    try:
        creds = s3_credentials(setup.home / "aws-credentials")
        cloud = {"name": "cloud", "type": "s3", "endpoint": server.endpoint,
                 "bucket": BUCKET, "credentials_file": str(creds)}  # fmt: skip
        p = setup.photod([{"name": "lib", "path": str(setup.home / "lib")}, cloud],
                         policy={"copies": 2, "media": 2, "offsite": 1})  # fmt: skip
        said = "this computer's clock is 20 minutes ahead of the server's"
        fix = "set the clock (timedatectl set-ntp true)"
        doctor = p.cli("doctor")
        lines = [line.split(None, 1) for line in doctor.stdout.splitlines() if ": " in line]
        found = {what.split(": ")[0]: (level, what) for level, what in lines}
        assert ("FAIL", f"target cloud: {said} -> {fix}") == found["target cloud"]
        assert ("FAIL", True) == (found["clock"][0], found["clock"][1].endswith(
            f": {said} (target 'cloud') -> {fix}"))  # fmt: skip
        jpeg(setup.inbox / "a.jpg", seed=1)
        once = p.cli("run", "--once")
        assert f"target 'cloud' was not written to: {said}: {fix}" in once.stdout
        assert "throttled" not in once.stdout + doctor.stdout
    finally:
        server.stop()
