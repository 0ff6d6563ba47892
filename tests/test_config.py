"""Config loading: the example is valid, and every mistake gets one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from photod import config
from photod.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[policy]
copies = 2
media = 2
offsite = 0
[[sources]]
name = "inbox"
type = "folder"
path = "~/Pictures/Inbox"
[[targets]]
name = "library"
type = "local"
path = "~/Pictures/photod"
media = "internal"
offsite = false
[[targets]]
name = "t7"
type = "local"
path = "/media/t7"
media = "external"
"""


def test_example_config_is_valid() -> None:
    """etc/photod.example.toml, which documents every key, passes validation."""
    path = ROOT / "etc" / "photod.example.toml"
    cfg = config.load(path)
    assert ["library", "t7", "nas", "b2", "dropbox"] == [t.name for t in cfg.targets]
    assert [("cloud", True), ("cloud", True)] == [(t.media, t.offsite) for t in cfg.targets[3:]]
    text = path.read_text()
    models = (
        config.LocalTarget,
        config.S3Target,
        config.RcloneTarget,
        config.EncryptionConfig,
        config.ScheduleConfig,
        config.NotifyConfig,
        config.DaemonConfig,
    )
    undocumented = [k for m in models for k in m.model_fields if f"{k} =" not in text]
    assert [] == undocumented


def test_contract_config_and_tilde(tmp_path: Path) -> None:
    """The issue's config contract loads; '~' expands; media and offsite are read."""
    cfg = config.parse(GOOD, tmp_path / "c.toml")
    assert Path.home() / "Pictures" / "Inbox" == cfg.sources[0].path
    assert ("external", False) == (cfg.targets[1].media, cfg.targets[1].offsite)


def test_relative_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    """A relative path means beside the config file, not the current directory."""
    cfg = config.parse(GOOD.replace('"~/Pictures/Inbox"', '"in"'), tmp_path / "c.toml")
    assert tmp_path / "in" == cfg.sources[0].path


def test_the_instance_name_is_the_host_name_unless_set(tmp_path: Path) -> None:
    """[daemon] instance names this computer on shared targets; by default it is the
    host name (made safe); a name that is not safe is one line naming the key."""
    assert config.host_name() == config.parse(GOOD, tmp_path / "c.toml").instance
    cfg = config.parse(GOOD + '[daemon]\ninstance = "annas-laptop"\n', tmp_path / "c.toml")
    assert "annas-laptop" == cfg.instance
    with pytest.raises(ConfigError) as err:
        config.parse(GOOD + '[daemon]\ninstance = "../up"\n', tmp_path / "c.toml")
    assert [f"{tmp_path / 'c.toml'}: daemon.instance: is '../up'; allowed: letters, digits, "
            "'.', '_' and '-', up to 64, starting with a letter or digit"] == err.value.problems  # fmt: skip


def test_daemon_dirs_override(tmp_path: Path) -> None:
    """[daemon] state_dir and log_dir move the catalog and the logs."""
    cfg = config.parse(GOOD + '[daemon]\nstate_dir = "s"\nlog_dir = "l"\n', tmp_path / "c.toml")
    assert (tmp_path / "s", tmp_path / "l") == (cfg.state_dir, cfg.log_dir)


def targets(*items: str) -> str:
    return "".join(
        f'\n[[targets]]\nname = "{n}"\ntype = "local"\npath = "/b/{n}"\n{extra}'
        for n, extra in (i.split("|", 1) if "|" in i else (i, "") for i in items)
    )


BASE = '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n[[sources]]\nname = "in"\ntype = "folder"\npath = "/a/in"\n'

BAD = [
    (
        '[policy]\ncopies = "three"\n' + targets("x"),
        "policy.copies",
        "is 'three'; allowed: a whole number",
    ),
    ("[policy]\ncopies = 0\n", "policy.copies", "is 0; allowed: 1 or more"),
    (
        BASE.replace('path = "/a/in"', "path = 5") + targets("x"),
        "sources[0].path",
        "is 5; allowed: a path in quotes, like '~/Pictures'",
    ),
    (
        BASE + targets('x|media = "tape"\n'),
        "targets[0].media",
        "'internal', 'external', 'nas' or 'cloud'",
    ),
    (
        BASE + targets('x|offsite = "yes"\n'),
        "targets[0].offsite",
        "is 'yes'; allowed: true or false",
    ),
    (BASE + targets("x|pth = 1\n"), "targets[0]", "unknown key 'pth'"),
    (
        BASE + targets("x") + '[[targets]]\nname = "x"\ntype = "local"\npath = "/b/y"\n',
        "targets[1].name",
        "already the name",
    ),
    (
        BASE + '[[sources]]\nname = "in"\ntype = "folder"\npath = "/a/two"\n' + targets("x"),
        "sources[1].name",
        "already the name",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "y"\ntype = "local"\npath = "/b/x/in"\n',
        "targets[1].path",
        "overlaps",
    ),
    (BASE + targets("x|reserve = -5\n"), "targets[0].reserve", "size like"),
    (BASE + targets("x") + "[daemon]\nretry_interval = -1\n", "daemon.retry_interval", "duration"),
    (
        BASE + targets("x") + '[daemon]\nworkers = "two"\n',
        "daemon.workers",
        "is 'two'; allowed: a whole number",
    ),
    (
        BASE.replace("media = 1", "media = 2") + targets("x", "y"),
        "policy",
        "media = 2",
    ),
    (
        BASE + targets("x") + '[schedule]\non_battery = "no"\n',
        "schedule.on_battery",
        "is 'no'; allowed: true or false",
    ),
    (BASE + targets("x") + '[notify]\nevery = "often"\n', "notify.every", "duration"),
    (
        BASE + '[[targets]]\nname = "x"\ntype = "ftp"\npath = "/b"\n',
        "targets[0]",
        "target type 'ftp' is not known; allowed: 'local', 's3', 'rclone'",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "o"\ntype = "s3"\nbucket = "My_Bucket"\n',
        "targets[1].bucket",
        "a bucket name",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "o"\ntype = "s3"\n',
        "targets[1].bucket",
        "required key is missing",
    ),
    (
        BASE
        + targets("x")
        + '[[targets]]\nname = "o"\ntype = "s3"\nbucket = "bkt"\nprefix = "p/"\n'
        '[[targets]]\nname = "e"\ntype = "s3"\nbucket = "bkt"\nprefix = "/p/enc"\n',
        "targets[2]",
        "'e' (s3://bkt//p/enc) overlaps targets[1]: 'o' (s3://bkt/p/)",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "o"\ntype = "s3"\nbucket = "bkt"\n'
        '[[targets]]\nname = "e"\ntype = "s3"\nbucket = "bkt"\nprefix = "enc"\n',
        "targets[2]",
        "neither inside the other",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "o"\ntype = "rclone"\nremote = "b2:photos"\n'
        '[[targets]]\nname = "e"\ntype = "rclone"\nremote = "b2:photos/sealed"\n',
        "targets[2]",
        "overlaps targets[1]",
    ),
    (
        BASE + targets("x") + '[[targets]]\nname = "o"\ntype = "rclone"\nremote = "nocolon"\n',
        "targets[1].remote",
        "an rclone remote 'name:path'",
    ),
    (  # a service account's JSON pasted as it came: its lines went into rclone.conf
        BASE + targets("x") + '[[targets]]\nname = "g"\ntype = "rclone"\nremote = "gd:photos"\n'
        'rclone_config = { type = "drive", service_account_credentials = '
        '"{\\n  \\"type\\": \\"service_account\\"\\n}\\n[evil]" }\n',
        "targets[1].rclone_config.service_account_credentials",
        "holds a line break or control character (not shown: it may be a secret), which a "
        "value in rclone.conf cannot hold; allowed: one line",
    ),
    (
        BASE + targets('x|window = "1am-6am"\n'),
        "targets[0].window",
        "'HH:MM-HH:MM' like '01:00-06:00'",
    ),
    (
        BASE + targets('x|bandwidth_limit = "fast"\n'),
        "targets[0].bandwidth_limit",
        "a rate like '5MiB/s'",
    ),
    (
        BASE + targets("x|encrypt = true\n"),
        "targets[0].encrypt",
        "needs [encryption] identity = FILE: the identity file its copies were sealed with "
        "(after a disaster, the copy you kept: a new key opens none of them); for a new "
        "target, create one with `photod keygen --output FILE`",
    ),
    (
        BASE + targets("x") + '[encryption]\nidentity = "k"\nrecipients = ["age1nope"]\n',
        "encryption.recipients[0]",
        "an age recipient",
    ),
    (
        BASE + '[[targets]]\nname = "x"\ntype = "local"\n',
        "targets[0].path",
        "required key is missing",
    ),
    (
        BASE + '[[targets]]\nname = "bad name!"\ntype = "local"\npath = "/b"\n',
        "targets[0].name",
        "allowed: letters",
    ),
    (
        BASE + '[[targets]]\nname = "x"\ntype = "local"\npath = "/a/in/backup"\n',
        "targets[0].path",
        "inside watch folder",
    ),
    (
        BASE + '[[targets]]\nname = "x"\ntype = "local"\npath = "/a"\n',
        "sources[0].path",
        "inside target",
    ),
    (BASE.replace("copies = 1", "copies = 3") + targets("x"), "policy", "needs at least 3 targets"),
    (
        BASE.replace("offsite = 0", "offsite = 1") + targets("x"),
        "policy",
        "offsite = 1 needs 1 target with offsite = true, 0 configured",
    ),
    (BASE + targets("x") + '[ingest]\nsettle = "soon"\n', "ingest.settle", "duration"),
    (BASE + targets('x|reserve = "lots"\n'), "targets[0].reserve", "size like"),
    (
        BASE + targets("x") + '[ingest]\nlayout = "{year}/{nope}"\n',
        "ingest.layout",
        "allowed fields",
    ),
    (
        BASE + targets("x") + '[ingest]\ndecode_check = "maybe"\n',
        "ingest.decode_check",
        "'full', 'fast' or 'off'",
    ),
    (
        BASE + targets("x") + "[daemon]\nworkers = 0\n",
        "daemon.workers",
        "is 0; allowed: 1 or more",
    ),
    (BASE + targets("x") + "[surprise]\n", "(top level)", "unknown key 'surprise'"),
    (
        BASE + targets("x") + '[[sources]]\nname = "p"\ntype = "iphone"\nudids = ["abc"]\n',
        "sources[1].udids[0]",
        "an iPhone UDID",
    ),
    (
        BASE + targets("x") + '[[sources]]\nname = "p"\ntype = "iphone"\ntimeout = "long"\n',
        "sources[1].timeout",
        "duration",
    ),
    (
        BASE + targets("x") + '[[sources]]\nname = "p"\ntype = "iphone"\npath = "/x"\n',
        "sources[1]",
        "unknown key 'path'; allowed keys here: name, type, udids, include_edits, library, timeout",
    ),
    (
        BASE + targets("x") + '[[sources]]\nname = "p"\ntype = "android"\n',
        "sources[1]",
        "source type 'android' is not known; allowed: 'folder', 'iphone'",
    ),
    (
        BASE + targets("x") + '[[sources]]\nname = "p"\n',
        "sources[1]",
        "required key 'type' is missing",
    ),
    ('path = "/etc"\n' + BASE + targets("x"), "(top level)", "unknown key 'path'"),
    (
        BASE + targets("x") + '[notify]\nwebhook = "ftp://x"\n',
        "notify.webhook",
        "http:// or https://",
    ),
    (BASE + targets("x") + '[notify]\nemail_to = "a@b.c"\n', "notify.email_to", "smtp_host"),
    (BASE + targets('x|expect_every = "often"\n'), "targets[0].expect_every", "duration"),
    (
        BASE + targets("x") + '[schedule]\nscrub = "61 3 * * *"\n',
        "schedule.scrub",
        "is '61 3 * * *' (the minute field is wrong: it takes 0-59); allowed: five fields "
        "'minute hour day month weekday'",
    ),
    (
        BASE + targets("x") + '[schedule]\ndrill = "weekly"\n',
        "schedule.drill",
        "is 'weekly'; allowed: five fields 'minute hour day month weekday', e.g. '30 3 * * *'",
    ),
    (
        BASE + targets("x") + '[schedule]\nscrub_budget = "20m"\n',
        "schedule.scrub_budget",
        "'20MB' or '20min'",
    ),
    (
        BASE + targets("x") + '[schedule]\nscrub_budget = "lots"\n',
        "schedule.scrub_budget",
        "a size like '20GiB' or a duration",
    ),
    (
        BASE + targets("x") + '[schedule]\nscrub_cycle = "monthly"\n',
        "schedule.scrub_cycle",
        "duration",
    ),
    (
        BASE + targets("x") + "[schedule]\ndrill_sample = 0\n",
        "schedule.drill_sample",
        "is 0; allowed: 1 or more",
    ),
    (
        BASE
        + targets("x")
        + '[[targets]]\nname = "s"\ntype = "s3"\nbucket = "bkt"\negress_budget = "a lot"\n',
        "targets[1].egress_budget",
        "'10GiB/month'",
    ),
    (  # the catalog opened, its first snapshot was a traceback (SQLite: 504 bytes at most)
        BASE + targets("x") + f'[daemon]\nstate_dir = "{"/".join(["s" * 99] * 5)}"\n',
        "daemon.state_dir",
        "bytes long; allowed: at most 464 (SQLite opens no database deeper than 504 bytes",
    ),
    (  # a template's placeholder: the target was the config's own folder
        BASE + '[[targets]]\nname = "x"\ntype = "local"\npath = ""\n',
        "targets[0].path",
        "is ''; allowed: a path (an empty one is not none",
    ),
    (
        BASE + targets("x") + '[encryption]\nidentity = " "\n',
        "encryption.identity",
        "is ' '; allowed: a path",
    ),
    ("[policy\n", "not valid TOML", "line 1"),
    (
        BASE + targets("x") + '[daemon]\nstate_dir = "~nosuchuser/photod"\n',
        "daemon.state_dir",
        "is '~nosuchuser/photod', whose '~nosuchuser' names no user of this computer",
    ),
]


@pytest.mark.parametrize(("text", "key", "why"), BAD)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, why: str) -> None:
    """Each malformed config is refused with a line: file, key path, what is wrong/allowed."""
    path = tmp_path / "photod.toml"
    with pytest.raises(ConfigError) as info:
        config.parse(text, path)
    line = next((p for p in info.value.problems if f": {key}" in p), None)
    assert line is not None, info.value.problems
    assert line.startswith(f"{path}: ")
    assert why in line


def test_a_config_nested_thousands_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    """tomllib's parser recurses: a config nested 5,000 deep raised RecursionError, which
    a reload (SIGHUP) did not take for a bad config: it killed the running daemon."""
    with pytest.raises(ConfigError, match="nested too deep"):
        config.parse("x = " + "[" * 5000 + "]" * 5000 + "\n", tmp_path / "photod.toml")


def test_a_refused_value_is_said_one_way() -> None:
    """Every value refused, by pydantic's checks or photod's own, reads "is X; allowed:
    Y" (never "input should be …" with a "(got X)" beside it), and a cron line's error
    names the field in photod's words, not cronsim's ("Wrong number of fields")."""
    for text, _, _ in BAD:
        with pytest.raises(ConfigError) as info:
            config.parse(text, Path("/c.toml"))
        for line in info.value.problems:
            assert not any(w in line for w in ("(got ", "nput should", "Wrong number", "Bad ")), (
                line
            )
    with pytest.raises(ConfigError) as info:
        config.parse(BASE + targets("x|encrypt = 1\n"), Path("/c.toml"))
    assert ["/c.toml: targets[0].encrypt: is 1; allowed: true or false"] == info.value.problems


def test_config_check_cli(tmp_path: Path) -> None:
    """`photod config check` prints ok and exits 0, or prints each problem and exits 78."""
    good = tmp_path / "good.toml"
    good.write_text(GOOD.replace("copies = 2", "copies = 1").replace("media = 2", "media = 1"))
    ok = subprocess.run(
        [sys.executable, "-m", "photod", "--config", str(good), "config", "check"],
        capture_output=True,
        text=True,
    )
    assert (0, True) == (ok.returncode, ok.stdout.startswith("ok"))
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + targets('x|media = "tape"\n', "y|pth = 2\n"))
    out = subprocess.run(
        [sys.executable, "-m", "photod", "--config", str(bad), "config", "check"],
        capture_output=True,
        text=True,
    )
    assert 78 == out.returncode
    lines = out.stderr.strip().splitlines()
    assert 2 == len(lines)
    assert lines[0].startswith(f"{bad}: targets[0].media: ")
    assert lines[1].startswith(f"{bad}: targets[1]: unknown key 'pth'")


def test_config_check_tries_the_age_identity(tmp_path: Path) -> None:
    """An identity file that is there but holds no age key (a note, the public key
    pasted in): `photod config check` said ok, and the daemon then refused it at a
    reload and stopped at a start.  Now the same check, one line naming the key."""
    key = tmp_path / "photod.key"
    key.write_text("hello\n")
    key.chmod(0o600)
    path = tmp_path / "photod.toml"
    path.write_text(BASE + targets("x|encrypt = true\n") + f'[encryption]\nidentity = "{key}"\n')
    for command in (["config", "check"], ["reload"]):
        out = subprocess.run(
            [sys.executable, "-m", "photod", "--config", str(path), *command],
            capture_output=True,
            text=True,
        )
        assert (78, "") == (out.returncode, out.stdout), command
        assert [f"{path}: encryption.identity: {key}: not an age identity (expected a line "
                "AGE-SECRET-KEY-1...): invalid Bech32 encoding"] == out.stderr.splitlines()  # fmt: skip


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is one clear line and exit 78."""
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.toml")
    assert "no such config file" in info.value.problems[0]


def test_photod_config_env_selects_the_file(tmp_path: Path) -> None:
    """PHOTOD_CONFIG picks the config when --config is not given."""
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text(GOOD.replace("copies = 2", "copies = 1").replace("media = 2", "media = 1"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PHOTOD_CONFIG": str(cfg)}
    out = subprocess.run(
        [sys.executable, "-m", "photod", "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert (0, f"ok: {cfg}: 1 source, 2 targets") == (out.returncode, out.stdout.strip())


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660])
def test_credentials_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    """An S3 credentials file the group or others can read is refused, with the key,
    the mode and the fix; at 600 it is accepted."""
    creds = tmp_path / "creds"
    creds.write_text("[default]\n")
    creds.chmod(mode)
    text = BASE.replace("copies = 1", "copies = 1") + (
        f'[[targets]]\nname = "o"\ntype = "s3"\nbucket = "photos"\ncredentials_file = "{creds}"\n'
    )
    cfg = config.parse(text, tmp_path / "photod.toml")
    with pytest.raises(ConfigError) as info:
        config.check_secrets(cfg)
    assert [
        f"{tmp_path / 'photod.toml'}: targets[0].credentials_file: {creds} is readable by "
        f"others (mode {mode:03o}); allowed: only its owner, run `chmod 600 {creds}`"
    ] == info.value.problems
    creds.chmod(0o600)
    config.check_secrets(cfg)


@pytest.mark.parametrize(
    ("settings", "secret"),
    [
        ('{ type = "sftp", host = "nas.lan" }', None),
        ('{ type = "sftp", host = "nas.lan", key_file = "/home/a/.ssh/id" }', None),
        ('{ type = "sftp", host = "nas.lan", pass = "obscured" }', "pass"),
        ('{ type = "drive", token = "{\\"access_token\\": \\"x\\"}" }', "token"),
        ('{ type = "s3", secret_access_key = "k" }', "secret_access_key"),
        # Credentials under names that say nothing of it (each was copied in plain text
        # into the recovery plan and the kept config on every target):
        ('{ type = "storj", access_grant = "1cCY..." }', "access_grant"),
        ('{ type = "azurefiles", connection_string = "...;AccountKey=K" }', "connection_string"),
        ('{ type = "webdav", url = "https://alice:hunter2@dav.example.org/" }', "url"),
        ('{ type = "webdav", url = "https://dav.example.org/photos" }', None),
        # An option that says nothing secret is no reason to refuse a config at start.
        ('{ type = "ftp", host = "nas.lan", explicit_tls = "true", domain = "HOME" }', None),
    ],
)
def test_a_config_is_refused_when_others_can_read_a_secret_in_it(
    tmp_path: Path, settings: str, secret: str | None
) -> None:
    """An inline rclone remote that holds a password or token makes the config file
    itself a secret: refused at 644 with the key and the fix, accepted at 600. Settings
    without one (a type, a host, a key file's path) leave the file's mode to its owner."""
    path = tmp_path / "photod.toml"
    path.write_text(
        BASE + '[[targets]]\nname = "o"\ntype = "rclone"\nremote = "o:photos"\n'
        f"rclone_config = {settings}\n"
    )
    path.chmod(0o644)
    cfg = config.parse(path.read_text(), path)
    if secret is None:
        config.check_secrets(cfg)
        return
    with pytest.raises(ConfigError) as info:
        config.check_secrets(cfg)
    assert [
        f"{path}: targets[0].rclone_config.{secret}: the config holds a secret and is "
        f"readable by others (mode 644); allowed: only its owner, run `chmod 600 {path}`"
    ] == info.value.problems
    path.chmod(0o600)
    config.check_secrets(cfg)


@pytest.mark.parametrize(
    ("endpoint", "warned"),
    [
        ("http://127.0.0.1:9000", False),
        ("http://127.8.0.1/", False),
        ("http://[::1]:9000", False),
        ("http://localhost:9000", False),
        ("https://s3.example.org", False),
        ("http://nas.lan:9000", True),
        ("http://127.evil.example", True),
        ("http://192.168.1.10:9000", True),
    ],
)
def test_a_plain_http_endpoint_off_this_computer_is_a_warning(endpoint: str, warned: bool) -> None:
    """Photos sent over plain http travel in clear unless the server is this computer."""
    text = BASE + (
        f'[[targets]]\nname = "o"\ntype = "s3"\nbucket = "photos"\nendpoint = "{endpoint}"\n'
    )
    found = config.warnings_for(config.parse(text, Path("/etc/photod.toml")))
    found = [w for w in found if "plain http" in w]
    assert warned == bool(found), found
    if warned:
        assert f"targets[0].endpoint: {endpoint} is plain http" in found[0]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://localhost:9443"])
def test_an_offsite_target_on_this_computer_is_said_or_refused(endpoint: str) -> None:
    """A copy on this computer is not offsite: an S3 endpoint here counted as offsite is
    a warning (right only through a tunnel), and an rclone remote that is a folder here
    (type local or alias) is refused unless its media and offsite are set."""
    s3 = f'[[targets]]\nname = "o"\ntype = "s3"\nbucket = "photos"\nendpoint = "{endpoint}"\n'
    path = Path("/etc/photod.toml")
    [said] = [w for w in config.warnings_for(config.parse(BASE + s3, path)) if "offsite" in w]
    assert f"targets[0].endpoint: {endpoint} is this computer" in said
    assert not [
        w
        for w in config.warnings_for(config.parse(BASE + s3 + "offsite = false\n", path))
        if "offsite" in w
    ]
    folder = '[[targets]]\nname = "o"\ntype = "rclone"\nremote = "o:/srv/photos"\n'
    with pytest.raises(ConfigError) as info:
        config.parse(BASE + folder + 'rclone_config = { type = "local" }\n', path)
    assert "targets[0].offsite: remote 'o:/srv/photos' is a folder on this computer" in str(
        info.value
    )
    config.parse(
        BASE + folder + 'media = "nas"\noffsite = false\nrclone_config = { type = "alias" }\n',
        path,
    )


def test_a_refused_notification_url_is_not_echoed(tmp_path: Path) -> None:
    """A webhook's or heartbeat's URL holds its token: a malformed one is named by its
    key and what is allowed, never printed (the message reaches terminals and logs)."""
    text = BASE + targets("x") + '[notify]\nwebhook = "ftp://u:SECRETTOKEN@example.com/h"\n'
    with pytest.raises(ConfigError) as info:
        config.parse(text, tmp_path / "c.toml")
    assert "notify.webhook" in str(info.value) and "http://" in str(info.value)
    assert "SECRETTOKEN" not in str(info.value)
