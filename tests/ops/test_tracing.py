"""Traces: one utterance's span tree through a real server (the SDK's in-memory exporter), model-batch
spans shared by sessions, real OTLP export when the endpoint is set, and nothing at all when it is not."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import wave
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import API_KEY, base_url, make_settings, read_pcm16, silence, to_bytes

from streamer import tracing
from streamer.client import StreamerClient
from streamer.pipeline.asr import AsrRequest
from streamer.pipeline.batchqueue import Job, Priority

SPOKEN = "the red cat"


class EchoTranslator:
    """A translation engine that answers ``<target>:<text>`` (the server's wiring is under test)."""

    name = "echo"

    def source_languages(self) -> frozenset[str]:
        return frozenset({"en"})

    def target_languages(self) -> frozenset[str]:
        return frozenset({"es", "de"})

    def supports(self, source: str | None, target: str) -> bool:
        return source in (None, "en") and target in ("es", "de")

    def translate_batch(
        self,
        texts: Sequence[str],
        source: str,
        target: str,
        beam_size: int = 1,
        max_decoding_length: int = 256,
    ) -> list[str]:
        return [f"{target}:{t}" for t in texts]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)
    provider.shutdown()


def _attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


def _children(parent: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    ctx = parent.get_span_context()
    assert ctx is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == ctx.span_id]


async def test_one_utterance_yields_its_span_tree(make_server: Any, spans: InMemorySpanExporter) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr(text=SPOKEN), mt_engine=EchoTranslator())
    pcm = to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt1.wav")) + to_bytes(silence(1.0))
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        stream = await client.connect({"language": "en", "interim_results": False, "translate_to": ["es"]})
        async with stream:
            for i in range(0, len(pcm), 3200):
                await stream.ws.send_bytes(pcm[i : i + 3200])
            await stream.close_session()
            async with asyncio.timeout(20):
                while await stream.receive() is not None:
                    pass
    kinds = [e["type"] for _, e in stream.events]
    assert kinds.count("transcript.final") == 1 and kinds.count("translation.final") == 1, kinds

    finished = list(spans.get_finished_spans())
    (start,) = [s for s in finished if s.name == "session.start"]
    (utterance,) = [s for s in finished if s.name == "utterance"]
    # the utterance is a trace of its own, linked to the session's start
    assert utterance.parent is None
    assert [link.context.span_id for link in utterance.links] == [start.get_span_context().span_id]  # type: ignore[union-attr]
    assert _attr(utterance, "streamer.outcome") == "first_try"
    assert [e.name for e in utterance.events] == ["vad.end", "final"]
    children = _children(utterance, finished)
    assert sorted(s.name for s in children) == ["model.batch", "translate"]
    (asr_batch,) = [s for s in children if s.name == "model.batch"]
    assert _attr(asr_batch, "streamer.batcher") == "asr"
    assert _attr(asr_batch, "streamer.batch.size") == 1
    assert _attr(asr_batch, "streamer.batch.kind") == "final"
    assert _attr(asr_batch, "streamer.batch.padding") == 0.0  # alone in its batch
    (translate,) = [s for s in children if s.name == "translate"]
    assert list(_attr(translate, "streamer.targets")) == ["es"]
    (mt_batch,) = _children(translate, finished)
    assert (mt_batch.name, _attr(mt_batch, "streamer.batcher")) == ("model.batch", "mt")
    assert _attr(mt_batch, "streamer.batch.key") == str(("en", "es"))
    # the final came after VAD end, the translation inside the utterance
    assert utterance.start_time is not None and utterance.end_time is not None
    assert translate.end_time is not None and translate.end_time <= utterance.end_time

    # the session and request ids on every span of the session
    tree = [start, utterance, *children, mt_batch]
    assert {_attr(s, tracing.SESSION_ID) for s in tree} == {stream.info.session_id}
    request_ids = {_attr(s, tracing.REQUEST_ID) for s in tree}
    assert len(request_ids) == 1 and len(request_ids.pop()) == 32


async def _speak_to(surface: str, server: TestServer, pcm16k: bytes) -> None:
    """One utterance through a vendor surface, to its end."""
    base = base_url(server)
    async with aiohttp.ClientSession() as http:
        if surface == "transcriptions":
            out = io.BytesIO()
            with wave.open(out, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(16000)
                w.writeframes(pcm16k)
            form = aiohttp.FormData()
            form.add_field("model", "whisper-1")
            form.add_field("file", out.getvalue(), filename="a.wav")
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with http.post(f"{base}/v1/audio/transcriptions", data=form, headers=headers) as r:
                assert r.status == 200 and (await r.json())["text"] == SPOKEN
            return
        if surface == "deepgram":
            headers = {"Authorization": f"Token {API_KEY}"}
            ws = await http.ws_connect(
                f"{base}/v1/listen?encoding=linear16&sample_rate=16000", headers=headers
            )
            for i in range(0, len(pcm16k), 3200):
                await ws.send_bytes(pcm16k[i : i + 3200])
            await ws.send_str(json.dumps({"type": "CloseStream"}))
        else:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            ws = await http.ws_connect(f"{base}/v1/realtime?intent=transcription", headers=headers)
            for i in range(0, len(pcm16k), 4800):  # heard at 24 kHz: faster, still speech to the VAD
                audio = base64.b64encode(pcm16k[i : i + 4800]).decode()
                await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        async with asyncio.timeout(20):
            async for message in ws:
                if surface == "openai" and SPOKEN in message.data and "completed" in message.data:
                    await ws.close()
        assert ws.close_code in (1000, 1001, None)


@pytest.mark.parametrize("surface", ["deepgram", "openai", "transcriptions"])
async def test_vendor_sessions_are_traced_like_stream_sessions(
    make_server: Any, spans: InMemorySpanExporter, surface: str
) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr(text=SPOKEN))
    pcm = to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt1.wav")) + to_bytes(silence(1.0))
    await _speak_to(surface, server, pcm)
    finished = list(spans.get_finished_spans())
    (start,) = [s for s in finished if s.name == "session.start"]
    assert _attr(start, "streamer.surface") == surface
    utterances = [s for s in finished if s.name == "utterance"]
    assert utterances, [s.name for s in finished]
    for utterance in utterances:
        assert [link.context.span_id for link in utterance.links] == [start.get_span_context().span_id]  # type: ignore[union-attr]
        assert _attr(utterance, tracing.SESSION_ID) == _attr(start, tracing.SESSION_ID)
    assert any(s.name == "model.batch" for s in _children(utterances[0], finished))


def _job(
    session: str, seconds: float, priority: Priority, trace: object, submitted: float
) -> Job[AsrRequest]:
    request = AsrRequest(np.zeros(int(16000 * seconds), dtype=np.float32))
    return Job(session, ("transcribe", "en"), request, priority, submitted, trace=trace)


def test_a_batch_of_several_sessions_is_one_span_with_links(spans: InMemorySpanExporter) -> None:
    started = tracing.now()
    first = tracing.session_started(tracing.NOOP, "s1", "req-1", started, language="en")
    second = tracing.session_started(tracing.NOOP, "s2", "req-2", started, language="en")
    u1, u2 = first.utterance(1), second.utterance(7)
    assert u1 is not None and u2 is not None
    jobs = [
        _job("s1", 3.0, Priority.FINAL, u1, submitted=10.0),
        _job("s2", 1.0, Priority.FINAL, u2, submitted=10.2),
        _job("s2", 2.0, Priority.PARTIAL, None, submitted=10.3),
    ]
    tracing.model_batch("asr", jobs, started=10.5, seconds=0.25)

    (batch,) = [s for s in spans.get_finished_spans() if s.name == "model.batch"]
    assert batch.parent is not None and batch.parent.span_id == u1.span.get_span_context().span_id
    assert [link.context.span_id for link in batch.links] == [u2.span.get_span_context().span_id]
    assert _attr(batch, tracing.SESSION_ID) == "s1" and _attr(batch, tracing.REQUEST_ID) == "req-1"
    assert list(_attr(batch, "streamer.session_ids")) == ["s1", "s2"]
    assert (_attr(batch, "streamer.batch.size"), _attr(batch, "streamer.batch.finals")) == (3, 2)
    assert _attr(batch, "streamer.batch.kind") == "mixed"
    assert _attr(batch, "streamer.batch.padding") == pytest.approx(1 - 6.0 / 9.0, abs=1e-4)
    assert _attr(batch, "streamer.batch.queue_wait_s") == pytest.approx(0.5)
    assert batch.end_time is not None and batch.start_time is not None
    assert batch.end_time - batch.start_time == pytest.approx(0.25e9, rel=1e-3)

    # a rejected utterance ends with its reason, an abandoned one when the session goes
    first.done(1, "no_speech")
    second.close()
    outcomes = {
        _attr(s, tracing.SESSION_ID): _attr(s, "streamer.outcome")
        for s in spans.get_finished_spans()
        if s.name == "utterance"
    }
    assert outcomes == {"s1": "no_speech", "s2": "session_ended"}


HOOKS_WHILE_OFF = """
from streamer import tracing
trace = tracing.session_started(tracing.NOOP, "s", "r", tracing.now(), language="en")
assert trace is tracing.NOOP and trace.utterance(1) is None and tracing.current_parent() is None
trace.vad_end(1, 100); trace.final(1, 1, 0.1); trace.translating(1, ["es"]); trace.translated(1)
trace.done(1, "final"); trace.close(); tracing.model_batch("asr", [], 0.0, 0.1)
"""
# the product without the otel extra: every opentelemetry import fails (redis-py tolerates that too)
WITHOUT_OTEL = """
import sys
class NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(name)
sys.meta_path.insert(0, NoOtel())
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tracing_off_costs_no_sdk_import() -> None:
    code = (
        "import sys\nimport streamer.app\nfrom streamer import tracing\n"
        "assert tracing.configure_from_env() is False and not tracing.enabled()\n"
        + HOOKS_WHILE_OFF
        + "sdk = ('opentelemetry.sdk.trace', 'opentelemetry.exporter')\n"
        "loaded = [m for m in sys.modules if m.startswith(sdk)]\n"
        "assert not loaded, loaded\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr


def test_the_server_runs_without_the_otel_extra() -> None:
    """Even with the endpoint set: a warning that says what to install, and no-op hooks."""
    code = (
        WITHOUT_OTEL
        + "import logging\nlogging.basicConfig()\nimport streamer.app\nfrom streamer import tracing\n"
        "assert tracing.configure_from_env() is False\n" + HOOKS_WHILE_OFF
    )
    result = _python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318")
    assert result.returncode == 0, result.stderr
    assert "OpenTelemetry is not installed (the otel extra)" in result.stderr


async def test_spans_go_over_otlp_when_the_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OTLP/HTTP export to a local collector stand-in that decodes what it receives."""
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    collector = TestServer(app)
    await collector.start_server()
    monkeypatch.setenv(tracing.ENDPOINT_ENV, base_url(collector))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "streamer-test")
    try:
        assert tracing.configure_from_env()
        trace = tracing.session_started(tracing.NOOP, "s-otlp", "req-otlp", tracing.now(), language="en")
        assert trace.utterance(1) is not None
        trace.done(1, "final")
        assert await asyncio.to_thread(tracing.flush, 10.0)
    finally:
        await asyncio.to_thread(tracing.shutdown)  # the exporter's thread stops, tracing is off again
        await collector.close()
    assert not tracing.enabled()

    exported = [
        (span.name, {a.key: a.value.string_value for a in span.attributes}, rs.resource)
        for request in received
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert sorted(name for name, _, _ in exported) == ["session.start", "utterance"]
    for _, attributes, resource in exported:
        assert attributes[tracing.SESSION_ID] == "s-otlp" and attributes[tracing.REQUEST_ID] == "req-otlp"
        service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
        assert service == "streamer-test"
