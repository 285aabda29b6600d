"""What an operator sees: liveness, readiness with its reasons, Prometheus metrics that move with
traffic, request ids, and logs that name the session but never a credential or what was said."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from prometheus_client.parser import text_string_to_metric_families
from support import API_KEY, base_url, make_settings, read_pcm16, silence, to_bytes

from streamer.client import Stream, StreamerClient
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.logs import JsonFormatter

ServerFactory = Callable[..., Awaitable[TestServer]]
SPOKEN = "zebra quartz nebula"  # what the fake model "hears": must never reach a log line
UTTERANCE = to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt1.wav")) + to_bytes(silence(1.0))
AUDIO_S = len(UTTERANCE) / 2 / 16000
REQUIRED_METRICS = {
    "streamer_active_sessions": "gauge",
    "streamer_audio_seconds": "counter",
    "streamer_queue_depth": "gauge",
    "streamer_batch_size": "histogram",
    "streamer_inference_seconds": "histogram",
    "streamer_final_latency_seconds": "histogram",
    "streamer_partials_dropped": "counter",
    "streamer_breaker_open": "gauge",
    "streamer_refusals": "counter",
}


async def _speak(stream: Stream, pcm: bytes = UTTERANCE, close: bool = True) -> list[dict[str, Any]]:
    """Send ``pcm`` at 10x real time (then ``session.close``); every event up to the close."""

    async def send() -> None:
        with contextlib.suppress(ConnectionError):  # the server may close first (a failing model)
            for i in range(0, len(pcm), 3200):
                await stream.ws.send_bytes(pcm[i : i + 3200])
                await asyncio.sleep(0.01)
            if close:
                await stream.close_session()

    sender = asyncio.create_task(send())
    events = []
    async with asyncio.timeout(20):
        while (event := await stream.receive()) is not None:
            events.append(event)
            if not close and event["type"] == "transcript.final":
                break
    await sender
    return events


async def _get(server: TestServer, path: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url(server)}{path}", headers=headers) as r:
        return r.status, await r.text(), dict(r.headers)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` from a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    status, body, _ = await _get(server, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def test_readyz_lists_the_failing_check_when_the_breaker_opens(make_server: ServerFactory) -> None:
    settings = make_settings(breaker_threshold=2, breaker_reset_s=60.0)
    server = await make_server(settings, asr_engine=FakeAsr(fail=True))
    status, body, _ = await _get(server, "/readyz")
    assert status == 200 and json.loads(body) == {
        "status": "ready",
        "checks": {"asr_model": "ok", "breaker_asr": "ok", "state_backend": "ok"},
    }
    breaker = server.app[SERVICES].breakers["asr"]
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        for _ in range(4):  # each failing utterance is at least one failed model call
            if breaker.state.value == "open":
                break
            events = await _speak(await client.connect({"language": "en", "interim_results": False}))
            assert [e["code"] for e in events if e["type"] == "error"] == ["model_unavailable"]
    status, body, _ = await _get(server, "/readyz")
    ready = json.loads(body)
    assert status == 503 and ready["status"] == "not_ready"
    # the failing check says why; the others still say ok
    assert ready["checks"] == {"asr_model": "ok", "breaker_asr": "open", "state_backend": "ok"}
    _, text, _ = await _get(server, "/metrics")
    assert _samples(text)[("streamer_breaker_open", (("breaker", "asr"),))] == 1.0


async def test_metrics_move_with_traffic(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr(text=SPOKEN))
    status, text, headers = await _get(server, "/metrics")
    # the text exposition format (prometheus_client names its version; 0.0.4 or 1.0.0)
    assert status == 200 and re.match(r"text/plain; version=\d", headers["Content-Type"])
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {name: families.get(name) for name in REQUIRED_METRICS} == REQUIRED_METRICS
    before = _samples(text)
    assert before[("streamer_audio_seconds_total", ())] == 0.0

    finals = 0
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        for _ in range(2):
            events = await _speak(await client.connect({"language": "en"}))
            finals += sum(1 for e in events if e["type"] == "transcript.final")
        # a refused upgrade is counted by reason
        async with client.http.get(  # type: ignore[union-attr]
            f"{base_url(server)}/v1/stream?token=not-a-token"
        ) as r:
            assert r.status == 401

    _, text, _ = await _get(server, "/metrics")
    after = _samples(text)
    assert finals == 2
    assert after[("streamer_audio_seconds_total", ())] == pytest.approx(2 * AUDIO_S)
    assert after[("streamer_sessions_total", ())] == 2
    assert after[("streamer_active_sessions", ())] == 0  # both closed
    assert after[("streamer_finals_total", ())] == finals
    assert after[("streamer_final_latency_seconds_count", ())] == finals
    assert 0 < after[("streamer_final_latency_seconds_sum", ())] < 2 * finals
    assert after[("streamer_batch_size_count", (("batcher", "asr"),))] >= finals
    assert after[("streamer_inference_seconds_count", (("batcher", "asr"),))] >= finals
    assert after[("streamer_queue_depth", (("batcher", "asr"), ("priority", "final")))] == 0
    assert after[("streamer_queue_depth", (("batcher", "asr"), ("priority", "partial")))] == 0
    assert after[("streamer_refusals_total", (("reason", "unauthorized"),))] == 1


async def test_each_refusal_is_counted_once_by_its_finest_reason(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(max_sessions=1), asr_engine=FakeAsr())
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        # both starts are admitted (nothing is live yet); the second socket finds the one slot taken
        first, second = await client.create_session(), await client.create_session()
        http = client.http
        assert http is not None
        held = await http.ws_connect(f"{base_url(server)}/v1/stream?token={first.token}")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{base_url(server)}/v1/stream?token={second.token}")
        assert refused.value.status == 503
        await held.close()
    _, text, _ = await _get(server, "/metrics")
    refusals = {k[1]: v for k, v in _samples(text).items() if k[0] == "streamer_refusals_total"}
    assert refusals == {(("reason", "max_sessions"),): 1}, refusals


async def test_request_id_is_honoured_or_issued(make_server: ServerFactory) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr())
    for path in ("/healthz", "/v1/models", "/openapi.json"):
        _, _, headers = await _get(server, path, **{"X-Request-ID": "trace-42/abc"})
        assert headers["X-Request-ID"] == "trace-42/abc"
    issued = [(await _get(server, "/healthz"))[2]["X-Request-ID"] for _ in range(2)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in issued) and issued[0] != issued[1]
    # errors carry it too
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url(server)}/v1/sessions", headers={"X-Request-ID": "err-7"}) as r:
            assert r.status == 401 and r.headers["X-Request-ID"] == "err-7"


# the modules whose log records are about one session
SESSION_LOGGERS = ("streamer.edge.socket", "streamer.session.runtime", "streamer.session.registry")


async def test_logs_name_the_session_and_never_a_secret(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = await make_server(make_settings(resume_window_s=0.3), asr_engine=FakeAsr(text=SPOKEN))
    secrets: list[str] = [API_KEY, SPOKEN]
    sessions: list[str] = []
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        # a normal session
        stream = await client.connect({"language": "en"})
        secrets.append(stream.info.token)
        sessions.append(stream.info.session_id)
        assert any(e["type"] == "transcript.final" for e in await _speak(stream))
        # one closed by the server for a bad frame (logged: "closing session")
        stream = await client.connect({"language": "en"})
        secrets.append(stream.info.token)
        sessions.append(stream.info.session_id)
        await stream.ws.send_bytes(bytes(16000 * 2 * 2))
        while await stream.receive(timeout=10) is not None:
            pass
        assert stream.close_code == 1009
        # one dropped mid-stream (parked, then released when the window ends)
        stream = await client.connect({"language": "en"})
        secrets.append(stream.info.token)
        sessions.append(stream.info.session_id)
        await _speak(stream, close=False)
        await stream.ws.close()
    registry = server.app[REGISTRY]
    deadline = time.monotonic() + 5
    while registry.parked or registry.sessions:
        assert time.monotonic() < deadline, "the parked session was not released"
        await asyncio.sleep(0.05)

    # aiohttp's access log is left out: `streamer serve` turns it off, and its request lines would hold
    # the ?token= of every upgrade (which is why clients can send the token as a subprotocol instead)
    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    assert records
    formatter = JsonFormatter()
    for record in records:
        line = formatter.format(record)
        for secret in secrets:
            assert secret not in line, f"{record.name}: {line}"
    about_sessions = [r for r in records if r.name in SESSION_LOGGERS]
    for record in about_sessions:
        assert getattr(record, "session_id", None) in sessions, (record.name, record.getMessage())
        assert json.loads(formatter.format(record))["session_id"] in sessions
    named = {getattr(r, "session_id", None) for r in about_sessions}
    assert set(sessions[1:]) <= named  # the closed and the parked session were logged, by id
