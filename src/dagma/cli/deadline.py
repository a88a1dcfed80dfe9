"""A time budget for a whole command: every network step waits at most what is left of it."""

from __future__ import annotations

import time


class Deadline:
    """``total`` seconds from creation; :meth:`timeout` caps each step's own timeout by it."""

    def __init__(self, total: float) -> None:
        self._end = time.monotonic() + total
        self._start = time.monotonic()

    @property
    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - time.monotonic())

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self._start

    def timeout(self, step: float) -> float:
        """The timeout for a step that alone would get ``step`` seconds (at least 0.1 s)."""
        return max(0.1, min(step, self.remaining))

    def extend(self, seconds: float) -> None:
        """Give back ``seconds`` that were not spent waiting (e.g. importing a library)."""
        self._end += seconds

    @property
    def expired(self) -> bool:
        """True once the budget is spent."""
        return self.remaining <= 0.1
