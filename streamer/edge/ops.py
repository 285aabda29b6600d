"""Operational routes: liveness, readiness, metrics, the demo page; and draining on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.edge.handshake import REGISTRY, SERVICES

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready only when models are loaded, breakers are closed, the state backend answers and no
    connection is stuck ending."""
    ok, checks = await _readiness(request.app)
    return web.json_response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
    )


async def _readiness(app: web.Application) -> tuple[bool, dict[str, str]]:
    services = app[SERVICES]
    checks: dict[str, str] = {"asr_model": "not responding" if services.asr_batcher.hung else "ok"}
    for name, breaker in services.breakers.items():
        state = breaker.state.name.lower()
        checks[f"breaker_{name}"] = "ok" if state == "closed" else state
    try:
        await asyncio.wait_for(services.backend.ping(), 1.0)
        checks["state_backend"] = "ok"
    except Exception as e:
        # the reason goes to the log, not to whoever asks /readyz
        log.debug("state backend unreachable: %s", type(e).__name__)
        checks["state_backend"] = "unreachable"
    registry = app[REGISTRY]
    if registry.draining:
        checks["draining"] = "shutting down"
    # a connection whose end overran its bounds holds a session and its key's slot: not ready
    if stuck := registry.endings.stuck():
        checks["sessions"] = f"{stuck} stuck ending"
    # half-open counts as ready: its probe needs a session's audio, which a load balancer would withhold
    return all(v in ("ok", "half_open") for v in checks.values()), checks


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    finals, partials = services.asr_batcher.depth
    services.metrics.queue_depth.labels("asr", "final").set(finals)
    services.metrics.queue_depth.labels("asr", "partial").set(partials)
    # readiness and the state backend at every scrape, so every instance reports them whatever its traffic
    ready, checks = await _readiness(request.app)
    services.metrics.ready.set(1.0 if ready else 0.0)
    backend = "redis" if services.settings.redis_url else "memory"
    services.metrics.state_backend_up.labels(backend).set(1.0 if checks["state_backend"] == "ok" else 0.0)
    body = generate_latest(services.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def index_of(page: Path) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    """The handler that serves the demo page at ``/``."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(page)

    return index


async def drain_sessions(app: web.Application) -> None:
    """On shutdown: refuse new sessions, finalize every open utterance, deliver, close with 1001."""
    registry = app[REGISTRY]
    await registry.drain(registry.services.settings.drain_timeout_s)
