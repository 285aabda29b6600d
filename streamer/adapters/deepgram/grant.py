"""Deepgram's temporary tokens: ``POST /v1/auth/grant``."""

from __future__ import annotations

import time
import uuid

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.adapters.common import issue, key_record
from streamer.adapters.deepgram.options import SUBPROTOCOLS, error_response, from_domain
from streamer.edge.credentials import authorization
from streamer.edge.handshake import SERVICES
from streamer.errors import AuthError, BadRequestError, StreamerError
from streamer.guards.tokens import DEEPGRAM_AUDIENCE

GRANT_TTL_S = 30.0
MAX_GRANT_TTL_S = 3600.0


async def grant(request: web.Request) -> web.Response:
    """``POST /v1/auth/grant``: a single-use temporary token for one ``/v1/listen`` connection."""
    services = request.app[SERVICES]
    request_id = str(uuid.uuid4())
    try:
        scheme, credential = authorization(request)
        if scheme not in SUBPROTOCOLS or not credential:
            raise AuthError("send Authorization: Token <api key>")
        key = await key_record(services, credential)
        ttl = GRANT_TTL_S
        if request.can_read_body and (raw := await request.read()).strip():
            try:
                body = GrantRequest.model_validate_json(raw)
            except ValidationError as e:
                first = e.errors()[0]
                raise BadRequestError(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from e
            ttl = body.ttl_seconds if body.ttl_seconds is not None else GRANT_TTL_S
        token, expires_at = issue(services, key, ttl, {"surface": "deepgram"}, DEEPGRAM_AUDIENCE)
    except StreamerError as e:
        return error_response(from_domain(e), request_id)
    return web.json_response({"access_token": token, "expires_in": round(expires_at - time.time(), 3)})


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: float | None = Field(default=None, ge=1, le=MAX_GRANT_TTL_S)
