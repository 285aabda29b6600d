"""``streamer bench`` progress: which run is going and how far through its audio, on a terminal only.

The status line goes to stderr (stdout carries the JSON rows and tables), redrawn twice a second while a
run streams; it is cleared before anything else is printed, and never drawn when stderr is not a terminal.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TextIO

from streamer.progress import StatusLine, bar
from streamer_bench.script import Script

TICK_S = 0.5


def expected_seconds(scripts: Sequence[Script], offsets: Sequence[float]) -> float:
    """How long a run's audio lasts when streamed in real time: the latest start plus the longest script."""
    longest = max((s.duration_s for s in scripts), default=0.0)
    return max(offsets, default=0.0) + longest


class RunProgress:
    """Counts the runs and shows the current one (a no-op when its status line is off)."""

    def __init__(self, status: StatusLine) -> None:
        self.status = status
        self.runs = 0

    @classmethod
    def on_terminal(cls, out: TextIO | None = None) -> RunProgress:
        return cls(StatusLine.for_terminal(out if out is not None else sys.stderr))

    @asynccontextmanager
    async def running(self, label: str, expected_s: float) -> AsyncIterator[None]:
        """Show ``label`` and the share of ``expected_s`` elapsed until the block ends."""
        self.runs += 1
        if not self.status.enabled:
            yield
            return
        began = time.monotonic()

        async def tick() -> None:
            while True:
                elapsed = time.monotonic() - began
                where = f"{bar(elapsed, expected_s)} {elapsed:5.0f}/{expected_s:.0f} s"
                if elapsed > expected_s:
                    where += " (draining)"
                # numbers first: a narrow terminal cuts the end of the line, the label
                self.status.set(f"run {self.runs} {where}  {label}", force=True)
                await asyncio.sleep(TICK_S)

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])
            self.status.close()

    def clear(self) -> None:
        """Before printing to stdout: no half-drawn status line in the way."""
        self.status.close()
