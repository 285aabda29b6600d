"""Reading what a request presents, one way for every surface: the ``Authorization`` header, the
WebSocket subprotocols offered (browsers cannot set headers on a WebSocket, so credentials travel there),
and the ``Retry-After`` a refusal answers with."""

from __future__ import annotations

import math

from aiohttp import web

__all__ = ["authorization", "offered_subprotocols", "retry_after"]


def authorization(request: web.BaseRequest) -> tuple[str, str]:
    """``Authorization: <scheme> <credential>`` as (scheme in lower case, credential stripped); ``("", "")``
    without the header. The caller decides which schemes it accepts."""
    scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower(), credential.strip()


def offered_subprotocols(request: web.BaseRequest) -> list[str]:
    """The ``Sec-WebSocket-Protocol`` values offered, in the client's order (several headers count)."""
    return [
        p.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", [])
        for p in header.split(",")
        if p.strip()
    ]


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value for a wait of ``seconds``: whole seconds, rounded up (a client told to
    come back before the wait is over is refused again), at least 1."""
    return str(max(1, math.ceil(seconds)))
