"""A Python client of protocol v1, for apps, scripts, the benchmark and the tests.

    async with StreamerClient("http://127.0.0.1:8080", api_key="...") as client:
        async with await client.connect({"language": "en"}) as stream:
            sender = asyncio.create_task(stream.send_pcm(pcm, sample_rate=16000, realtime=True))
            async for event in stream:
                if event["type"] == "transcript.final":
                    print(event["text"])
            await sender

Events are the server's JSON messages as dicts. ``stream.send_pcm`` paces audio in real time (or as fast
as the server accepts it) and ends with ``session.close``; iteration ends after ``session.closed``.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np


class ClientError(Exception):
    """The server refused a request: ``status`` (HTTP) and the contract's ``code``."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    token: str
    ws_url: str
    config: dict[str, Any]
    limits: dict[str, Any]
    expires_at: float


def read_wav(path: str) -> tuple[bytes, int]:
    """PCM16 mono bytes and the sample rate of a 16-bit WAV file (stereo is mixed down)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())
    if channels > 1:
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(axis=1)
        data = samples.astype("<i2").tobytes()
    return data, rate


class Stream:
    """One live WebSocket session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, info: SessionInfo) -> None:
        self.ws = ws
        self.info = info
        self.events: list[tuple[float, dict[str, Any]]] = []  # (monotonic time received, event)
        self.created: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.last_seq = 0  # seq of the last transcript.final received
        self._targets: set[str] = set(info.config.get("translate_to") or [])
        self._translated: set[str] = set()  # languages of last_seq's translations received so far
        # after a resume: what the previous connection already delivered (a replay of it is skipped)
        self._seen_seq = 0
        self._seen_translations: set[str] = set()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or None when the socket has closed."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            event: dict[str, Any] = json.loads(msg.data)
            if self._already_seen(event):
                return await self.receive(timeout)
            self.events.append((time.monotonic(), event))
            kind = event.get("type")
            if kind == "transcript.final":
                self.last_seq = int(event["seq"])
                self._translated = set()
            elif kind == "translation.final" and event.get("seq") == self.last_seq:
                self._translated.add(str(event.get("language")))
            elif kind == "session.created" and isinstance(event.get("config"), dict):
                self._targets = set(event["config"].get("translate_to") or [])
            return event
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            self.close_code = self.ws.close_code
            return None
        if msg.type == aiohttp.WSMsgType.ERROR:
            self.close_code = self.ws.close_code
            return None
        return await self.receive(timeout)

    def _already_seen(self, event: dict[str, Any]) -> bool:
        """A final (or translation) the previous connection delivered, replayed by a resume."""
        seq = event.get("seq")
        if not isinstance(seq, int) or seq > self._seen_seq:
            return False
        if event.get("type") == "translation.final" and seq == self._seen_seq:
            return event.get("language") in self._seen_translations
        return event.get("type") in ("transcript.final", "translation.final")

    def carry_on_from(self, previous: Stream) -> None:
        """This stream resumes ``previous``: what it delivered is not delivered again."""
        self.last_seq = self._seen_seq = previous.last_seq
        self._translated = set(previous._translated)
        self._seen_translations = set(previous._translated)
        self._targets = set(previous._targets)

    @property
    def resume_from(self) -> int:
        """The ``last_seq`` to resume with (docs/protocol.md): one less while the last final's
        translations have not all arrived, since the server replays only what comes after ``last_seq``."""
        if self.last_seq > 0 and not self._targets <= self._translated:
            return self.last_seq - 1
        return self.last_seq

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self.receive()
            if event is None:
                return
            yield event
            if event.get("type") == "session.closed":
                return

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def commit(self) -> None:
        await self.send_json({"type": "input_audio.commit"})

    async def close_session(self) -> None:
        await self.send_json({"type": "session.close"})

    async def update(self, **config: Any) -> None:
        await self.send_json({"type": "session.update", "config": config})
        if "translate_to" in config:  # finals from now on are translated into these
            self._targets = set(config["translate_to"] or [])

    async def send_pcm(
        self,
        pcm: bytes,
        sample_rate: int = 16000,
        *,
        chunk_ms: int = 100,
        realtime: bool = True,
        close: bool = True,
        on_chunk: Any = None,
    ) -> float:
        """Send PCM16 audio in chunks; returns the monotonic time the last chunk was sent."""
        step = sample_rate * chunk_ms // 1000 * 2
        start = time.monotonic()
        sent_ms = 0.0
        last = start
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            if realtime:
                delay = start + sent_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.ws.send_bytes(chunk)
            last = time.monotonic()
            sent_ms += len(chunk) / 2 / sample_rate * 1000
            if on_chunk is not None:
                on_chunk(sent_ms, last)
        if close:
            await self.close_session()
        return last


@dataclass
class StreamerClient:
    """REST + WebSocket client. Without an API key it asks for a demo session (demo mode servers)."""

    base_url: str
    api_key: str | None = None
    http: aiohttp.ClientSession | None = None
    _owned: bool = field(default=False, init=False)

    async def __aenter__(self) -> StreamerClient:
        if self.http is None:
            self.http = aiohttp.ClientSession()
            self._owned = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._owned and self.http is not None:
            await self.http.close()

    async def create_session(self, config: dict[str, Any] | None = None) -> SessionInfo:
        assert self.http is not None, "use 'async with StreamerClient(...)'"
        base = self.base_url.rstrip("/")
        if self.api_key:
            url, headers = f"{base}/v1/sessions", {"Authorization": f"Bearer {self.api_key}"}
        else:
            url, headers = f"{base}/v1/demo/session", {"Origin": base}
        return await self._post_session(url, headers, config or {})

    async def _post_session(
        self, url: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> SessionInfo:
        assert self.http is not None
        async with self.http.post(url, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status != 201:
                err = data.get("error", {}) if isinstance(data, dict) else {}
                retry = r.headers.get("Retry-After")
                raise ClientError(
                    r.status,
                    err.get("code", "error"),
                    err.get("message", ""),
                    float(retry) if retry else None,
                )
        return SessionInfo(
            session_id=data["session_id"],
            token=data["token"],
            ws_url=data["ws_url"],
            config=data["config"],
            limits=data["limits"],
            expires_at=data["expires_at"],
        )

    async def _open(
        self, info: SessionInfo, url: str, protocols: tuple[str, ...] = (), seen: Stream | None = None
    ) -> Stream:
        """Open the WebSocket and wait for ``session.created``; ``seen``: the stream this one resumes."""
        assert self.http is not None
        ws = await self.http.ws_connect(url, protocols=protocols)
        stream = Stream(ws, info)
        if seen is not None:
            stream.carry_on_from(seen)
        first = await stream.receive(timeout=30)
        if first is None or first.get("type") != "session.created":
            await ws.close()
            raise ClientError(ws.close_code or 0, "no_session", f"unexpected first event: {first}")
        stream.created = first
        return stream

    def ws_url(self, info: SessionInfo) -> str:
        url = info.ws_url
        if url.startswith("/"):
            url = self.base_url.rstrip("/").replace("http", "ws", 1) + url
        return url

    async def resume(self, stream: Stream) -> Stream:
        """Reconnect a dropped session: the server replays the finals after ``stream.resume_from``.

        Needs the API key the session was started with. Events replayed and new ones arrive on the
        returned stream; nothing is lost or repeated: when the last final's translations were still
        missing, the server is asked from the final before it, and the repeated final is skipped.
        """
        assert self.http is not None, "use 'async with StreamerClient(...)'"
        base = self.base_url.rstrip("/")
        url = f"{base}/v1/sessions/{stream.info.session_id}/resume"
        info = await self._post_session(url, {"Authorization": f"Bearer {self.api_key}"}, None)
        query = f"?token={info.token}&last_seq={stream.resume_from}"
        resumed = await self._open(info, self.ws_url(info) + query, seen=stream)
        return resumed

    async def connect(self, config: dict[str, Any] | None = None, *, subprotocol: bool = False) -> Stream:
        """Start a session and open its WebSocket; waits for ``session.created``."""
        assert self.http is not None, "use 'async with StreamerClient(...)'"
        info = await self.create_session(config)
        url = self.ws_url(info)
        if subprotocol:
            return await self._open(info, url, ("streamer.v1", f"token.{info.token}"))
        return await self._open(info, f"{url}?token={info.token}")
