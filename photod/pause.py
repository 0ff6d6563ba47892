"""`photod pause`: until when no import, copy, scan or scrub starts.

The daemon keeps one across reloads and hands it to each pipeline it runs.  Its end is
a deadline on a clock that never goes back and goes on while the computer sleeps
(``Clock.boottime``): a pause for 2 h ends 2 h later, whatever the wall clock does
meanwhile.  On the wall clock, a clock set back (NTP correcting one that ran a year
ahead) stretched a 2 h pause by a year.  Only what `photod status` shows is a wall time.
"""

from __future__ import annotations

from photod.clock import SYSTEM, Clock

FOREVER = float("inf")


class Pause:
    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self._end = 0.0  # on clock.boottime(); FOREVER: until `photod resume`

    def active(self) -> bool:
        return self.clock.boottime() < self._end

    def start(self, seconds: float | None) -> None:
        """Pause for ``seconds`` from now; None: until ``end``."""
        self._end = self.clock.boottime() + seconds if seconds else FOREVER

    def end(self) -> None:
        self._end = 0.0

    def until(self) -> float:
        """When the pause ends, in seconds since the epoch (what a person reads);
        FOREVER for a pause with no end."""
        if self._end == FOREVER:
            return FOREVER
        return self.clock.time() + max(0.0, self._end - self.clock.boottime())
