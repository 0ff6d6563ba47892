"""The config's schema check kept between runs of `photod status` (``configcache``): used
only for the very bytes it was made from, by the code that made it, from a private file
of this user; anything else (a changed config, a damaged, forged, foreign or stale
file) is validated in full, with the same messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import AfterValidator, BeforeValidator

from photod import config, configcache
from photod.errors import ConfigError
from tests.conftest import Photod, write_config

ROOT = Path(__file__).resolve().parents[1]


def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A valid config naming its state dir (made), and that state dir."""
    for name in ("inbox", "lib", "t7"):
        (tmp_path / name).mkdir(exist_ok=True)
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    path = write_config(
        tmp_path / "photod.toml",
        [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        [
            {"name": "lib", "type": "local", "path": str(tmp_path / "lib")},
            {"name": "t7", "type": "local", "path": str(tmp_path / "t7"), "media": "external"},
        ],
        policy={"copies": 2, "media": 1, "offsite": 0},
        extra=f'[daemon]\nstate_dir = "{state}"\nlog_dir = "{tmp_path}/log"\n',
    )
    return path, state


def kept_key(state: Path) -> bytes:
    """The key the kept file was written under (its header's second line, first word)."""
    return (state / configcache.NAME).read_bytes().split(b"\n")[1].split(b" ")[0]


def keep_copies_1(path: Path, state: Path) -> None:
    """Keep, under the file's own key, the check of the file with copies = 1: a kept
    check that can be told from the file (which says 2)."""
    data = tomllib.loads(path.read_text().replace("copies = 2", "copies = 1"))
    configcache.write(state, kept_key(state), config.Config.model_validate(data))


def test_a_kept_check_is_what_a_second_load_uses(tmp_path: Path) -> None:
    """The first cached load validates and keeps the result, private; the next takes
    it as it is (here a kept check that says copies = 1, to tell it from the file's 2)."""
    path, state = setup(tmp_path)
    first = config.load(path, cached=True)
    assert 0o600 == (state / configcache.NAME).stat().st_mode & 0o777
    assert first == config.load(path)
    keep_copies_1(path, state)
    assert (1, 2) == (config.load(path, cached=True).policy.copies, first.policy.copies)


def test_a_changed_config_is_checked_again(tmp_path: Path) -> None:
    """Once the file changes, its kept check stands for nothing: a bad file gets the
    same lines as without a cache, a good one its own values (then kept in turn)."""
    path, state = setup(tmp_path)
    config.load(path, cached=True)
    first = kept_key(state)
    good = path.read_text()
    path.write_text(good.replace("copies = 2", "copies = 0"))
    with pytest.raises(ConfigError) as plain:
        config.load(path)
    with pytest.raises(ConfigError) as cached:
        config.load(path, cached=True)
    assert plain.value.problems == cached.value.problems
    assert "policy.copies" in cached.value.problems[0]
    path.write_text(good.replace("copies = 2", "copies = 1"))
    assert 1 == config.load(path, cached=True).policy.copies
    assert first != kept_key(state)
    assert config.load(path) == config.load(path, cached=True)


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _other_name(data: bytes) -> bytes:
    return data.replace(b"inbox", b"inbax")  # still unpickles, to another value


def _other_key(data: bytes) -> bytes:
    head, rest = data.split(b"\n", 1)
    return head + b"\n" + (b"0" if rest[:1] != b"0" else b"1") + rest[1:]


@pytest.mark.parametrize(
    "damage",
    [_truncate, _other_name, _other_key, lambda _: b"", lambda _: os.urandom(3000)],
    ids=["truncated", "a byte changed in its value", "another key", "empty", "noise"],
)
def test_a_damaged_kept_check_is_never_used(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    """Whatever happened to the file, the config is validated in full (its source is
    still 'inbox'), and the sound file is kept again."""
    path, state = setup(tmp_path)
    config.load(path, cached=True)
    kept = state / configcache.NAME
    sound = kept.read_bytes()
    kept.write_bytes(damage(sound))
    cfg = config.load(path, cached=True)
    assert ["inbox"] == [s.name for s in cfg.sources]
    assert sound == kept.read_bytes()


class _Planted:
    """What an attacker's pickle does: make a folder as it is loaded."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.where),)


def test_a_forged_kept_check_runs_no_code(tmp_path: Path) -> None:
    """A file under the right key and checksum that names anything but the config's
    own classes is refused before it runs: nothing is made, the file is validated."""
    path, state = setup(tmp_path)
    config.load(path, cached=True)
    configcache.write(state, kept_key(state), _Planted(tmp_path / "planted"))
    assert ["inbox"] == [s.name for s in config.load(path, cached=True).sources]
    assert not (tmp_path / "planted").exists()


@pytest.mark.parametrize("how", ["readable by the group", "a link to it", "another user's"])
def test_a_kept_check_that_is_not_private_and_ours_is_not_used(tmp_path: Path, how: str) -> None:
    """Only a file of this user, mode 600, reached through no link counts (a kept check
    saying copies = 1 is not taken: the file's 2 is)."""
    if how == "another user's" and os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    path, state = setup(tmp_path)
    config.load(path, cached=True)
    keep_copies_1(path, state)
    kept = state / configcache.NAME
    if how == "readable by the group":
        kept.chmod(0o640)
    elif how == "a link to it":
        kept.rename(tmp_path / "elsewhere")
        kept.symlink_to(tmp_path / "elsewhere")
    else:
        os.chown(kept, 65534, 65534)
    assert 2 == config.load(path, cached=True).policy.copies


def _fresh_key(folder: Path) -> bytes:
    """The key a new process gives b"text" checked by ``checker_under_test`` in folder."""
    code = (f"import sys; sys.path.insert(0, {str(folder)!r}); import checker_under_test\n"
            "from photod import configcache\n"
            "print(configcache.key(b'text', ['checker_under_test']).decode())")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)  # fmt: skip
    return run.stdout.strip().encode()


def test_the_key_changes_with_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept check stands for the code that made it: when a module it names changes
    on disk (an edit, an upgrade), a new process's key does, even when the upgrade kept
    the file's size and time (Nix's store: every time 1); an unknown module gives no key.
    A process keeps the key of the code it runs: a daemon reloading its config after an
    upgrade was installed under it kept its old code's check under the new code's key
    (the review of fdce2b8: the new daemon then started on what the old one allowed)."""
    source = tmp_path / "checker_under_test.py"
    source.write_text("RULE = 1\n")
    os.utime(source, ns=(10**9, 10**9))
    module = types.ModuleType("checker_under_test")
    module.__file__ = str(source)
    monkeypatch.setitem(sys.modules, "checker_under_test", module)
    monkeypatch.setattr(configcache, "_code", {})  # (this test's process: a new one)
    running = configcache.key(b"text", ["checker_under_test"])
    assert running == _fresh_key(tmp_path)
    source.write_text("RULE = 2\n")  # an upgrade on disk: the same size...
    os.utime(source, ns=(10**9, 10**9))  # ...and the same time
    upgraded = _fresh_key(tmp_path)
    assert upgraded != running
    assert running == configcache.key(b"text", ["checker_under_test"])  # still the old code's
    assert b"" == configcache.key(b"text", ["not_loaded_anywhere"])


def _status(path: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`photod status --json`, then whether this process built the config's validators."""
    code = (
        "import sys\nfrom photod.cli import main\nfrom photod import config\n"
        f"code = main(['--config', {str(path)!r}, 'status', '--json'])\n"
        "print('BUILT', config.Config.__pydantic_complete__)\nsys.exit(code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home)}, timeout=60)  # fmt: skip


def test_status_validates_a_config_once_while_it_is_unchanged(tmp_path: Path) -> None:
    """The second `photod status` builds no validator and says the same; after an edit
    that breaks the file, status refuses it with the same one line as `config check`."""
    path, _ = setup(tmp_path)
    first, second = _status(path, tmp_path), _status(path, tmp_path)
    assert (0, 0) == (first.returncode, second.returncode), first.stderr + second.stderr
    reports = [json.loads(r.stdout.rsplit("\nBUILT", 1)[0]) for r in (first, second)]
    for report in reports:
        report.pop("state_dir_free")  # the disk is shared: its free space moves
    assert reports[0] == reports[1]
    assert ("BUILT True", "BUILT False") == tuple(
        r.stdout.splitlines()[-1] for r in (first, second)
    )
    path.write_text(path.read_text().replace('type = "local"', 'type = "tape"', 1))
    broken = _status(path, tmp_path)
    check = subprocess.run([sys.executable, "-m", "photod", "--config", str(path), "config",
                            "check"], cwd=ROOT, capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert (78, 78) == (broken.returncode, check.returncode)
    assert 1 == len(broken.stderr.splitlines())
    assert check.stderr == broken.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder away")
def test_status_keeps_nothing_in_another_users_state_dir(tmp_path: Path) -> None:
    """Run by root on another user's state dir, status writes nothing there."""
    path, state = setup(tmp_path)
    os.chown(state, 65534, 65534)
    r = _status(path, tmp_path)
    assert 0 == r.returncode, r.stderr
    assert [] == sorted(p.name for p in state.iterdir())


def test_status_settings_follow_the_file_and_the_environment(tmp_path: Path) -> None:
    """What `photod status` keeps of a config (``statusconfig``) stands for the file's
    bytes and the environment its paths are read in: the same file under another
    $HOME reports that home's folder, and an edit shows at once."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    homes = [tmp_path / "alice", tmp_path / "bob"]
    for home in homes:
        (home / "lib").mkdir(parents=True)
    path = tmp_path / "photod.toml"
    path.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[targets]]\nname = "lib"\ntype = "local"\n'
        f'path = "~/lib"\n[daemon]\nstate_dir = "{state}"\nlog_dir = "{tmp_path}/log"\n'
    )

    def targets(home: Path) -> list[tuple[str, str]]:
        r = _status(path, home)
        assert 0 == r.returncode, r.stderr
        report = json.loads(r.stdout.rsplit("\nBUILT", 1)[0])
        return [(t["name"], t["path"]) for t in report["targets"]]

    for home in [*homes, *homes]:  # each twice: the second time from what was kept
        assert [("lib", str(home / "lib"))] == targets(home)
    assert (state / "status.cache").stat().st_mode & 0o777 == 0o600
    with path.open("a") as f:
        f.write(f'[[targets]]\nname = "t7"\ntype = "local"\npath = "{tmp_path}/t7"\n')
    assert ["lib", "t7"] == [name for name, _ in targets(homes[0])]


@pytest.mark.parametrize("written", ["dotted key", "escaped"])
def test_a_state_dir_written_past_the_hint_is_still_the_one_status_uses(
    tmp_path: Path, written: str
) -> None:
    """Status looks for what it kept in the folder a `state_dir` line of `[daemon]`
    names, read without a TOML parser; a state dir written any other valid way is still
    the one status reports and keeps its settings in: a hint that misses costs a full
    check, never a wrong answer."""
    path, state = setup(tmp_path)
    text = path.read_text()
    line = f'state_dir = "{state}"\n'
    if written == "dotted key":  # before every table: daemon.state_dir = "…"
        text = f"daemon.{line}daemon.log_dir = '{tmp_path}/log'\n" + text.replace(
            f'[daemon]\n{line}log_dir = "{tmp_path}/log"\n', ""
        )
    else:  # the same path, one letter a TOML escape
        text = text.replace(line, line.replace('state"', 'stat\\u0065"'))
    path.write_text(text)
    assert config.parse(text, path).state_dir == state
    runs = [_status(path, tmp_path) for _ in range(2)]
    assert [0, 0] == [r.returncode for r in runs], runs[0].stderr
    reports = [json.loads(r.stdout.rsplit("\nBUILT", 1)[0]) for r in runs]
    assert [str(state)] * 2 == [r["state_dir"] for r in reports]
    assert ["lib", "t7"] == [t["name"] for t in reports[1]["targets"]]


def test_the_key_names_every_module_whose_code_checks_a_value() -> None:
    """A kept check stands for the code that validates: each function a key's value
    goes through (``parse_size``, ``parse_duration``: photod.units) is in a module the
    key names, so that an upgrade of that module alone is not read from an old check."""
    checkers = {
        m.func.__module__
        for model in config._CACHEABLE
        if issubclass(model, config._Strict)
        for field in model.model_fields.values()
        for m in field.metadata
        if isinstance(m, BeforeValidator | AfterValidator)
    }
    assert {"photod.units", "photod.config"} <= checkers
    assert checkers <= set(config._CHECKED_BY)


def test_a_daemon_runs_on_the_file_as_it_is_now(
    tmp_path: Path, photod_factory: Callable[[Path], Photod], samples: Path
) -> None:
    """`photod run` starts on the check kept from its last start while the file is
    the same, and on the file itself once it changed: a watch folder added since is
    backed up, a bad edit is refused at the start with its one line."""
    path, state = setup(tmp_path)
    p = photod_factory(path)
    p.start()
    p.stop()
    assert (state / configcache.NAME).exists()  # (kept by the start)
    (tmp_path / "inbox2").mkdir()
    shutil.copy(samples / "jpg_Canon_40D.jpg", tmp_path / "inbox2" / "added.jpg")
    path.write_text(path.read_text() + f'\n[[sources]]\nname = "inbox2"\ntype = "folder"\n'
                    f'path = "{tmp_path / "inbox2"}"\n')  # fmt: skip
    p.start()
    p.wait_protected(1)
    assert 0 == p.stop()
    path.write_text(path.read_text().replace("copies = 2", "copies = 0"))
    r = p.cli("run")
    assert 78 == r.returncode
    assert "policy.copies" in r.stderr


def test_the_config_kept_as_good_is_written_only_when_it_changed(tmp_path: Path) -> None:
    """A start on an unchanged config leaves its kept copy (config.lastgood) as it is
    (no rewrite, no fsync); an edited one is kept anew, and a kept copy that is not
    this user's private file is replaced, never taken as the same."""
    path, state = setup(tmp_path)
    cfg = config.load(path, cached=True)
    config.keep_last_good(cfg)
    kept = state / config.LAST_GOOD
    first = kept.stat()
    config.keep_last_good(cfg)
    assert (first.st_ino, first.st_mtime_ns) == (kept.stat().st_ino, kept.stat().st_mtime_ns)
    path.write_text(path.read_text().replace("copies = 2", "copies = 1"))
    config.keep_last_good(config.load(path, cached=True))
    assert "copies = 1" in kept.read_text()
    kept.chmod(0o644)
    config.keep_last_good(config.load(path, cached=True))
    assert 0o600 == kept.stat().st_mode & 0o777
    good = config.last_good(path)  # (read back through the same private-file check)
    assert good is not None and 1 == good.policy.copies
