"""The one place where domain errors become HTTP answers; the app keys; auth and origin checks: which
listener a request came in on, token redemption (audience, single use, the key still valid), and the upkeep
of a connected session's concurrent-session slot."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from streamer.config import Settings
from streamer.edge.clients import client_address, networks, rate_key
from streamer.edge.credentials import authorization, retry_after
from streamer.errors import AuthError, ForbiddenError, StreamerError
from streamer.guards.keys import DEMO_KEY_ID
from streamer.guards.tokens import AUDIENCE, SessionGrant
from streamer.pipeline.audio import max_frame_bytes
from streamer.protocol import Encoding, Limits, error_body
from streamer.services import Services
from streamer.session.registry import SessionRegistry
from streamer.session.validation import origin_allowed

log = logging.getLogger(__name__)

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
REGISTRY: web.AppKey[SessionRegistry] = web.AppKey("registry", SessionRegistry)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)  # for traces of what it starts

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# a surface with its own error body (the vendor adapters) renders the refusals made here on its paths
ErrorShape = Callable[[web.Request, StreamerError], web.Response | None]
ERROR_SHAPE: web.AppKey[ErrorShape] = web.AppKey("error_shape", ErrorShape)  # type: ignore[arg-type]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # 'self' covers ws:// and wss:// to this host (CSP 3); the demo page talks to nothing else
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
}
# a load balancer's health checks may share an address with a guesser (behind an undeclared proxy)
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
SERVER_NAME = "streamer"  # not aiohttp's Server header, which names its and Python's versions


class Listener(enum.Enum):
    """Which of ``streamer serve``'s listeners a connection came in on (``streamer/listen.py``)."""

    PUBLIC = "public"
    ADMIN = "admin"  # STREAMER_ADMIN_PORT's, on STREAMER_ADMIN_HOST


def listener_of(request: web.Request) -> Listener:
    """The listener ``request`` arrived on: ``listen.py``'s connection handlers say which; anything else
    (an app under another runner, tests' ``TestServer``) has the public one only. Not the local port:
    two listeners may share a port on different addresses, and port 0 is chosen by the system."""
    listener = getattr(request.protocol, "listener", None)
    return listener if isinstance(listener, Listener) else Listener.PUBLIC


def content_security_policy(public_url: str | None) -> str:
    """The CSP: with ``STREAMER_PUBLIC_URL`` the demo page's socket goes there, so that origin is allowed."""
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    if not public_url:
        return policy
    origin = urlsplit(public_url)
    socket = origin._replace(scheme=origin.scheme.replace("http", "ws", 1), path="", query="", fragment="")
    return policy.replace("connect-src 'self'", f"connect-src 'self' {socket.geturl()}")


async def stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, including WebSocket upgrades and static files: the security headers and a Server
    header that names no versions (``app.on_response_prepare``)."""
    response.headers["Server"] = SERVER_NAME
    settings = request.app[SERVICES].settings if SERVICES in request.app else None
    for name, value in SECURITY_HEADERS.items():
        if name == "Content-Security-Policy" and settings is not None:
            value = content_security_policy(settings.public_url)
        response.headers.setdefault(name, value)


def error_response(e: StreamerError, headers: dict[str, str] | None = None) -> web.Response:
    hdrs = dict(headers or {})
    if e.retry_after is not None:
        hdrs["Retry-After"] = retry_after(e.retry_after)
    if e.status == 401:
        hdrs["WWW-Authenticate"] = 'Bearer realm="streamer"'
    return web.json_response(error_body(e.code, e.message), status=e.status, headers=hdrs)


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids, security headers, JSON errors without stack traces or secrets, and a throttle on
    addresses that keep failing authentication (every surface: keys, admin key, tokens)."""
    request_id = request.headers.get("X-Request-ID", "")
    if not (0 < len(request_id) <= 128 and request_id.isprintable()):
        request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    registry = request.app.get(REGISTRY)
    address = ""
    if registry is not None:
        trusted = networks(registry.services.settings.trusted_proxies)
        address = rate_key(client_address(request, trusted))
        if listener_of(request) is Listener.ADMIN:
            # the admin listener's failures are its own: guesses on the public side never lock out the
            # operator, and admin-key guesses are throttled apart
            address = f"admin {address}"
    try:
        if registry is not None and request.path not in PROBES:
            registry.check_auth_failures(address)
        response = await handler(request)
    except StreamerError as e:
        shape = request.app.get(ERROR_SHAPE)
        response = (shape(request, e) if shape is not None else None) or error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = e.reason.lower().replace(" ", "_")
        headers = {k: v for k, v in e.headers.items() if k.lower() != "content-type"}
        response = web.json_response(error_body(code, e.reason), status=e.status, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request_id)
        response = web.json_response(error_body("internal_error", "internal server error"), status=500)
    if registry is not None and response.status == 401:
        registry.record_auth_failure(address)
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def bearer(request: web.Request) -> str:
    scheme, value = authorization(request)
    if scheme != "bearer" or not value:
        raise AuthError("missing API key: send Authorization: Bearer <key>")
    return value


async def redeem_token(services: Services, token: str, audience: str = AUDIENCE) -> SessionGrant:
    """Spend a single-use token minted for ``audience``: its signature, audience, expiry and single use,
    and its key must still be valid now (a key revoked after the token was issued opens nothing)."""
    grant = await services.tokens.redeem(
        token,
        lambda jti, ttl: services.state.call(lambda: services.backend.consume_jti(jti, ttl), True),
        audience=audience,
    )
    if not await _key_still_valid(services, grant.key_id):
        raise AuthError("the key this token was issued for is no longer valid")
    return grant


async def _key_still_valid(services: Services, key_id: str) -> bool:
    if key_id == DEMO_KEY_ID:
        return services.settings.demo_enabled
    if any(record.key_id == key_id for record in services.keys.records):
        return True

    async def stored() -> bool:
        record = await services.backend.get_key(key_id)
        return record is not None and not record.revoked

    # the outage policy decides while the key store is down (fail_open: the token was valid when issued)
    return await services.state.call(stored, True)


async def hold_slot(services: Services, key_id: str, session_id: str, ttl_s: float) -> None:
    """Keep a connected session's concurrent-session slot for ``ttl_s`` more seconds. A slot the state
    backend lost (a Redis restart without persistence; a lapse during an outage) is added again, within
    the key's limit: live sessions count again, and new ones are refused past the limit."""
    backend = services.backend
    if await backend.refresh_session(key_id, session_id, ttl_s):
        return
    known, limit = await _session_limit(services, key_id)
    if known:  # a key no longer known (deleted, or lost with the store) takes no slot back
        await backend.acquire_session(key_id, session_id, limit, ttl_s)


async def _session_limit(services: Services, key_id: str) -> tuple[bool, int | None]:
    """Whether the key is known, and its concurrent-session limit (None: unlimited)."""
    if key_id == DEMO_KEY_ID:
        return True, services.settings.demo_max_sessions
    for record in services.keys.records:
        if record.key_id == key_id:
            return True, record.session_limit
    stored = await services.backend.get_key(key_id)
    return stored is not None, stored.session_limit if stored is not None else None


def check_origin(request: web.Request) -> None:
    """Refuse cross-site WebSocket hijacking: a browser's Origin must be allowed (or same host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser; the token is the credential
    allowed = request.app[SERVICES].settings.websocket_origins  # never the CORS wildcard
    if not origin_allowed(origin, allowed, request.headers.get("Host", "")):
        raise ForbiddenError(f"origin {origin} is not allowed")


def max_session_s(s: Settings, key_id: str) -> float:
    """How long a session may last: demo sessions (no key) have a shorter limit of their own."""
    return s.demo_max_session_s if key_id == DEMO_KEY_ID else s.max_session_s


def idle_timeout_s(s: Settings, key_id: str) -> float:
    """How long a session may send nothing before it is closed (demo sessions: shorter)."""
    return s.demo_idle_timeout_s if key_id == DEMO_KEY_ID else s.idle_timeout_s


def session_limits(
    s: Settings, sample_rate: int, key_id: str = "", encoding: Encoding = Encoding.PCM16
) -> Limits:
    return Limits(
        max_frame_bytes=max_frame_bytes(sample_rate, s.max_frame_ms, encoding),
        max_frame_ms=s.max_frame_ms,
        max_session_s=max_session_s(s, key_id),
        max_realtime_factor=s.max_realtime_factor,
        max_messages_per_s=s.max_messages_per_s,
    )
