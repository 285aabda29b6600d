"""Sessions whose connection dropped without ``session.close``, kept resumable for a window.

While parked, the session finalizes what it had accepted and keeps its finals in its history; a client
that reconnects with a resume token and the last ``seq`` it saw gets the later ones replayed. A session
nobody resumes is released when its window ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from streamer.services import Services
from streamer.session.runtime import StreamSession

log = logging.getLogger(__name__)


@dataclass
class Parked:
    session: StreamSession
    expiry: asyncio.TimerHandle


async def park(services: Services, session: StreamSession) -> None:
    """Keep ``session`` resumable for ``resume_window_s``; release it afterwards."""
    window = services.settings.resume_window_s
    loop = asyncio.get_running_loop()
    handle = loop.call_later(window, _expire_soon, services, session.session_id)
    services.parked[session.session_id] = Parked(session, handle)
    log.info("session parked for %.0fs", window, extra={"session_id": session.session_id})
    await services.backend_call(
        lambda: services.backend.refresh_session(session.key_id, session.session_id, window + 30), None
    )


def _expire_soon(services: Services, session_id: str) -> None:
    task = asyncio.get_running_loop().create_task(expire(services, session_id))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def unpark(services: Services, session_id: str) -> StreamSession | None:
    parked = services.parked.pop(session_id, None)
    if parked is None:
        return None
    parked.expiry.cancel()
    return parked.session


async def expire(services: Services, session_id: str) -> None:
    session = unpark(services, session_id)
    if session is None:
        return
    log.info("resume window over; releasing session", extra={"session_id": session_id})
    await release(services, session)


async def release(services: Services, session: StreamSession) -> None:
    """End a session for good: stop its work and give back its key's concurrent-session slot."""
    await session.abort()
    with contextlib.suppress(Exception):
        await services.backend.release_session(session.key_id, session.session_id)


async def release_all(services: Services) -> None:
    for session_id in list(services.parked):
        await expire(services, session_id)
