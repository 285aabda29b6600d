"""Retry with capped exponential backoff and full jitter (AWS Architecture Blog, "Exponential Backoff
and Jitter"): attempt ``i`` waits ``uniform(0, min(max_s, base_s * 2**i))``, which spreads a crowd of
retrying clients out instead of having them hammer a recovering dependency in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

__all__ = ["backoff_delays", "retry_async"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delays(
    attempts: int, base_s: float, max_s: float, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """The ``attempts - 1`` waits between ``attempts`` tries; ``rng`` returns a float in [0, 1)."""
    for i in range(attempts - 1):
        # min() before the power would overflow: 2**1100 is fine as an int, not as a float.
        cap = max_s if i >= 64 else min(max_s, base_s * 2**i)
        yield rng() * cap


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    attempts: int = 3,
    base_s: float = 0.1,
    max_s: float = 2.0,
    rng: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> T:
    """Await ``fn()`` up to ``attempts`` times, sleeping a full-jitter backoff between failures.

    Only exceptions in ``retry_on`` are retried; the last one is re-raised. ``sleep`` and ``rng`` are
    injectable so tests neither wait nor depend on chance.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    if base_s < 0 or max_s < 0:
        raise ValueError("backoff times must not be negative")
    delays = backoff_delays(attempts, base_s, max_s, rng)
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except retry_on as e:
            if attempt == attempts:
                raise
            delay = next(delays)
            log.debug("attempt %d/%d failed (%s); retrying in %.3fs", attempt, attempts, e, delay)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
