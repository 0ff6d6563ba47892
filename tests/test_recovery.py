"""The README's restores without photod are the ones photod writes on every target
(`.photod/RECOVERY.md`) and in `photod recovery-plan`: one text, held line by line, so
the two cannot drift apart again (they had: the README said `not stored:` where the
target's document said MISSING, and its MISSING line was another)."""

from __future__ import annotations

import re
from pathlib import Path

from photod import config, recovery

README = Path(__file__).resolve().parents[1] / "README.md"


def block(text: str, heading: str, fence: str) -> list[str]:
    """The lines of the first ```fence block after ``heading`` in ``text``."""
    m = re.search(rf"```{fence}\n(.*?)```", text[text.index(heading) :], re.S)
    assert m is not None, f"no {fence} block under {heading!r}"
    return m.group(1).splitlines()


def documents(tmp_path: Path) -> dict[str, str]:
    """Each target's RECOVERY.md, by target: a plain drive where the README's example
    has it, and an encrypted one."""
    path = tmp_path / "photod.toml"
    path.write_text(
        '[policy]\ncopies = 1\nmedia = 1\noffsite = 0\n'
        f'[[sources]]\nname = "inbox"\ntype = "folder"\npath = "{tmp_path}/in"\n'
        '[[targets]]\nname = "t7"\ntype = "local"\npath = "/media/me/T7/photos"\n'
        '[[targets]]\nname = "vault"\ntype = "local"\npath = "/media/vault"\nencrypt = true\n'
        '[encryption]\nidentity = "/etc/photod/key.txt"\n'
        f'[daemon]\nstate_dir = "{tmp_path}/state"\n'
    )  # fmt: skip
    path.chmod(0o600)
    return {t.name: recovery.shared_plan(t) for t in config.load(path).targets}


def test_the_readmes_restore_of_a_plain_drive_is_the_one_its_recovery_document_gives(
    tmp_path: Path,
) -> None:
    """The README's "Restore without photod" is, line for line, what a plain drive's
    RECOVERY.md says to run there."""
    readme = README.read_text()
    doc = documents(tmp_path)["t7"]
    assert block(doc, "## Without photod", "sh") == block(readme, "## Restore without photod", "sh")


def test_the_readmes_disaster_recovery_is_the_one_an_encrypted_targets_document_gives(
    tmp_path: Path,
) -> None:
    """The README's "Disaster recovery without photod" is, line for line, what an
    encrypted target's RECOVERY.md says to run, but for step 1's copy of the target
    (the README's from `$REMOTE`, the drive's document's from the drive)."""
    readme = block(README.read_text(), "## Disaster recovery without photod", "bash")
    doc = block(documents(tmp_path)["vault"], "## Without photod", "bash")
    drive = "cp -a /media/vault/. encrypted/"
    assert 1 == sum(drive in line for line in doc)
    assert readme == [line.replace(drive, 'rclone copy "$REMOTE" encrypted/') for line in doc]
