"""Property-based fuzzing of WebSocket frames against one live server, beside a well-behaved session.

One server (fake ASR, real Silero VAD) runs on its own loop in a thread for the whole module. Hypothesis
generates scripts of frames (strategies in ``frames.py``): arbitrary text, arbitrary JSON, JSON objects
with a valid (or nearly valid) ``type`` and garbage fields, ``session.update`` with random configs, pings
with odd ids, and binary frames of every size class (empty, odd, short, valid noise, real speech, over the
frame limit, over the 4 MiB message limit). Scripts play on connections that are reused until the server
closes them (or the script asks for a fresh one); each script ends with a ping whose pong proves the
server is still answering.

Invariants, for every message and close: the server never crashes (no unhandled exception on its loop, no
ERROR log), never answers an HTTP 5xx, every message is a valid protocol-v1 server message, every error
event is exactly ``{type: error, code, message, retryable}``, every close code is one of the contract's,
and a close other than 1000/1001 is announced by an error event first. Meanwhile a well-behaved session
streams real speech in real time on its own thread and must get its finals with normal latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from fakes import FakeAsr
from hypothesis import HealthCheck, given, settings
from pydantic import Field, TypeAdapter
from support import API_KEY, make_settings, silence, to_bytes

from fuzz.frames import FRESH, SCRIPTS, SPEECH, Frame, Noise, Speech
from fuzz.threaded import ThreadedServer
from streamer.client import StreamerClient
from streamer.edge.ws import WS_MAX_MSG
from streamer.pipeline.vad import SileroVad
from streamer.protocol import ServerMessage

CONTRACT_CLOSE_CODES = {1000, 1001, 1008, 1009, 1011, 1013}
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(
    Annotated[ServerMessage, Field(discriminator="type")]  # type: ignore[arg-type]
)
FAKE_TEXT = "hello world"
READ_TIMEOUT_S = 10.0
# the good session's bound, end of utterance (audio) to its final: 400 ms of end silence + VAD + model
FINAL_LATENCY_BOUND_S = 2.0

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---- the fuzzing client


@dataclass
class Tally:
    connections: int = 0
    frames: int = 0
    text_frames: int = 0
    binary_frames: int = 0
    scripts: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)


class FuzzClient:
    """Plays scripts on a reused connection; checks every message, close and HTTP status it sees."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tally = Tally()
        self._sync = 0
        self._errors_seen = 0  # error events on the current connection
        self._sent_huge = False  # a message over aiohttp's limit went out on the current connection
        self._sent_close = False  # a text frame that may be a session.close (then the close is 1000)

    async def open(self) -> None:
        self.http = aiohttp.ClientSession()

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self.http is not None
        async with self.http.post(
            f"{self.base_url}/v1/sessions", headers={"Authorization": f"Bearer {API_KEY}"}
        ) as r:
            self.tally.statuses[r.status] += 1
            assert r.status == 201, (r.status, await r.text())
            token = (await r.json())["token"]
        url = self.base_url.replace("http", "ws", 1) + f"/v1/stream?token={token}"
        try:
            ws = await self.http.ws_connect(url, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            self.tally.statuses[e.status] += 1
            raise AssertionError(f"handshake refused: {e.status} {e.message}") from e
        self.tally.statuses[101] += 1
        self.tally.connections += 1
        self._errors_seen = 0
        self._sent_huge = self._sent_close = False
        first = await self._next(ws)
        assert first is not None and first["type"] == "session.created", first
        return ws

    def _check(self, event: dict[str, Any]) -> None:
        SERVER_MESSAGE.validate_python(event)  # a valid protocol-v1 message, no unknown fields
        self.tally.events[event["type"]] += 1
        if event["type"] == "error":
            assert set(event) == {"type", "code", "message", "retryable"}, event
            assert isinstance(event["code"], str) and event["code"], event
            assert isinstance(event["message"], str) and event["message"], event
            assert isinstance(event["retryable"], bool), event
            self.tally.error_codes[event["code"]] += 1
            self._errors_seen += 1
        if event["type"] == "transcript.final":
            # a segment too short or not speech still gets its answer: an empty final that says why
            assert event["text"] == ("" if event.get("dropped") else FAKE_TEXT), event

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
        """The next event (checked), or None once the server has closed (close code checked)."""
        msg = await ws.receive(timeout=READ_TIMEOUT_S)
        if msg.type == WSMsgType.TEXT:
            event: dict[str, Any] = json.loads(msg.data)
            self._check(event)
            return event
        if self._sent_huge:
            # aiohttp itself refuses a message over 4 MiB: 1009 and no error event, and it drops the
            # connection with the rest of the message unread, so the close frame may be lost to a reset
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR), msg
            self.tally.close_codes[int(msg.data) if msg.type == WSMsgType.CLOSE else 1009] += 1
            allowed = (1000, 1009) if self._sent_close else (1009,)
            assert msg.type != WSMsgType.CLOSE or msg.data in allowed, msg
            return None
        assert msg.type == WSMsgType.CLOSE, f"connection ended without a close frame: {msg}"
        code = int(msg.data)
        self.tally.close_codes[code] += 1
        assert code in CONTRACT_CLOSE_CODES, (code, msg.extra)
        if code not in (1000, 1001):
            # the contract: before any other close, an error event says why
            assert self._errors_seen > 0, f"closed with {code} without an error event"
        return None

    async def play(self, script: list[Frame], fresh: bool) -> None:
        self.tally.scripts += 1
        if fresh and self.ws is not None:
            await self.ws.close()
            self.ws = None
        if self.ws is None:
            self.ws = await self._connect()
        ws = self.ws
        sent_all = True
        for frame in [*script, None]:
            if frame is None:
                self._sync += 1
                frame = json.dumps({"type": "ping", "id": f"sync-{self._sync}"})
            try:
                if isinstance(frame, Noise | Speech):
                    frame = frame.materialize()
                if isinstance(frame, bytes):
                    self._sent_huge |= len(frame) > WS_MAX_MSG
                    await ws.send_bytes(frame)
                    self.tally.binary_frames += 1
                else:
                    self._sent_close |= "session.close" in frame
                    await ws.send_str(frame)
                    self.tally.text_frames += 1
                self.tally.frames += 1
            except ConnectionError:
                sent_all = False  # the server has closed (e.g. after an oversized frame)
                break
        while True:
            event = await self._next(ws)
            if event is None:
                self.ws = None
                await ws.close()
                return
            if sent_all and event["type"] == "pong" and event.get("id") == f"sync-{self._sync}":
                return


# ---- the well-behaved session


@dataclass
class GoodSession:
    """Streams (silence, en_utt1, silence) in real time, over and over, until told to stop."""

    base_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    repetitions: int = 0
    finals: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, Any] | None = None
    failure: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:
            self.failure = e

    async def _run(self) -> None:
        rep = to_bytes(silence(0.3)) + SPEECH + to_bytes(silence(1.0))
        chunk = 3200  # 100 ms
        async with StreamerClient(self.base_url, api_key=API_KEY) as client:
            stream = await client.connect({"language": "en"})
            async with stream:
                started = time.monotonic()

                async def send() -> None:
                    # real time on an absolute schedule: the chunk holding audio time t is sent at
                    # `started + t` (rounded down to its 100 ms), so latencies need no correction for drift
                    sent = 0
                    while self.repetitions < 2 or not self.stop.is_set():
                        for i in range(0, len(rep), chunk):
                            await asyncio.sleep(max(0.0, started + sent / 32000 - time.monotonic()))
                            await stream.ws.send_bytes(rep[i : i + chunk])
                            sent += len(rep[i : i + chunk])
                        self.repetitions += 1
                    await stream.close_session()

                sender = asyncio.create_task(send())
                async for event in stream:
                    if event["type"] == "transcript.final":
                        # the end of the utterance reached the server with the chunk that holds it
                        sent_at = started + event["audio_end_ms"] // 100 / 10
                        self.latencies.append(time.monotonic() - sent_at)
                        self.finals.append(event)
                    elif event["type"] == "error":
                        self.errors.append(event)
                    elif event["type"] == "session.closed":
                        self.closed = event
                await sender


# ---- the test


@pytest.fixture(scope="module")
def ws_server(silero: SileroVad) -> Iterator[ThreadedServer]:
    server = ThreadedServer(
        # sessions end with their connection (no resume window) and may start as often as the fuzzer likes
        make_settings(resume_window_s=0.0, session_rate_per_key_per_min=0.0),
        asr_engine=FakeAsr(text=FAKE_TEXT),
        vad=silero,
    )
    server.start()
    yield server
    server.stop()


def test_ws_fuzz_never_breaks_the_contract_or_a_good_session(ws_server: ThreadedServer) -> None:
    good = GoodSession(ws_server.url)
    good_thread = threading.Thread(target=good.run, name="good-session", daemon=True)
    good_thread.start()
    loop = asyncio.new_event_loop()
    client = FuzzClient(ws_server.url)
    loop.run_until_complete(client.open())
    started = time.monotonic()
    try:

        @FUZZ
        @given(script=SCRIPTS, fresh=FRESH)
        def fuzz(script: list[Frame], fresh: bool) -> None:
            loop.run_until_complete(asyncio.wait_for(client.play(script, fresh), 60))

        fuzz()
    finally:
        fuzz_s = time.monotonic() - started
        good.stop.set()
        with contextlib.suppress(Exception):
            loop.run_until_complete(client.aclose())
        loop.close()
        good_thread.join(60)

    tally = client.tally
    print(f"\nfuzz: {fuzz_s:.1f}s, {tally}")
    print(f"good session: {good.repetitions} repetitions, latencies {[round(x, 2) for x in good.latencies]}")
    # the fuzzing was substantial
    assert tally.frames >= 2000 and tally.connections >= 100, tally
    assert tally.binary_frames > 500 and tally.text_frames > 500, tally
    # the server answered every HTTP request without a 5xx, and nothing went wrong inside it
    assert not [s for s in tally.statuses if s >= 500], tally.statuses
    assert ws_server.loop_errors == []
    assert [r.getMessage() for r in ws_server.error_logs] == []
    # the well-behaved session: a final for every utterance it spoke, none late, no errors
    assert good.failure is None, repr(good.failure)
    assert not good.errors, good.errors
    assert good.closed is not None and good.closed["reason"] == "client_closed"
    assert len(good.finals) >= good.repetitions >= 2, (good.repetitions, good.finals)
    assert [f["seq"] for f in good.finals] == list(range(1, len(good.finals) + 1))
    assert max(good.latencies) < FINAL_LATENCY_BOUND_S, good.latencies
    print(f"good session final latency: median {statistics.median(good.latencies):.2f}s")
    # and the server let go of every fuzzing session
    deadline = time.monotonic() + 10
    while ws_server.registry.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ws_server.registry.sessions
    assert not ws_server.registry.connections


def test_text_frame_that_is_not_utf8_gets_the_contracts_answer(ws_server: ThreadedServer) -> None:
    async def run() -> None:
        client = FuzzClient(ws_server.url)
        await client.open()
        try:
            ws = await client._connect()
            await ws.send_frame(b'{"type": "ping", "id": "\xff"}', WSMsgType.TEXT)
            event = await client._next(ws)  # asserts a contract close code
            assert event is not None and event["type"] == "error" and event["code"] == "bad_request"
        finally:
            await client.aclose()

    asyncio.run(run())
