"""Time sources. Every guard takes a ``Clock`` so tests drive time instead of sleeping (their
``FakeClock`` lives with the test doubles)."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

__all__ = ["Clock", "monotonic"]

Clock = Callable[[], float]
"""A zero-argument callable returning seconds as a float (``time.monotonic`` or ``time.time``)."""
