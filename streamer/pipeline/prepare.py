"""Work done on a job once, when it is submitted, so the model threads never wait for it.

The ASR engine's log-Mel features are computed here (``WhisperEngine.prepare``), on a thread of their own:
on the model thread they took 13-26 % of its time while CTranslate2's threads waited (BENCHMARKS.md).
A partial may be overtaken while it is prepared (its session sends a newer one, or its utterance ends):
then it is never queued, as if it had been coalesced in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")


class Preparer(Generic[P]):
    """Runs ``prepare`` on its own thread (event-loop side API; ``close`` stops the thread)."""

    def __init__(self, name: str, prepare: Callable[[P], P]) -> None:
        self.name = name
        self._prepare = prepare
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"features-{name}")
        self._seq = 0
        self._latest: dict[str, int] = {}  # session -> its newest partial still being prepared
        self._tasks: set[asyncio.Task[P]] = set()  # held: the loop keeps only weak references to tasks

    async def prepared(self, payload: P) -> P:
        """``payload`` prepared; as it was if that failed (the model thread then does the work)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._prepare, payload)
        except Exception:
            log.exception("%s: preparing a job failed; the model thread prepares it", self.name)
            return payload

    def partial(self, session_id: str, payload: P, then: Callable[[P | None], None]) -> None:
        """Prepare a session's partial, then call ``then`` with it on the loop, or with None when a newer
        partial of the session or :meth:`forget` overtook it meanwhile."""
        self._seq += 1
        seq = self._latest[session_id] = self._seq

        def done(task: asyncio.Task[P]) -> None:
            self._tasks.discard(task)
            if task.cancelled() or self._latest.get(session_id) != seq:
                then(None)
                return
            del self._latest[session_id]
            then(task.result())

        task = asyncio.create_task(self.prepared(payload))
        self._tasks.add(task)
        task.add_done_callback(done)

    def forget(self, session_id: str) -> None:
        """The session's utterance ended or it left: a partial still being prepared is not queued."""
        self._latest.pop(session_id, None)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
