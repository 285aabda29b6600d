"""The listeners in front of the app, and the connection guards aiohttp itself lacks.

aiohttp closes idle keep-alive connections, but a client that sends its request head or body a byte at a
time holds a connection (and, for a body, a handler) for as long as it likes, and one address may open
as many connections as the process has file descriptors. :class:`EdgeRequestHandler` (aiohttp's own
request handler, one per connection) adds what is missing:

- a deadline for every request head (``header_timeout_s``, from the connection's start or the head's
  first byte) and body (``body_timeout_s``); WebSocket traffic after an upgrade is not timed here;
- at most ``max_connections_per_address`` connections per peer address (trusted proxies are exempt:
  behind one, limit per client at the proxy);
- malformed requests answered with the JSON error shape and the security headers, without echoing the
  input, and logged as one line without a traceback, at most one line per ``LOG_EVERY_S``.

:func:`serve` runs the app on its listener (and the admin API's, when ``admin_port`` is set) until
SIGINT/SIGTERM, then shuts down like ``aiohttp.web.run_app``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import signal
import time
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from streamer.config import Settings
from streamer.edge.clients import Network, canonical, networks, trusted
from streamer.edge.handshake import SECURITY_HEADERS, SERVER_NAME, Listener
from streamer.protocol import error_body

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT_S = 15.0  # between requests on one connection (aiohttp's default is 75 s)
LOG_EVERY_S = 10.0
MAX_HEAD_BYTES = 64 << 10  # aiohttp refuses far smaller heads itself; past this we stop looking
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
_UPGRADE = re.compile(rb"\r\nupgrade:", re.IGNORECASE)
_LAST_CHUNK = b"\r\n0\r\n\r\n"


class Phase(enum.Enum):
    HEAD = "head"  # waiting for (the rest of) a request head
    BODY = "body"  # a Content-Length body is arriving
    CHUNKED = "chunked"  # a chunked body is arriving
    IDLE = "idle"  # between requests (aiohttp's keep-alive timeout applies)
    UPGRADED = "upgraded"  # a WebSocket: no longer HTTP


class RequestWatch:
    """Follows the bytes a client sends just enough to know whether a head or a body is in progress.

    Pure (no I/O, no clock): :meth:`feed` the received bytes and read :attr:`phase`.
    """

    def __init__(self) -> None:
        self.phase = Phase.HEAD
        self._head = bytearray()
        self._left = 0
        self._tail = b""

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.phase is not Phase.UPGRADED:
            if self.phase is Phase.IDLE:
                self.phase = Phase.HEAD
            if self.phase is Phase.HEAD:
                view = self._feed_head(view)
            elif self.phase is Phase.BODY:
                n = min(self._left, len(view))
                self._left -= n
                view = view[n:]
                if self._left == 0:
                    self.phase = Phase.IDLE
            else:
                view = self._feed_chunked(view)

    def _feed_head(self, view: memoryview) -> memoryview:
        seen = len(self._head)
        room = max(0, MAX_HEAD_BYTES - seen)
        self._head += view[:room]
        end = self._head.find(b"\r\n\r\n", max(0, seen - 3))
        if end < 0:
            return view[len(view) :]
        used = end + 4 - seen  # bytes of ``view`` that belong to this head
        head = bytes(self._head[: end + 4])
        self._head.clear()
        if _UPGRADE.search(head):
            self.phase = Phase.UPGRADED
        elif _CHUNKED.search(head):
            self.phase, self._tail = Phase.CHUNKED, b"\r\n"
        elif (length := _CONTENT_LENGTH.search(head)) is not None and int(length.group(1)) > 0:
            self.phase, self._left = Phase.BODY, int(length.group(1))
        else:
            self.phase = Phase.IDLE
        return view[used:]

    def _feed_chunked(self, view: memoryview) -> memoryview:
        joined = self._tail + bytes(view)
        end = joined.find(_LAST_CHUNK)
        if end < 0:
            self._tail = joined[-(len(_LAST_CHUNK) - 1) :]
            return view[len(view) :]
        self.phase = Phase.IDLE
        return view[end + len(_LAST_CHUNK) - len(self._tail) :]


class _OncePer:
    """Lets a log line through at most once per ``period_s``; counts what it held back."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last = -period_s
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.period_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class ConnectionGuard:
    """What every connection of one listener shares: the per-address counts and the log throttles. Each
    listener has its own, so connections held open on the public one never use up the admin one's."""

    def __init__(
        self,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        max_per_address: int,
        trusted_proxies: tuple[Network, ...] = (),
        listener: Listener = Listener.PUBLIC,
    ) -> None:
        self.listener = listener
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_per_address = max_per_address
        self.trusted_proxies = trusted_proxies
        self.open: Counter[str] = Counter()
        self.malformed_log = _OncePer(LOG_EVERY_S)
        self.slow_log = _OncePer(LOG_EVERY_S)
        self.refused_log = _OncePer(LOG_EVERY_S)

    @classmethod
    def from_settings(cls, s: Settings, listener: Listener = Listener.PUBLIC) -> ConnectionGuard:
        return cls(
            header_timeout_s=s.header_timeout_s,
            body_timeout_s=s.body_timeout_s,
            max_per_address=s.max_connections_per_address,
            trusted_proxies=networks(s.trusted_proxies),
            listener=listener,
        )

    def admit(self, address: str) -> bool:
        limit = self.max_per_address
        if limit > 0 and self.open[address] >= limit and not trusted(address, self.trusted_proxies):
            if self.refused_log.allow():
                log.warning(
                    "refusing connections from %s: %d open (limit %d; %d more refused since the last line)",
                    address,
                    self.open[address],
                    limit,
                    self.refused_log.take_suppressed(),
                )
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class EdgeRequestHandler(web.RequestHandler):
    """aiohttp's per-connection request handler with head/body deadlines, a per-address connection
    limit, and quiet, contract-shaped answers to malformed requests."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self.listener = guard.listener  # read by the app (``edge.listener_of``): which listener this is
        self._watch = RequestWatch()
        self._timer: asyncio.TimerHandle | None = None
        self._timed_phase: Phase | None = None
        self._address: str | None = None  # set once admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = canonical(str(peer[0])) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(address):
            transport.close()
            return
        self._address = address
        super().connection_made(transport)
        self._retime()

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return
        self._watch.feed(data)
        self._retime()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._address is None:
            return
        self._guard.release(self._address)
        self._address = None
        self._cancel_timer()
        super().connection_lost(exc)

    def _retime(self) -> None:
        """A deadline per head and per body, kept while that head or body is still arriving."""
        phase = self._watch.phase
        if phase is self._timed_phase:
            return
        self._cancel_timer()
        self._timed_phase = phase
        limit = {Phase.HEAD: self._guard.header_timeout_s}.get(phase)
        if phase in (Phase.BODY, Phase.CHUNKED):
            limit = self._guard.body_timeout_s
        if limit is not None:
            self._timer = asyncio.get_running_loop().call_later(limit, self._too_slow, phase)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self, phase: Phase) -> None:
        guard = self._guard
        if guard.slow_log.allow():
            log.warning(
                "closing a connection from %s: request %s not received in time (%d more since the last line)",
                self._address,
                phase.value,
                guard.slow_log.take_suppressed(),
            )
        if self.transport is not None:
            self.transport.abort()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or a failure outside the app's middleware):
        one log line, no traceback, nothing of the input echoed back."""
        if status >= 500:
            log.error("error handling a request from %s: %s", request.remote, type(exc).__name__)
        elif self._guard.malformed_log.allow():
            log.warning(
                "malformed HTTP request from %s: %s (%d more since the last line)",
                request.remote,
                type(exc).__name__,
                self._guard.malformed_log.take_suppressed(),
            )
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; the connection is broken")
        code, text = ("bad_request", "malformed HTTP request")
        if status >= 500:
            code, text = "internal_error", "internal server error"
        headers = {**SECURITY_HEADERS, "Server": SERVER_NAME}
        response = web.json_response(error_body(code, text), status=status, headers=headers)
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCP listener whose connections are served by :class:`EdgeRequestHandler`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def handler() -> EdgeRequestHandler:
            return EdgeRequestHandler(
                server, guard=self._guard, loop=loop, keepalive_timeout=KEEPALIVE_TIMEOUT_S, access_log=None
            )

        self._server = self._listening = await loop.create_server(handler, self._host, self._port)

    @property
    def bound_port(self) -> int:
        port: int = self._listening.sockets[0].getsockname()[1]
        return port


async def start(app: web.Application, settings: Settings) -> tuple[web.AppRunner, list[GuardedSite]]:
    """Start the app on its listener, and the admin API's when ``admin_port`` is set."""
    runner = web.AppRunner(app, shutdown_timeout=settings.drain_timeout_s + 5, access_log=None)
    await runner.setup()
    sites = [GuardedSite(runner, settings.host, settings.port, ConnectionGuard.from_settings(settings))]
    if settings.admin_port is not None:
        admin = ConnectionGuard.from_settings(settings, Listener.ADMIN)
        sites.append(GuardedSite(runner, settings.admin_host, settings.admin_port, admin))
    try:
        for site in sites:
            await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, sites


def serve(app: web.Application, settings: Settings) -> None:
    """Run until SIGINT or SIGTERM; then drain (the app's on_shutdown) and clean up."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner, sites = await start(app, settings)
        try:
            print(f"streamer listening on http://{settings.host}:{sites[0].bound_port}", flush=True)
            if len(sites) > 1:
                print(f"admin API on http://{settings.admin_host}:{sites[1].bound_port}", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
