"""Time sources. Every guard takes a ``Clock`` so tests drive time instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

__all__ = ["Clock", "FakeClock", "monotonic"]

Clock = Callable[[], float]
"""A zero-argument callable returning seconds as a float (``time.monotonic`` or ``time.time``)."""


class FakeClock:
    """A clock that only moves when told to: ``clock.advance(2.5)``; call it to read the time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards: real monotonic clocks cannot)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds}))")
        self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"
