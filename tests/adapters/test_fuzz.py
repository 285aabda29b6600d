"""Property-based fuzzing of the vendor WebSockets: whatever a client sends, the server answers in the
vendor's error shape, keeps the session going (or closes it with a documented code) and never crashes.

One server (fake ASR, real Silero VAD) runs on its own loop in a thread for the module. Each example
opens a connection, plays a script of frames (arbitrary text and JSON, the vendor's events with garbage
fields, base64 that is and is not, binary audio of every size up to the frame limit), then a probe whose
answer proves the session is still served.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeAsr
from fuzz.frames import FRAMES_WITHIN_LIMITS, GARBAGE, JSON_VALUES, TEXT_FRAMES, Frame, Noise, Speech
from fuzz.threaded import ThreadedServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import API_KEY, make_settings
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

from streamer.pipeline.vad import SileroVad

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
READ_TIMEOUT_S = 10.0
OPENAI_TYPES = [
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.create",
    "conversation.item.create",
]
B64 = st.one_of(
    st.binary(max_size=4000).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=40),
    JSON_VALUES,
)
SESSIONS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["transcription", "realtime"]) | JSON_VALUES},
        optional={
            "audio": st.fixed_dictionaries(
                {},
                optional={
                    "input": st.fixed_dictionaries(
                        {},
                        optional={
                            "format": st.fixed_dictionaries(
                                {},
                                optional={
                                    "type": st.sampled_from(["audio/pcm", "audio/pcmu"]) | JSON_VALUES,
                                    "rate": st.sampled_from([8000, 24000, 48000])
                                    | st.integers()
                                    | JSON_VALUES,
                                },
                            ),
                            "turn_detection": st.none()
                            | st.fixed_dictionaries(
                                {"type": st.sampled_from(["server_vad", "semantic_vad"]) | JSON_VALUES},
                                optional={
                                    "threshold": st.floats() | JSON_VALUES,
                                    "silence_duration_ms": JSON_VALUES,
                                },
                            ),
                            "transcription": st.fixed_dictionaries(
                                {}, optional={"language": st.sampled_from(["en", "de", "xx"]) | JSON_VALUES}
                            ),
                        },
                    )
                },
            ),
            "include": JSON_VALUES,
        },
    ),
)
OPENAI_EVENTS = st.one_of(
    st.builds(lambda t, extra: {**extra, "type": t}, st.sampled_from(OPENAI_TYPES), GARBAGE | st.just({})),
    st.builds(lambda a: {"type": "input_audio_buffer.append", "audio": a}, B64),
    st.builds(lambda s: {"type": "session.update", "session": s}, SESSIONS),
    st.builds(lambda s: {"type": "transcription_session.update", "session": s}, JSON_VALUES),
).map(json.dumps)
OPENAI_SCRIPTS = st.lists(st.one_of(OPENAI_EVENTS, OPENAI_EVENTS, TEXT_FRAMES), min_size=1, max_size=12)
DEEPGRAM_TEXTS = st.one_of(
    st.builds(
        lambda t, extra: json.dumps({**extra, "type": t}),
        st.sampled_from(["KeepAlive", "Finalize", "Configure", "keepalive"]) | JSON_VALUES,
        GARBAGE | st.just({}),
    ),
    TEXT_FRAMES,
)
DEEPGRAM_SCRIPTS = st.lists(st.one_of(DEEPGRAM_TEXTS, FRAMES_WITHIN_LIMITS), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def server(silero: SileroVad) -> Iterator[ThreadedServer]:
    # a connection per example: the per-key session rate would refuse most of them
    running = ThreadedServer(
        make_settings(session_rate_per_key_per_min=0.0), asr_engine=FakeAsr(), vad=silero
    )
    running.start()
    yield running
    running.stop()


def _ws_url(server: ThreadedServer, path: str) -> str:
    return server.url.replace("http", "ws", 1) + path


def _send(ws: ClientConnection, frame: Frame) -> None:
    ws.send(frame.materialize() if isinstance(frame, Noise | Speech) else frame)


def _until(ws: ClientConnection, done: Any) -> list[dict[str, Any]]:
    """Messages until ``done(message)``; each one JSON."""
    seen: list[dict[str, Any]] = []
    while True:
        raw = ws.recv(timeout=READ_TIMEOUT_S)
        assert isinstance(raw, str)
        message = json.loads(raw)
        seen.append(message)
        if done(message):
            return seen


def _no_crash(server: ThreadedServer) -> None:
    assert server.loop_errors == []
    assert [r.getMessage() for r in server.error_logs] == []


@FUZZ
@given(script=OPENAI_SCRIPTS)
def test_realtime_events(server: ThreadedServer, script: list[str]) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with connect(_ws_url(server, "/v1/realtime?intent=transcription"), additional_headers=headers) as ws:
        assert _until(ws, lambda m: True)[0]["type"] == "session.created"
        for frame in script:
            ws.send(frame)
        ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "probe"}))
        seen = _until(ws, lambda m: m["type"] == "input_audio_buffer.cleared")
    for message in seen:
        assert isinstance(message.get("event_id"), str)
        if message["type"] == "error":
            error = message["error"]
            assert set(error) == {"type", "code", "message", "param", "event_id"}
            assert error["type"] == "invalid_request_error", error
    _no_crash(server)


@FUZZ
@given(script=DEEPGRAM_SCRIPTS)
def test_listen_messages(server: ThreadedServer, script: list[Frame]) -> None:
    headers = {"Authorization": f"Token {API_KEY}"}
    with connect(
        _ws_url(server, "/v1/listen?encoding=linear16&sample_rate=16000"), additional_headers=headers
    ) as ws:
        for frame in script:
            _send(ws, frame)
        ws.send(json.dumps({"type": "CloseStream"}))
        seen = _until(ws, lambda m: m["type"] == "Metadata")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=READ_TIMEOUT_S)
    for message in seen:
        assert message["type"] in ("Results", "Metadata", "Error", "SpeechStarted", "UtteranceEnd")
        if message["type"] == "Error":
            assert set(message) == {"type", "variant", "description"}
            assert message["variant"] in ("bad_request", "invalid_audio"), message
    _no_crash(server)
