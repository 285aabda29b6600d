"""Progress for long command-line work (``streamer stream``, ``streamer bench``): one status line redrawn
in place on a terminal, and nothing at all when the output is not a terminal or is JSON."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

CLEAR = "\r\x1b[2K"


def bar(done: float, total: float, width: int = 20) -> str:
    """``[#######-------------]  35%``"""
    share = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
    filled = round(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share:4.0%}"


class StatusLine:
    """A line at the bottom of a terminal that other output scrolls above.

    ``enabled=False`` (not a terminal, ``--json``) makes :meth:`set` and :meth:`close` silent while
    :meth:`print` still prints. Redraws are throttled to ``min_interval_s`` unless forced.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        enabled: bool,
        width: int = 80,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self.enabled = enabled
        self._width = width
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._text = ""
        self._drawn_at = float("-inf")
        self._shown = False

    @classmethod
    def for_terminal(cls, out: TextIO, *, quiet: bool = False) -> StatusLine:
        """On when ``out`` is a terminal and not ``quiet`` (``--json``); as wide as the terminal."""
        return cls(out, enabled=not quiet and out.isatty(), width=shutil.get_terminal_size().columns)

    def set(self, text: str, *, force: bool = False) -> None:
        self._text = text
        if not self.enabled:
            return
        now = self._clock()
        if force or now - self._drawn_at >= self._min_interval_s:
            self._draw(now)

    def print(self, line: str) -> None:
        """Print ``line`` above the status line (the line is redrawn under it)."""
        if self._shown:
            self._out.write(CLEAR)
            self._shown = False
        self._out.write(line + "\n")
        if self.enabled and self._text:
            self._draw(self._clock())
        self._out.flush()

    def close(self) -> None:
        if self._shown:
            self._out.write(CLEAR)
            self._out.flush()
            self._shown = False

    def _draw(self, now: float) -> None:
        # one character short of the width: a line that wraps could not be cleared with one \r
        self._out.write(CLEAR + self._text[: max(1, self._width - 1)])
        self._out.flush()
        self._drawn_at = now
        self._shown = True
