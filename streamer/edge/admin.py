"""``/v1/admin/*``: API keys and circuit breakers, for the operator holding ``STREAMER_ADMIN_KEY``.

Every route checks ``Authorization: Bearer <admin key>`` before reading anything else. Without a configured
admin key the whole API answers 404 ``admin_disabled``. A created key's secret is in the 201 answer only;
the backend stores its hash, and nothing here ever returns a hash or a secret again.

- ``POST /v1/admin/keys`` ``{name, tier?, max_sessions?, audio_seconds_per_day?}`` -> 201 key (+ ``key``)
- ``GET /v1/admin/keys`` -> ``{"keys": [key, ...]}``; ``GET /v1/admin/keys/{key_id}`` -> key + ``usage``
- ``DELETE /v1/admin/keys/{key_id}`` -> 204 (404 ``key_not_found``)
- ``GET /v1/admin/breakers`` -> ``{"breakers": [breaker, ...]}``
- ``POST /v1/admin/breakers/{name}/reset`` -> 200 breaker (404 ``breaker_not_found``)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamer.edge.handshake import SERVICES, Handler, Listener, bearer, listener_of
from streamer.errors import AuthError, BadRequestError, OverloadedError, StreamerError
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import DEFAULT_TIER, TIERS, KeyRecord, issue_key
from streamer.services import Services
from streamer.session.validation import parse_model
from streamer.state.backend import BackendUnavailableError

log = logging.getLogger(__name__)

PREFIX = "/v1/admin"
T = TypeVar("T")


class InvalidRequestError(BadRequestError):
    code = "invalid_request"


class AdminDisabledError(StreamerError):
    code = "admin_disabled"
    status = 404


class KeyNotFoundError(StreamerError):
    code = "key_not_found"
    status = 404


class BreakerNotFoundError(StreamerError):
    code = "breaker_not_found"
    status = 404


class NewKey(BaseModel):
    """The body of ``POST /v1/admin/keys``. Limits left out (or null) come from the tier."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(min_length=1, max_length=100)
    tier: str = DEFAULT_TIER
    max_sessions: int | None = Field(default=None, ge=0, le=1_000_000)
    audio_seconds_per_day: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False)

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.strip() or not v.isprintable():
            raise ValueError("must be printable text")
        return v.strip()

    @field_validator("tier")
    @classmethod
    def _known_tier(cls, v: str) -> str:
        if v not in TIERS:
            raise ValueError(f"unknown tier; known: {', '.join(TIERS)}")
        return v


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _on_admin_listener(request: web.Request, admin_port: int | None) -> bool:
    """With ``STREAMER_ADMIN_PORT`` set, the admin API answers only on that listener (which can be bound
    to a private interface), never on the public one, whatever port the public one has."""
    return admin_port is None or listener_of(request) is Listener.ADMIN


def _authorize(request: web.Request) -> Services:
    services = request.app[SERVICES]
    admin_key = services.settings.admin_key
    if not admin_key:
        raise AdminDisabledError("the admin API is off on this server (STREAMER_ADMIN_KEY is not set)")
    if not _on_admin_listener(request, services.settings.admin_port):
        raise AdminDisabledError("the admin API is not served on this listener")
    # hashes first: compare_digest on equal-length inputs does not leak the key's length either
    if not hmac.compare_digest(_digest(bearer(request)), _digest(admin_key)):
        raise AuthError("invalid admin key")
    return services


def _admin(handler: Callable[[web.Request, Services], Awaitable[web.Response]]) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        return await handler(request, _authorize(request))

    return guarded


async def _store(call: Callable[[], Awaitable[T]]) -> T:
    """Key-store calls have no fail-open answer: while the backend is down they are refused (503)."""
    try:
        return await call()
    except BackendUnavailableError as e:
        raise OverloadedError("the key store is unavailable; try again shortly", retry_after=2.0) from e


def key_view(rec: KeyRecord) -> dict[str, Any]:
    """A key as the admin API shows it: overrides as given (null = tier default) and the limits in force."""
    return {
        "key_id": rec.key_id,
        "name": rec.name,
        "tier": rec.tier,
        "created_at": rec.created_at,
        "revoked": rec.revoked,
        "max_sessions": rec.max_sessions,
        "audio_seconds_per_day": rec.audio_seconds_per_day,
        "limits": {"max_sessions": rec.session_limit, "audio_seconds_per_day": rec.audio_limit_s},
    }


def breaker_view(breaker: CircuitBreaker) -> dict[str, Any]:
    return {
        "name": breaker.name,
        "state": breaker.state.value,
        "failures": breaker.failures,
        "failure_threshold": breaker.failure_threshold,
        "reset_timeout_s": breaker.reset_timeout_s,
        "retry_after_s": round(breaker.retry_after(), 3),
    }


async def _new_key(request: web.Request) -> NewKey:
    raw = await request.read()
    return parse_model(NewKey, raw or b"{}", "key request", InvalidRequestError)


@_admin
async def create_key(request: web.Request, services: Services) -> web.Response:
    body = await _new_key(request)
    full_key, record = issue_key(
        body.name,
        body.tier,
        max_sessions=body.max_sessions,
        audio_seconds_per_day=body.audio_seconds_per_day,
    )
    await _store(lambda: services.backend.put_key(record))
    log.info("admin: created key %s (tier %s)", record.key_id, record.tier)
    headers = {"Cache-Control": "no-store", "Location": f"{PREFIX}/keys/{record.key_id}"}
    return web.json_response({"key": full_key, **key_view(record)}, status=201, headers=headers)


@_admin
async def list_keys(request: web.Request, services: Services) -> web.Response:
    records = await _store(services.backend.list_keys)
    return web.json_response({"keys": [key_view(r) for r in records]})


async def _record(services: Services, key_id: str) -> KeyRecord:
    record = await _store(lambda: services.backend.get_key(key_id))
    if record is None:
        raise KeyNotFoundError("no key with this id")
    return record


@_admin
async def get_key(request: web.Request, services: Services) -> web.Response:
    key_id = request.match_info["key_id"]
    record = await _record(services, key_id)
    usage = {
        "active_sessions": await _store(lambda: services.backend.active_sessions(key_id)),
        "audio_seconds_today": await _store(lambda: services.backend.audio_used(key_id)),
    }
    return web.json_response({**key_view(record), "usage": usage})


@_admin
async def revoke_key(request: web.Request, services: Services) -> web.Response:
    """Revoked keys are refused from now on (401); sessions already running go on to their end."""
    key_id = request.match_info["key_id"]
    if not await _store(lambda: services.backend.revoke_key(key_id)):
        raise KeyNotFoundError("no key with this id")
    log.info("admin: revoked key %s", key_id)
    return web.Response(status=204)


@_admin
async def list_breakers(request: web.Request, services: Services) -> web.Response:
    breakers = [breaker_view(services.breakers[name]) for name in sorted(services.breakers)]
    return web.json_response({"breakers": breakers})


@_admin
async def reset_breaker(request: web.Request, services: Services) -> web.Response:
    name = request.match_info["name"]
    breaker = services.breakers.get(name)
    if breaker is None:
        raise BreakerNotFoundError(f"no such breaker; known: {', '.join(sorted(services.breakers))}")
    breaker.reset()
    log.warning("admin: breaker %s reset by the operator", name)
    return web.json_response(breaker_view(breaker))


def setup_admin(app: web.Application) -> None:
    """Register the admin routes (no CORS: the admin API is not for browsers)."""
    app.router.add_post(f"{PREFIX}/keys", create_key)
    app.router.add_get(f"{PREFIX}/keys", list_keys)
    app.router.add_get(f"{PREFIX}/keys/{{key_id}}", get_key)
    app.router.add_delete(f"{PREFIX}/keys/{{key_id}}", revoke_key)
    app.router.add_get(f"{PREFIX}/breakers", list_breakers)
    app.router.add_post(f"{PREFIX}/breakers/{{name}}/reset", reset_breaker)
