"""A Python client of protocol v1, for apps, scripts, the benchmark and the tests.

    async with StreamerClient("http://127.0.0.1:8080", api_key="...") as client:
        async with await client.connect({"language": "en"}) as stream:
            sender = asyncio.create_task(stream.send_pcm(pcm, sample_rate=16000, realtime=True))
            async for event in stream:
                if event["type"] == "transcript.final":
                    print(event["text"])
            await sender

Events are the server's JSON messages as dicts. ``stream.send_pcm`` paces audio in real time (or as fast
as the server accepts it) and ends with ``session.close``; iteration ends after ``session.closed``. With
``{"encoding": "mulaw"}`` (or ``"alaw"``) in the config, ``send_pcm`` encodes the PCM16 it is given to
G.711 before sending it; with a container encoding (``"webm"``, ``"ogg"``, ``"wav"``, ``"mp3"``,
``"flac"``, ``"container"``), ``stream.send_container`` sends a recording's bytes as they are.

Resume: every stream keeps the audio it sent after its last final (:class:`AudioBuffer`, bounded), and
``client.resume(stream)`` sends it again on the new connection, so the sentence that was in flight when a
connection (or the server instance behind it) died is transcribed on the new one, once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from streamer.client_audio import encode, sample_bytes
from streamer.client_audio import read_wav as read_wav  # re-exported: apps read their WAV files with it
from streamer.client_resend import AudioBuffer as AudioBuffer  # re-exported


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
        self.buffer = AudioBuffer()  # audio after the last final, sent again on resume
        self._sending = asyncio.Lock()  # a resume's re-sent audio goes out before anything newer
        self._successor: Stream | None = None  # the stream that resumed this one

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
                self.buffer.transcribed_until(float(event["audio_end_ms"]))
            elif kind == "translation.final" and event.get("seq") == self.last_seq:
                self._translated.add(str(event.get("language")))
            elif kind == "session.created" and isinstance(event.get("config"), dict):
                self._targets = set(event["config"].get("translate_to") or [])
            return event
        if msg.type == aiohttp.WSMsgType.CLOSE:
            # the code the server closed with; aiohttp's own close reply may fail on a transport the server
            # already closed, and it then overwrites ws.close_code with 1006
            self.close_code = int(msg.data)
            return None
        if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
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
        self.buffer = previous.buffer

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
        if self._successor is not None:
            await self._successor.send_json(message)
            return
        await self.ws.send_str(json.dumps(message))

    @property
    def encoding(self) -> str:
        """The session's encoding (``pcm16``, ``mulaw``, ``alaw``, or a container: see
        :meth:`send_container`)."""
        return str(self.info.config.get("encoding", "pcm16"))

    async def send_audio(self, pcm: bytes, sample_rate: int | None = None) -> None:
        """Send one frame of audio in the session's encoding (any whole number of samples up to 1 s),
        kept in :attr:`buffer` first.

        A frame whose send fails (``ConnectionError``: the connection dropped) is kept all the same and
        sent by :meth:`StreamerClient.resume`; a caller can go on sending through the drop (like a
        microphone would), and once resumed, this stream forwards to the new one.
        """
        if self._successor is not None:
            await self._successor.send_audio(pcm, sample_rate)
            return
        rate = sample_rate or int(self.info.config.get("sample_rate", 16000))
        self.buffer.add(pcm, rate, sample_bytes(self.encoding))
        async with self._sending:
            await self.ws.send_bytes(pcm)

    async def send_container(
        self,
        data: bytes,
        duration_s: float,
        *,
        chunk_ms: int = 250,
        speed: float = 1.0,
        close: bool = True,
        on_chunk: Any = None,
    ) -> float:
        """Send a container's bytes as they are (a session whose ``encoding`` is a container: ``webm``,
        ``ogg``, ``wav``, ``mp3``, ``flac`` or ``container``), cut into pieces of ``chunk_ms`` of its
        ``duration_s`` as a MediaRecorder's ``timeslice`` would, each when its audio would have been
        captured (``speed`` times real time; 0: as fast as the server reads); returns the monotonic time
        the last piece was sent.

        Unlike PCM, these bytes are not kept for a resume: a resumed connection starts a new container
        stream (a header first), and a tail cut out of a container is not one.
        """
        pieces = max(1, round(duration_s * 1000 / chunk_ms))
        step = min(-(-len(data) // pieces), int(self.info.limits.get("max_frame_bytes", 96_000)))
        start = last = time.monotonic()
        for i in range(0, len(data), step):
            if speed > 0:
                delay = start + i / len(data) * duration_s / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.ws.send_bytes(data[i : i + step])
            last = time.monotonic()
            if on_chunk is not None:
                on_chunk(min(len(data), i + step) / len(data) * duration_s * 1000, last)
        if close:
            await self.close_session()
        return last

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
        """Send PCM16 audio in chunks, encoded to the session's encoding; returns the monotonic time the
        last chunk was sent."""
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
            await self.send_audio(encode(chunk, self.encoding), sample_rate)
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
        info, _ = await self._post(url, headers, body)
        return info

    async def _post(
        self, url: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[SessionInfo, dict[str, Any]]:
        """A session (or resume) request: the session's info, and the whole answer."""
        assert self.http is not None
        async with self.http.post(url, json=body, headers=headers) as r:
            try:
                data = await r.json(content_type=None)
            except ValueError:  # not JSON: a proxy's error page (a 502 while an instance dies)
                data = None
            if r.status != 201 or not isinstance(data, dict):
                err = data.get("error", {}) if isinstance(data, dict) else {}
                retry = r.headers.get("Retry-After")
                raise ClientError(
                    r.status,
                    err.get("code", "error"),
                    err.get("message", "") or r.reason or "",
                    float(retry) if retry else None,
                )
        info = SessionInfo(
            session_id=data["session_id"],
            token=data["token"],
            ws_url=data["ws_url"],
            config=data["config"],
            limits=data["limits"],
            expires_at=data["expires_at"],
        )
        return info, data

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
        """Reconnect a dropped session (on whichever server instance the request reaches).

        The server replays the finals after ``stream.resume_from``, and this client sends again the audio
        it sent after its last final (``stream.buffer``), from where the server says its transcript ends:
        the sentence in flight at the drop is transcribed once, on the new connection. Needs the API key
        the session was started with. Events replayed and new ones arrive on the returned stream; nothing
        is lost or repeated: when the last final's translations were still missing, the server is asked
        from the final before it, and the repeated final is skipped.
        """
        assert self.http is not None, "use 'async with StreamerClient(...)'"
        base = self.base_url.rstrip("/")
        url = f"{base}/v1/sessions/{stream.info.session_id}/resume"
        info, answer = await self._post(url, {"Authorization": f"Bearer {self.api_key}"}, None)
        buffer = stream.buffer
        buffer.transcribed_until(float(answer.get("transcribed_until_ms", 0)))
        query = f"?last_seq={stream.resume_from}"
        if buffer.end_ms > 0:  # audio went through send_audio (raw ws.send_bytes is not kept)
            query += f"&audio_from_ms={int(buffer.start_ms)}"
        resumed = await self._open(info, self.ws_url(info) + query, _token_protocols(info), seen=stream)
        max_bytes = int(info.limits.get("max_frame_bytes", 32_000))
        async with resumed._sending:
            stream._successor = resumed  # from now on audio sent to the old stream goes after these
            for frame in buffer.frames(max_bytes):
                await resumed.ws.send_bytes(frame)
        return resumed

    async def connect(self, config: dict[str, Any] | None = None, *, subprotocol: bool = True) -> Stream:
        """Start a session and open its WebSocket; waits for ``session.created``.

        The token travels in the ``token.<jwt>`` subprotocol, not in the URL, which proxies and servers
        log; ``subprotocol=False`` sends it as ``?token=`` for servers that predate subprotocols.
        """
        assert self.http is not None, "use 'async with StreamerClient(...)'"
        info = await self.create_session(config)
        url = self.ws_url(info)
        if subprotocol:
            return await self._open(info, url, _token_protocols(info))
        return await self._open(info, f"{url}?token={info.token}")


def _token_protocols(info: SessionInfo) -> tuple[str, str]:
    """The subprotocols that carry a session token (the server selects ``streamer.v1``)."""
    return ("streamer.v1", f"token.{info.token}")
