"""REST routes: start a session, list models, demo tokens."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from streamer.edge.clients import client_address, networks, rate_key
from streamer.edge.handshake import (
    REGISTRY,
    SERVICES,
    bearer,
    check_origin,
    error_response,
    session_limits,
)
from streamer.errors import AuthError, ForbiddenError, OverloadedError, SessionNotFoundError
from streamer.guards.keys import DEMO_KEY_ID
from streamer.protocol import SessionConfig, TranscriptFinal
from streamer.services import Services
from streamer.session.registry import ConcurrentSessionsError
from streamer.session.validation import check_session_config, parse_session_config
from streamer.state.backend import BackendUnavailableError, QuotaDecision

log = logging.getLogger(__name__)


async def _config_from(request: web.Request) -> SessionConfig:
    if not request.can_read_body:
        return SessionConfig()
    return parse_session_config(await request.read())


def _quota_headers(quota: QuotaDecision) -> dict[str, str]:
    if quota.limit is None:
        return {}
    return {
        "X-RateLimit-Limit": str(quota.limit),
        "X-RateLimit-Remaining": str(max(0, quota.remaining or 0)),
        "X-RateLimit-Reset": str(int(quota.reset_s)),
    }


async def _start_session(
    request: web.Request, key_id: str, max_sessions: int | None, config: SessionConfig | None = None
) -> web.Response:
    registry = request.app[REGISTRY]
    services = registry.services
    if config is None:
        config = await _config_from(request)
        check_session_config(services, config)
    session_id = services.tokens.new_session_id()
    try:
        quota = await registry.reserve(key_id, max_sessions, session_id)
    except ConcurrentSessionsError as e:
        return error_response(e, _quota_headers(e.quota))
    headers = _quota_headers(quota)
    token, grant = services.tokens.issue(session_id, key_id, config)
    body = _grant_body(request, session_id, key_id, config, token, grant.expires_at)
    return web.json_response(body, status=201, headers=headers)


def _grant_body(
    request: web.Request, session_id: str, key_id: str, config: SessionConfig, token: str, expires_at: float
) -> dict[str, Any]:
    """What a new session's grant and a resume's both answer (docs/protocol.md)."""
    settings = request.app[SERVICES].settings
    return {
        "session_id": session_id,
        "token": token,
        "expires_at": expires_at,
        "ws_url": _ws_url(request),
        "config": config.model_dump(),
        "limits": session_limits(settings, config.sample_rate, key_id, config.encoding).model_dump(),
    }


def _ws_url(request: web.Request) -> str:
    public = request.app[SERVICES].settings.public_url
    if public:
        return public.rstrip("/").replace("http", "ws", 1) + "/v1/stream"
    return "/v1/stream"


async def create_session(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    key = await registry.services.state.authenticate(bearer(request))
    if key is None:
        raise AuthError("unknown API key")
    registry.check_session_rate(key.key_id)
    return await _start_session(request, key.key_id, key.session_limit)


async def resume_session(request: web.Request) -> web.Response:
    """A fresh single-use token for a session whose connection dropped (same key only)."""
    registry = request.app[REGISTRY]
    services = registry.services
    key = await services.state.authenticate(bearer(request))
    if key is None:
        raise AuthError("unknown API key")
    session_id = request.match_info["session_id"]
    registry.check_resume_rate(key.key_id)  # 429: each resume re-opens the pacing for lost audio
    # admitted like a start (503 while full or draining)
    registry.check_capacity(resuming=session_id, key_id=key.key_id)
    if registry.durable is not None:
        # the shared state answers, whichever instance holds the session (or held it and died)
        try:
            state = await registry.durable.load(session_id, key.key_id)
        except BackendUnavailableError as e:
            raise OverloadedError("sessions cannot be resumed now; try again shortly", retry_after=2.0) from e
        if state is None:
            raise SessionNotFoundError("no resumable session with this id")
        config, last_seq, transcribed_until_ms = state.config, state.seq, state.transcribed_until_ms
    else:
        session = registry.find(session_id)
        if session is None or session.key_id != key.key_id:
            raise SessionNotFoundError("no resumable session with this id on this server")
        config, last_seq = session.config, session.seq
        ends = [m.audio_end_ms for m in session.history if isinstance(m, TranscriptFinal)]
        transcribed_until_ms = ends[-1] if ends else 0
    token, grant = services.tokens.issue(session_id, key.key_id, config, resume=True)
    body = {
        **_grant_body(request, session_id, key.key_id, config, token, grant.expires_at),
        "last_seq": last_seq,
        # audio before this point is transcribed (or was not speech); a client re-sends what follows it
        "transcribed_until_ms": transcribed_until_ms,
    }
    return web.json_response(body, status=201)


async def demo_session(request: web.Request) -> web.Response:
    """Mint a keyless session for the demo page, when ``STREAMER_DEMO=true``.

    The Origin checks keep other sites' pages from using their visitors' browsers; they are not
    authentication (any client can send those headers). What protects everyone else is that demo
    sessions have caps of their own: ``demo_max_sessions`` at once and ``demo_audio_s_per_day`` for all
    visitors together, a shorter duration and idle timeout, and ``demo_sessions_per_min`` per client
    address (behind a trusted proxy only, its forwarded address).
    """
    services = request.app[SERVICES]
    settings = services.settings
    if not settings.demo_enabled:
        raise ForbiddenError("demo mode is off on this server")
    origin = request.headers.get("Origin")
    if origin in (None, "null"):
        # no usable Origin (strict referrer policies send "null"): only a same-origin fetch qualifies
        if request.headers.get("Sec-Fetch-Site") != "same-origin":
            raise ForbiddenError("demo sessions are for the demo page only")
    else:
        check_origin(request)
    config = await _config_from(request)
    check_session_config(services, config)
    address = client_address(request, networks(settings.trusted_proxies))
    request.app[REGISTRY].check_demo_rate(rate_key(address))
    return await _start_session(request, DEMO_KEY_ID, settings.demo_max_sessions, config)


def describe_models(services: Services) -> dict[str, Any]:
    """What the loaded models support, in protocol v1's terms: ``GET /v1/stream/models``."""
    asr = services.asr
    return {
        "asr": {
            "name": asr.name,
            "multilingual": asr.multilingual,
            "languages": sorted(asr.languages()),
            "tasks": ["transcribe", "translate"] if asr.multilingual else ["transcribe"],
        },
        "mt": services.translator.describe() if services.translator is not None else None,
    }


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/stream/models``: the loaded models (``GET /v1/models`` is OpenAI's list)."""
    return web.json_response(describe_models(request.app[SERVICES]))
