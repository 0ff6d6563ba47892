"""A signal to the daemon is acted on, whenever it lands (see ``photod.signals``: a
handler that took a lock the main thread already held would wait for itself for ever,
and `systemctl stop` would end in SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

# A real Daemon in a process of its own (a wedged main thread cannot be timed out in
# this one).  The signal is raised at the one instant the main thread holds the lock
# inside the daemon's wake-up event: as it begins to wait on it, as `_serve` does.
SCRIPT = """
import signal, sys
from pathlib import Path
from photod import config
from photod import signals
from photod.daemon import Daemon

home = Path(sys.argv[1])
cfg = config.parse(
    '[policy]\\ncopies = 1\\nmedia = 1\\noffsite = 0\\n'
    f'[[targets]]\\nname = "lib"\\ntype = "local"\\npath = "{home}/lib"\\n'
    f'[daemon]\\nstate_dir = "{home}/state"\\n', home / "photod.toml")
d = Daemon(cfg)
signals.listen(d._on_signal)
wake = d._wake

def tracer(frame, event, arg):
    if (event == "call" and frame.f_code.co_name == "_release_save"
            and frame.f_locals.get("self") is wake._cond):
        sys.settrace(None)
        signal.raise_signal(getattr(signal, sys.argv[2]))
    return None

sys.settrace(tracer)
woke = wake.wait(10)
sys.settrace(None)
print(woke, d._stop, d._stopping.is_set(), d._reload)
"""


def _signal_while_waiting(tmp_path: Path, name: str) -> list[str]:
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), name],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{name} while the daemon waited wedged it: no answer in 30 s"
        ) from exc
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_stop_that_lands_as_the_daemon_begins_to_wait_stops_it(tmp_path: Path) -> None:
    assert ["True", "True", "True", "False"] == _signal_while_waiting(tmp_path, "SIGTERM")


def test_a_reload_that_lands_as_the_daemon_begins_to_wait_reloads_it(tmp_path: Path) -> None:
    assert ["True", "False", "False", "True"] == _signal_while_waiting(tmp_path, "SIGHUP")


def test_a_command_stopped_ends_as_at_ctrl_c_but_nohup_is_kept() -> None:
    """`photod restore` takes TERM and HUP as Ctrl-C (the file it writes is removed);
    a HUP that `nohup` set to be ignored stays ignored (closing the ssh session that
    started `nohup photod restore ... &` must not stop it)."""
    from photod import signals

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signals.interrupt_on_stop()
        assert signal.SIG_IGN is signal.getsignal(signal.SIGHUP)
        assert signal.default_int_handler is signal.getsignal(signal.SIGTERM)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
