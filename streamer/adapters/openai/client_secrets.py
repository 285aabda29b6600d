"""OpenAI Realtime's client secrets: issued by ``POST /v1/realtime/client_secrets`` (GA) and the older beta
``POST /v1/realtime/transcription_sessions``, each a single-use session token that carries the session's
settings, and redeemed when the socket (:mod:`streamer.adapters.openai.socket`) opens.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from streamer.adapters.common import issue, key_record, redeem
from streamer.adapters.openai.rest import bearer_key, error_response, json_body
from streamer.adapters.openai.state import RealtimeState, state_from_ga
from streamer.adapters.openai.wire import (
    BetaSession,
    ClientEventError,
    ExpiresAt,
    SecretRequest,
    invalid,
    new_id,
)
from streamer.edge.credentials import authorization, offered_subprotocols
from streamer.edge.handshake import SERVICES
from streamer.errors import AuthError, StreamerError
from streamer.guards.keys import KeyRecord
from streamer.guards.tokens import OPENAI_AUDIENCE
from streamer.services import Services

SECRET_PREFIX = "ek_"
INSECURE_KEY_PREFIX = "openai-insecure-api-key."


async def client_secrets(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: a single-use secret for one transcription session."""
    services = request.app[SERVICES]
    try:
        key = await bearer_key(request, services)
        try:
            body = SecretRequest.model_validate(await json_body(request))
        except ValidationError as e:
            raise invalid(e, None) from e
        raw = body.session or {"type": "transcription"}
        if raw.get("type") != "transcription":
            raise ClientEventError(
                "this server offers transcription sessions only (session.type: transcription)",
                code="invalid_value",
                param="session.type",
            )
        state = state_from_ga(raw)
        state.config(services)  # refuse a language the model lacks now, not at connect time
        ttl = (body.expires_after or ExpiresAt()).seconds
        extra = {"openai": state.model_dump(), "beta": False}
        token, expires_at = issue(services, key, ttl, extra, OPENAI_AUDIENCE)
    except StreamerError as e:
        return error_response(e)
    session_id = new_id("sess")
    return web.json_response(
        {
            "value": SECRET_PREFIX + token,
            "expires_at": int(expires_at),
            "session": state.ga(session_id, int(expires_at)),
        }
    )


async def transcription_sessions(request: web.Request) -> web.Response:
    """``POST /v1/realtime/transcription_sessions`` (beta): the session and its client secret."""
    services = request.app[SERVICES]
    try:
        key = await bearer_key(request, services)
        try:
            body = BetaSession.model_validate(await json_body(request))
        except ValidationError as e:
            raise invalid(e, None) from e
        state = RealtimeState().updated_beta(body, creating=True)
        state.config(services)
        ttl = (
            body.client_secret.expires_at
            if body.client_secret and body.client_secret.expires_at
            else ExpiresAt()
        )
        extra = {"openai": state.model_dump(), "beta": True}
        token, expires_at = issue(services, key, ttl.seconds, extra, OPENAI_AUDIENCE)
    except StreamerError as e:
        return error_response(e)
    session = state.beta(new_id("sess"), int(expires_at))
    session["client_secret"] = {"value": SECRET_PREFIX + token, "expires_at": int(expires_at)}
    return web.json_response(session)


async def authenticate(
    request: web.Request, services: Services
) -> tuple[KeyRecord, RealtimeState | None, bool]:
    """The key, the session a client secret carried (if one was used), and whether it was beta's."""
    offered = offered_subprotocols(request)
    credential = next(
        (p[len(INSECURE_KEY_PREFIX) :] for p in offered if p.startswith(INSECURE_KEY_PREFIX)), None
    )
    if credential is None:
        scheme, value = authorization(request)
        if scheme == "bearer":
            credential = value
    if not credential:
        raise AuthError("send Authorization: Bearer <api key or client secret>")
    if not credential.startswith(SECRET_PREFIX):
        return await key_record(services, credential), None, False
    key, extra = await redeem(services, credential[len(SECRET_PREFIX) :], OPENAI_AUDIENCE)
    carried = extra.get("openai")
    state = RealtimeState.model_validate(carried) if isinstance(carried, dict) else None
    return key, state, bool(extra.get("beta"))
