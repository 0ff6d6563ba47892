"""What `photod restore` says when it ends: the counts, the first files restored, each
failure and why, and once (not once per file) the files a target unplugged mid-restore
left undone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from photod.policy import plural, size

SHOWN = 50  # restored files `photod restore` names; the rest are counted


@dataclass
class RestoreReport:
    restored: int = 0
    skipped: int = 0  # already there with the same bytes
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why), not unreached
    # The first ``SHOWN`` restored, relative to DEST: only they are printed, and a whole
    # library's (a million photos: 100 MB) was held to the end of the restore.
    paths: list[str] = field(default_factory=list)
    absent: int = 0  # photos of the album asked for that photod does not hold
    away: dict[str, str] = field(default_factory=dict)  # target -> why it went away mid-run
    # Failed only as every target went (a drive unplugged): the first ``SHOWN``, and
    # how many.  Each was held twice, in ``failed`` too, with its own why (a restore cut
    # at its start by an unplugged drive: a library's worth of names and errors).
    unreached: list[str] = field(default_factory=list)
    unreached_count: int = 0

    def took(self, path: str, size: int) -> None:
        """One more file restored, to ``path`` (relative to DEST)."""
        self.restored += 1
        self.bytes += size
        if len(self.paths) < SHOWN:
            self.paths.append(path)

    def missed(self, path: str, why: str, unreached: bool) -> None:
        """One more file not restored, and why; ``unreached``: only as its targets went."""
        if not unreached:
            self.failed.append((path, why))
            return
        self.unreached_count += 1
        if len(self.unreached) < SHOWN:
            self.unreached.append(path)

    @property
    def failures(self) -> int:
        return len(self.failed) + self.unreached_count

    def gone(self) -> str:
        """Why the files ``unreached`` were not restored."""
        away = "; ".join(f"{t!r} ({why})" for t, why in self.away.items())
        return f"target {away} became unavailable during the restore (unplugged?)"

    def render(self, dest: Path, shown: int = SHOWN) -> str:
        """What `photod restore` prints: the counts, each file restored (up to
        ``shown``), each failure and why.  A name that a terminal would not show as it
        is (a control or direction character, planted to disguise it) is escaped."""
        lines = [f"restored {plural(self.restored, 'file')} ({size(self.bytes)}) to {dest}, "
                 f"skipped {self.skipped} already there, failed {self.failures}"]  # fmt: skip
        listed = self.paths[:shown]
        lines += [f"  restored: {_printable(path)}" for path in listed]
        if self.restored > len(listed):
            lines.append(f"  ... and {self.restored - len(listed)} more restored files")
        lines += [f"  failed: {_printable(path)}: {why}" for path, why in self.failed]
        if self.unreached_count:  # said once, not once per file (a drive unplugged mid-restore)
            lines.append(f"  not restored: {plural(self.unreached_count, 'file')}: "
                         f"{self.gone()}; once it is back, run the same restore again: "
                         "what is restored is kept, the rest comes")  # fmt: skip
            named = self.unreached[:shown]
            lines += [f"    {_printable(path)}" for path in named]
            if self.unreached_count > len(named):
                lines.append(f"    ... and {self.unreached_count - len(named)} more")
        if self.absent:
            lines.append(f"  not restored: {plural(self.absent, 'photo')} of the album that "
                         "photod does not have (the original only in iCloud, or not imported "
                         "yet): `photod albums` counts them, `photod status --device` names "
                         "them")  # fmt: skip
        return "\n".join(lines)


def _printable(name: str) -> str:
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")
