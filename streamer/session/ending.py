"""How a connection ends (:class:`Ending`), and which connections are ending now (:class:`Endings`).

A connection's end is one sequence of bounded steps (``SessionRun._end``): stop reading, commit,
drain the finals, the last messages, close, detach. :func:`end_bound_s` adds up those bounds; a connection
still ending past it is *stuck* (a bug, or a library that swallowed a cancel), and holds a session counted
by admission and its key's concurrent slot, so readiness (``/readyz``) says so while any is.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from streamer.config import Settings
from streamer.errors import StreamerError
from streamer.protocol import CloseCode

# beyond its own bounded steps, what a connection's end may take before it counts as stuck
END_SLACK_S = 5.0


def end_bound_s(settings: Settings) -> float:
    """How long a connection's end may take: stop reading and drain (each ``drain_timeout_s``), the last
    messages and the close (each ``send_timeout_s``), and some slack."""
    return 2 * settings.drain_timeout_s + 2 * settings.send_timeout_s + END_SLACK_S


@dataclass(frozen=True)
class Ending:
    """How a connection ends: what ``session.closed`` and the close frame say, and which steps apply."""

    reason: str
    code: int
    error: StreamerError | None = None
    finalize: bool = True  # commit and drain the finals first (not after the model failed, or the peer left)
    farewell: bool = True  # send the error and ``session.closed`` (not to a peer that is gone)
    ended: bool = True  # the session is over; False: it may be resumed (parked, when the surface resumes)
    close_text: str | None = None  # the close frame's reason, instead of the surface's ``close_message``

    @classmethod
    def dropped(cls, reason: str, close_text: str | None = None) -> Ending:
        """The client is gone or is being let go: no farewell, nothing finalized here; the session may
        be resumed (the registry parks it and finalizes its open utterance)."""
        return cls(reason, CloseCode.GOING_AWAY, None, False, False, False, close_text)


# A session carried for another (an upload's channel, a stream's further channel) that its carrier lets go
# of with nothing more to deliver: the upload stopped, or the handler left before its end's steps.
STOPPED = Ending("stopped", CloseCode.GOING_AWAY, finalize=False, farewell=False)


class Endings:
    """The connections whose end has begun, since when; the stuck ones are those past ``bound_s``."""

    def __init__(self, bound_s: float, clock: Callable[[], float]) -> None:
        self.bound_s = bound_s
        self._clock = clock
        self._since: dict[Hashable, float] = {}

    def begin(self, connection: Hashable) -> None:
        self._since.setdefault(connection, self._clock())

    def done(self, connection: Hashable) -> None:
        self._since.pop(connection, None)

    def stuck(self) -> int:
        """How many connections have been ending for longer than their end's steps allow."""
        limit = self._clock() - self.bound_s
        return sum(1 for since in self._since.values() if since < limit)

    def __len__(self) -> int:
        return len(self._since)
