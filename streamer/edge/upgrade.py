"""Opening a session's WebSocket, the same way on every surface: the response every upgrade answers with,
finishing the handshake (giving back what was admitted when it fails), and the close frame's reason."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["close_reason_bytes", "socket_response", "upgrade"]


def socket_response(
    protocols: tuple[str, ...], max_msg_size: int, *, decode_text: bool = True
) -> web.WebSocketResponse:
    """The upgrade every surface answers with: no permessage-deflate (4 KiB on the wire would inflate to
    megabytes of the loop's CPU time) and aiohttp's ping every 20 s (a vanished peer is seen). The client's
    pings reach the reader (answered there), so they count as activity and against the message rate."""
    return web.WebSocketResponse(
        protocols=protocols,
        max_msg_size=max_msg_size,
        compress=False,
        heartbeat=20.0,
        autoping=False,
        decode_text=decode_text,
    )


async def upgrade(
    request: web.Request, ws: web.WebSocketResponse, give_back: Callable[[], Awaitable[None]]
) -> asyncio.Transport | None:
    """Finish the WebSocket handshake of every surface; if it fails (the client left, the peer's headers),
    ``give_back`` what was admitted for it (sessions, a resumed session's parking) before raising.
    Returns the connection's transport (a slow reader's connection is cut through it)."""
    try:
        await ws.prepare(request)
    except BaseException:
        await give_back()
        raise
    return request.transport if isinstance(request.transport, asyncio.Transport) else None


def close_reason_bytes(text: str) -> bytes:
    """A close frame's reason: at most 123 bytes, and still UTF-8 (a cut never splits a character)."""
    return text.encode()[:123].decode("utf-8", "ignore").encode()
