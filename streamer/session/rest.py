"""REST routes: start a session, list models, demo tokens."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from streamer.errors import AuthError, ConfigError, ForbiddenError, RateLimitedError, SessionNotFoundError
from streamer.guards.backend import QuotaDecision
from streamer.protocol import SessionConfig
from streamer.services import Services
from streamer.session.edge import (
    SERVICES,
    bearer,
    check_origin,
    check_translation_targets,
    error_response,
    session_limits,
)

log = logging.getLogger(__name__)

DEMO_KEY_ID = "demo"


async def _config_from(request: web.Request) -> SessionConfig:
    if not request.can_read_body:
        return SessionConfig()
    raw = await request.read()
    if not raw.strip():
        return SessionConfig()
    try:
        return SessionConfig.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ConfigError(f"invalid session config: {where}: {first.get('msg')}") from e


def _validate_config(services: Services, config: SessionConfig) -> None:
    asr = services.asr
    if config.language is not None and config.language not in asr.languages():
        raise ConfigError(f"language {config.language!r} is not supported by the ASR model {asr.name}")
    if config.task == "translate" and not asr.multilingual:
        raise ConfigError(f"task 'translate' needs a multilingual ASR model; {asr.name} is English-only")
    check_translation_targets(services, config.language, config.translate_to)


async def _start_session(request: web.Request, key_id: str, max_sessions: int | None) -> web.Response:
    services = request.app[SERVICES]
    config = await _config_from(request)
    _validate_config(services, config)
    services.check_capacity()
    session_id = services.tokens.new_session_id()
    open_quota = QuotaDecision(allowed=True, limit=None, remaining=None, reset_s=0.0)
    quota = await services.backend_call(
        lambda: services.backend.acquire_session(
            key_id, session_id, max_sessions, services.tokens.ttl_s + 30
        ),
        open_quota,
    )
    headers = {}
    if quota.limit is not None:
        headers = {
            "X-RateLimit-Limit": str(quota.limit),
            "X-RateLimit-Remaining": str(max(0, quota.remaining or 0)),
            "X-RateLimit-Reset": str(int(quota.reset_s)),
        }
    if not quota.allowed:
        err = RateLimitedError(
            f"this key already has {quota.limit} concurrent sessions",
            code="concurrent_sessions_exceeded",
            retry_after=max(1.0, quota.reset_s),
        )
        return error_response(err, headers)
    token, grant = services.tokens.issue(session_id, key_id, config)
    body: dict[str, Any] = {
        "session_id": session_id,
        "token": token,
        "expires_at": grant.expires_at,
        "ws_url": _ws_url(request),
        "config": config.model_dump(),
        "limits": session_limits(services.settings, config.sample_rate).model_dump(),
    }
    return web.json_response(body, status=201, headers=headers)


def _ws_url(request: web.Request) -> str:
    public = request.app[SERVICES].settings.public_url
    if public:
        return public.rstrip("/").replace("http", "ws", 1) + "/v1/stream"
    return "/v1/stream"


async def create_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    key = await services.authenticate(bearer(request))
    if key is None:
        raise AuthError("unknown API key")
    services.check_session_rate(key.key_id)
    return await _start_session(request, key.key_id, key.session_limit)


async def resume_session(request: web.Request) -> web.Response:
    """A fresh single-use token for a session whose connection dropped (same key only)."""
    services = request.app[SERVICES]
    key = await services.authenticate(bearer(request))
    if key is None:
        raise AuthError("unknown API key")
    session_id = request.match_info["session_id"]
    session = services.sessions.get(session_id)
    if session is None and session_id in services.parked:
        session = services.parked[session_id].session
    if session is None or session.key_id != key.key_id:
        raise SessionNotFoundError("no resumable session with this id on this server")
    token, grant = services.tokens.issue(session_id, key.key_id, session.config, resume=True)
    body: dict[str, Any] = {
        "session_id": session_id,
        "token": token,
        "expires_at": grant.expires_at,
        "ws_url": _ws_url(request),
        "config": session.config.model_dump(),
        "limits": session_limits(services.settings, session.config.sample_rate).model_dump(),
        "last_seq": session.seq,
    }
    return web.json_response(body, status=201)


async def demo_session(request: web.Request) -> web.Response:
    """Mint a session for the demo page: same-origin only, only when demo mode is on."""
    services = request.app[SERVICES]
    if not services.settings.demo_enabled:
        raise ForbiddenError("demo mode is off on this server")
    origin = request.headers.get("Origin")
    if origin in (None, "null"):
        # no usable Origin (strict referrer policies send "null"): only a same-origin fetch qualifies
        if request.headers.get("Sec-Fetch-Site") != "same-origin":
            raise ForbiddenError("demo sessions are for the demo page only")
    else:
        check_origin(request)
    if not services.demo_bucket.try_take():
        raise RateLimitedError(
            "too many demo sessions; try again shortly",
            code="demo_rate_limited",
            retry_after=services.demo_bucket.retry_after(),
        )
    return await _start_session(request, DEMO_KEY_ID, services.settings.max_sessions)


async def list_models(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    asr = services.asr
    body: dict[str, Any] = {
        "asr": {
            "name": asr.name,
            "multilingual": asr.multilingual,
            "languages": sorted(asr.languages()),
            "tasks": ["transcribe", "translate"] if asr.multilingual else ["transcribe"],
        },
        "mt": services.translator.describe() if services.translator is not None else None,
    }
    return web.json_response(body)
