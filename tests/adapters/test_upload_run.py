"""An upload's sessions are carried by the same runner as a socket's (issue 22, item 5): the registry's
attachment is a :class:`SessionRun`, its end goes through the runner's steps (ending, detach, quota
settlement, slot release), and its finals reach the answer as the session's own messages, never encoded
to JSON and parsed back."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from faults.streams import eventually
from limits.conftest import tone
from support import API_KEY, make_settings

from streamer.adapters.upload import Upload
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.protocol import ServerMessage, TranscriptFinal
from streamer.session.ending import Ending
from streamer.session.outbox import Outbox, Reply
from streamer.session.quota import AudioQuota
from streamer.session.run import SessionRun

from .conftest import http_base, start
from .uploads import SLOW, serving, wav_of

BEARER = {"Authorization": f"Bearer {API_KEY}"}
URL = "/v1/audio/transcriptions"


def _utterances(count: int, gap_s: float = 1.5) -> bytes:
    """``count`` tones (speech to ``EnergyVad``), each followed by silence that ends its utterance."""
    return b"".join(tone(1.0) + bytes(int(gap_s * 16000) * 2) for _ in range(count))


def _form(body: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", io.BytesIO(body), filename="a.wav")
    return form


async def _post(http: aiohttp.ClientSession, server: TestServer, body: bytes) -> tuple[int, Any]:
    async with http.post(http_base(server) + URL, data=_form(body), headers=BEARER) as r:
        return r.status, json.loads(await r.text() or "null")


class _Runs:
    """Every upload run the registry attached, and how each ended (kept after the registry lets go)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[SessionRun] = []
        attach = SessionRun.attach

        def spy(run: SessionRun, last_seq: int | None = None) -> Any:
            self.runs.append(run)
            return attach(run, last_seq)

        monkeypatch.setattr(SessionRun, "attach", spy)

    def endings(self) -> list[Ending | None]:
        return [run.ending for run in self.runs]


async def test_an_uploads_finals_reach_its_answer_as_the_sessions_own_messages(
    servers: list[TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox delivers the typed final: what the collector hears is the very object the session
    queued (the old outbox sent JSON text, and the upload parsed a new final back from it)."""
    queued: list[ServerMessage | Reply] = []
    put = Outbox.put

    async def queue(outbox: Outbox, message: ServerMessage | Reply) -> None:
        queued.append(message)
        await put(outbox, message)

    heard: list[TranscriptFinal] = []
    hear = Upload.heard

    async def collect(upload: Upload, final: TranscriptFinal) -> None:
        heard.append(final)
        await hear(upload, final)

    monkeypatch.setattr(Outbox, "put", queue)
    monkeypatch.setattr(Upload, "heard", collect)
    server = await start(servers, FakeAsr(text="hello world"))
    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, server, wav_of(_utterances(2)))
    assert status == 200, body
    assert body["text"] == "hello world hello world"
    assert len(heard) == 2
    assert all(any(final is message for message in queued) for final in heard)


async def test_a_model_failure_mid_upload_ends_it_through_the_runner(
    servers: list[TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model fails: the answer is the model's failure, and the run's end releases the session, the
    key's slot and settles the audio it was charged."""
    runs = _Runs(monkeypatch)
    charged: list[float] = []
    charge = AudioQuota.charge

    async def count(quota: AudioQuota, seconds: float) -> None:
        charged.append(seconds)
        await charge(quota, seconds)

    settles: list[AudioQuota] = []
    settled = asyncio.Event()
    settle = AudioQuota.settle

    async def settling(quota: AudioQuota) -> None:
        await settle(quota)
        settles.append(quota)
        if len(settles) == 2:  # the run's end, and the upload's for audio charged before its sessions
            settled.set()

    monkeypatch.setattr(AudioQuota, "charge", count)
    monkeypatch.setattr(AudioQuota, "settle", settling)
    # one session per key: the slot must be free again for the next request
    server = await start(servers, FakeAsr(fail=True), api_key_tier="free")
    services, registry = server.app[SERVICES], server.app[REGISTRY]
    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, server, wav_of(_utterances(3)))
    assert status == 503, body
    assert body["error"]["code"] == "model_unavailable", body
    (ending,) = runs.endings()
    assert ending is not None and ending.error is not None and ending.error.code == "model_unavailable"
    assert not ending.finalize
    await eventually(lambda: not registry.sessions and not registry.connections, "the session's release")
    key_id = runs.runs[0].session.key_id
    assert await services.backend.active_sessions(key_id) == 0
    assert len(registry.endings) == 0
    # settled: every second taken in is recorded, the last one charged on credit too (the quota is
    # charged in steps of a second; the rest at the end)
    assert sum(charged) > 0
    await asyncio.wait_for(settled.wait(), 5)  # (the settlements are tasks of the registry's)
    assert await services.backend.audio_used(key_id) == pytest.approx(sum(charged))


async def test_shutdown_mid_upload_answers_503_and_detaches_through_the_runner(
    servers: list[TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _Runs(monkeypatch)
    server = await start(servers, FakeAsr(), **SLOW)
    registry = server.app[REGISTRY]
    async with aiohttp.ClientSession() as http:
        upload = asyncio.create_task(_post(http, server, wav_of(bytes(60 * 16000 * 2))))
        await eventually(lambda: len(registry.connections) == 1, "the upload to be attached")
        (run,) = registry.connections.values()
        assert isinstance(run, SessionRun)
        closing = asyncio.create_task(server.close())
        async with asyncio.timeout(10):
            status, body = await upload
        await closing
    assert status == 503, body
    assert body["error"]["code"] == "overloaded"
    (ending,) = runs.endings()
    assert ending is not None and ending.reason == "server_shutdown"
    assert not registry.sessions and not registry.connections and len(registry.endings) == 0


async def test_a_client_gone_mid_upload_releases_everything_through_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = _Runs(monkeypatch)
    async with serving(make_settings(api_key_tier="free", **SLOW)) as (app, base):
        registry, services = app[REGISTRY], app[SERVICES]
        async with aiohttp.ClientSession() as http:
            posting = asyncio.create_task(
                http.post(base + URL, data=_form(wav_of(_utterances(20))), headers=BEARER)
            )
            await eventually(lambda: len(registry.connections) == 1, "the upload to be attached")
            posting.cancel()
            await asyncio.wait({posting})
        await eventually(lambda: not registry.sessions and not registry.connections, "the upload to stop")
        (run,) = runs.runs
        assert run.ending is not None and not run.ending.finalize and not run.ending.farewell
        await eventually(lambda: len(registry.endings) == 0, "the run's end to be over")
        assert await services.backend.active_sessions(run.session.key_id) == 0
