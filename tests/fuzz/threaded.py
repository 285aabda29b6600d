"""A real server on its own event loop in a background thread, for clients that are not asyncio tests.

Schemathesis drives ``requests`` synchronously and the WebSocket fuzzer drives its own client loop between
Hypothesis examples; both talk to this server over TCP, as they would to a separate process, so the
server keeps running (and keeps serving other clients) while the test thread generates the next input.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from streamer.app import create_app
from streamer.config import Settings
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.services import Services
from streamer.session.registry import SessionRegistry

T = TypeVar("T")


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class ThreadedServer:
    """``create_app`` behind an ``AppRunner`` on port 0, on a loop of its own (as ``streamer serve``).

    ``loop_errors`` collects what the server's loop reports as unhandled (a task that died with an
    exception, an exception in a callback); ``error_logs`` the records of ERROR or worse that the server
    logged. A fuzzer asserts both stay empty: the server never crashed, not even one session's task.
    """

    def __init__(self, settings: Settings, **inject: Any) -> None:
        self.settings = settings
        self.inject = inject
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._on_loop_error)
        self.loop_errors: list[dict[str, Any]] = []
        self._errors = _ErrorRecords()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def error_logs(self) -> list[logging.LogRecord]:
        return self._errors.records

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        assert self._runner is not None
        return self._runner.app[SERVICES]

    @property
    def registry(self) -> SessionRegistry:
        assert self._runner is not None
        return self._runner.app[REGISTRY]

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)
        loop.default_exception_handler(context)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        # no access log, as `streamer serve` runs it (request lines would carry ?token=)
        self._runner = web.AppRunner(create_app(self.settings, **self.inject), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> None:
        logging.getLogger().addHandler(self._errors)
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        try:
            if self._runner is not None:
                self.call(self._runner.cleanup(), timeout=60.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10.0)
            self.loop.close()
            logging.getLogger().removeHandler(self._errors)
