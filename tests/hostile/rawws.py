"""A WebSocket client that does what well-behaved libraries refuse to: the hostile side of the suite.

It speaks RFC 6455 over a bare TCP stream, so a test can offer permessage-deflate and then send
compressed frames whatever the server answered, send frames of any size, and stop reading on purpose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8


@dataclass
class RawSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    headers: dict[str, str]  # the upgrade answer's headers, names lower-cased
    # the server's compression context (it may keep its window across messages)
    _inflate: Any = field(default_factory=lambda: zlib.decompressobj(-15))

    @property
    def deflate_accepted(self) -> bool:
        return "permessage-deflate" in self.headers.get("sec-websocket-extensions", "")

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server (servers do not mask)."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
        if head[0] & 0x40:  # compressed by a server that negotiated deflate
            payload = self._inflate.decompress(payload + b"\x00\x00\xff\xff")
        return head[0] & 0x0F, payload

    async def read_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next text frame as JSON (raises on a close frame)."""
        opcode, payload = await self.read_frame(timeout)
        if opcode != OP_TEXT:
            raise AssertionError(f"expected a text frame, got opcode {opcode} ({payload[:80]!r})")
        data: dict[str, Any] = json.loads(payload)
        return data

    async def close(self) -> None:
        self.writer.close()
        # the server may have cut the connection first: that is what some tests expect
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def connect(host: str, port: int, path: str, *, offer_deflate: bool = False) -> RawSocket:
    """Upgrade a TCP connection to a WebSocket at ``path`` (with its query)."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if offer_deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    async with asyncio.timeout(5.0):
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    if " 101 " not in status_line:
        writer.close()
        raise AssertionError(f"upgrade refused: {status_line}")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return RawSocket(reader, writer, headers)


def frame(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """One masked client frame; ``compressed`` deflates the payload and sets RSV1 (permessage-deflate)."""
    if compressed:
        payload = deflate(payload)
    first = 0x80 | opcode | (0x40 if compressed else 0)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload) ^ int.from_bytes(key)).to_bytes(n) if n else b""
    return head + mask + masked


def deflate(payload: bytes) -> bytes:
    """permessage-deflate's compressed form: raw deflate, sync-flushed, without the 00 00 ff ff tail."""
    c = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, -15)
    data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data


def inflating_ping(inflated_bytes: int) -> bytes:
    """A ``ping`` whose JSON is ``inflated_bytes`` long and deflates to about a thousandth of that."""
    shell = b'{"type":"ping","id":""}'
    pad = b"a" * (inflated_bytes - len(shell))
    return b'{"type":"ping","id":"' + pad + b'"}'
