"""One key's crafted audio must not take the model from the other keys (issue 23, item 4).

Reversed-speech fragments failed nearly every first decode and ran the whole fallback ladder (beam 5,
then five temperatures) on each utterance: ten times the model time of real speech, and three such
sessions of one key made admission refuse everyone. Now the ladder is paid from a budget per session and
per key, the batcher serves the least-served key first, and admission charges an overload to the key
that causes it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Sequence
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from faults.streams import eventually
from limits.conftest import EnergyVad, tone
from support import API_KEY, make_settings

from streamer.edge.handshake import REGISTRY
from streamer.guards.admission import Admission, AdmissionLimits, Refusal
from streamer.guards.load import FallbackBudget, LoadMeter, expected_load
from streamer.pipeline.asr import FALLBACK_LADDER, AsrRequest, AsrResult
from streamer.pipeline.batcher import BatcherSnapshot, MicroBatcher
from streamer.pipeline.batchqueue import BatchQueue, Job, Priority

HONEST_KEY = "honest-key-0123456789abcdef0123456789abcdef"
COST_S = 1.0  # model seconds the fake reports for each decode of crafted audio
FRAME = 16000  # 500 ms at 16 kHz
SILENCE = b"\x00\x00" * (16000 * 6 // 5)  # 1.2 s: the utterance ends (held pauses included)


class CraftedAudioAsr:
    """Real speech (a loud tone) decodes at once; crafted audio (a quiet one) fails every decode, each
    reporting :data:`COST_S` of model time. Records who asked for which decode."""

    name = "crafted"
    multilingual = False

    def __init__(self) -> None:
        self.decodes: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        results = []
        for request in requests:
            label = request.decode.label if request.decode else "greedy"
            honest = float(np.sqrt(np.mean(np.square(request.audio)))) > 0.15
            with self._lock:
                self.decodes.append(("honest" if honest else "hostile", label))
            if honest:
                results.append(AsrResult("Hello there.", "en", avg_logprob=-0.2, decode=label, model_s=0.05))
            else:
                results.append(AsrResult("mm hm", "en", avg_logprob=-2.5, decode=label, model_s=COST_S))
        return results

    def fallbacks(self, who: str) -> int:
        with self._lock:
            return sum(1 for w, label in self.decodes if w == who and label != "greedy")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fallback_budget_is_per_session_and_per_key_and_refills() -> None:
    clock = Clock()
    budget = FallbackBudget(clock, window_s=60.0)
    ratio = 0.5
    budget.record_speech("k", "s1", 2.0)  # 1 s of grace + 0.5 x 2 s of speech
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 1.5)
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 0.6)
    assert not budget.allows("k", "s1", ratio)  # the session spent 2.1 of its 2.0
    # another session of the key has its own budget, and the key's: 1 + 0.5 x 3 s - 2.1 = 0.4 left
    budget.record_speech("k", "s2", 1.0)
    assert budget.allows("k", "s2", ratio)
    budget.charge("k", "s2", 0.5)
    assert not budget.allows("k", "s2", ratio)  # its own 1.5 is not spent, the key's is
    assert budget.allows("other", "s3", ratio)  # another key is not charged for it
    clock.now += 61.0  # spending older than the window is forgotten
    assert budget.allows("k", "s1", ratio) and budget.allows("k", "s2", ratio)


def _final(name: str, tenant: str, key: Hashable, at: float) -> Job[str]:
    return Job(name, key, name, Priority.FINAL, at, tenant=tenant)


def test_the_least_served_key_leads_the_next_batch_whatever_is_queued_before_it() -> None:
    usage = {"hostile": 40.0, "honest": 0.5}
    queue: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.0, usage=lambda t: usage.get(t, 0.0))
    for i, decode in enumerate(FALLBACK_LADDER):  # six sessions' fallback decodes, one group each
        queue.push(_final(f"h{i}", "hostile", ("transcribe", "en", decode.label), at=i))
    for i in range(6):  # and their first decodes
        queue.push(_final(f"g{i}", "hostile", ("transcribe", "en", "default"), at=10 + i))
    queue.push(_final("mine", "honest", ("transcribe", "en", "default"), at=20))
    batch = queue.take(now=21)
    assert batch is not None
    # FIFO would run six fallback batches first; the honest final leads, the group filled round robin
    assert [j.payload for j in batch.jobs] == ["mine", "g0", "g1", "g2"]


async def test_an_honest_final_waits_for_at_most_the_call_in_progress() -> None:
    gate, order = threading.Event(), []

    def model(key: Hashable, payloads: list[str]) -> list[str]:
        order.append(tuple(payloads))
        if payloads == ["first"]:
            gate.wait(10)
        return payloads

    async with MicroBatcher("asr", model, max_batch=2, max_wait_s=0.0) as batcher:
        batcher.usage.charge("hostile", 30.0)  # what its fallback ladders cost lately
        first = asyncio.create_task(batcher.submit_final("h", "default", "first", tenant="hostile"))
        await eventually(lambda: bool(order), "the model thread to take the hostile call")
        hostile = [
            asyncio.create_task(batcher.submit_final(f"h{i}", d.label, f"h{i}", tenant="hostile"))
            for i, d in enumerate(FALLBACK_LADDER)
        ]
        await asyncio.sleep(0)  # the hostile jobs are queued first
        mine = asyncio.create_task(batcher.submit_final("me", "default", "mine", tenant="honest"))
        await eventually(lambda: batcher.depth[0] == len(hostile) + 1, "every final to be queued")
        gate.set()
        assert await asyncio.wait_for(mine, 5.0) == "mine"
        await asyncio.wait_for(asyncio.gather(first, *hostile), 5.0)
    assert order[1] == ("mine",), order  # the next call after the one running, not the eighth


class Speaker:
    """A session of one key that says the same audio again and again."""

    def __init__(self, http: aiohttp.ClientSession, server: TestServer, key: str) -> None:
        self.http, self.server, self.key = http, server, key

    async def open(self) -> Speaker:
        headers = {"Authorization": f"Bearer {self.key}"}
        async with self.http.post(self.server.make_url("/v1/sessions"), json={}, headers=headers) as r:
            body = await r.json()
            assert r.status == 201, body
        self.ws = await self.http.ws_connect(self.server.make_url(f"/v1/stream?token={body['token']}"))
        assert (await self.ws.receive_json(timeout=5.0))["type"] == "session.created"
        return self

    async def say(self, audio: bytes, n: int) -> list[str]:
        """The outcome of each utterance: ``final`` or the warning's code."""
        pcm = (audio + SILENCE) * n
        for i in range(0, len(pcm), FRAME):
            await self.ws.send_bytes(pcm[i : i + FRAME])
        outcomes: list[str] = []
        while len(outcomes) < n:
            msg = await self.ws.receive_json(timeout=10.0)
            assert msg["type"] != "error", msg
            if msg["type"] == "transcript.final":
                outcomes.append("final")
            elif msg["type"] == "warning" and msg["code"] != "lagging":  # partials skipped: fine
                outcomes.append(msg["code"])
        return outcomes


async def _start(http: aiohttp.ClientSession, server: TestServer, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(server.make_url("/v1/sessions"), json={}, headers=headers) as r:
        await r.read()
        return r.status


async def test_a_key_with_crafted_audio_keeps_to_its_budget_and_others_are_still_admitted(
    make_server: Any,
) -> None:
    engine = CraftedAudioAsr()
    server: TestServer = await make_server(
        make_settings(api_keys=(API_KEY, HONEST_KEY), max_sessions=8), asr_engine=engine, vad=EnergyVad()
    )
    registry = server.app[REGISTRY]
    metrics = registry.services.metrics
    crafted, utterances = tone(1.0, amplitude=0.1), 4
    async with aiohttp.ClientSession() as http:
        hostile = [await Speaker(http, server, API_KEY).open() for _ in range(3)]
        said = await asyncio.gather(*(s.say(crafted, utterances) for s in hostile))
        assert all(o == ["unrecognized_speech"] * utterances for o in said), said
        # the whole ladder would be 6 decodes per utterance (72); the key's budget is 1 s of grace plus
        # fallback_budget s per second of its speech, each session's likewise, each overdrawn by one decode
        speech_s = sum(session.speech_s for session in registry.sessions.values())
        ratio = registry.services.settings.fallback_budget
        spent = engine.fallbacks("hostile")
        assert spent <= (1 + ratio * speech_s) / COST_S + 3 < 6 * 3 * utterances / 3, (spent, speech_s)
        stopped = metrics.registry.get_sample_value(
            "streamer_decode_attempts_total", {"attempt": "budget_spent"}
        )
        assert stopped is not None and stopped >= 1, stopped

        # the model time measured is the hostile key's: it is refused another session, not everyone
        assert await _start(http, server, API_KEY) == 503
        honest = await Speaker(http, server, HONEST_KEY).open()
        assert await honest.say(tone(1.0), 1) == ["final"]
        for speaker in [*hostile, honest]:
            await speaker.ws.close()


def test_admission_charges_an_overload_to_the_key_that_causes_it() -> None:
    clock = Clock()
    meter = LoadMeter(clock, min_speech_s=1.0)
    meter.record(speech_s=4.0, key="hostile")
    meter.record(model_s=12.0, key="hostile")  # its fallback ladders
    meter.record(speech_s=2.0, key="honest")
    meter.record(model_s=0.6, key="honest")
    admission = Admission(
        AdmissionLimits(max_sessions=10, saturation_latency_s=1.2, session_rate_per_key_per_min=0)
    )
    snapshot = BatcherSnapshot(
        hung=False, finals_pending=0, max_pending_finals=256, latency_ewma_s=0.0, last_batch_at=0.0
    )

    def check(key: str) -> None:
        admission.check_capacity(
            draining=False,
            live_sessions=3,
            batcher=snapshot,
            breaker_state=None,
            load_with_new=expected_load([0.6] * 4, meter.cost_per_speech_s()),
            key_load=meter.key_load(key),
        )

    with pytest.raises(Refusal) as refused:
        check("hostile")
    assert refused.value.reason == "predicted_overload"
    check("honest")  # under its fair share while another key is far over its own: admitted
    check("newcomer")
    clock.now += 61.0  # a minute later the hostile key's spending is history
    meter.record(model_s=1.5, speech_s=1.0, key="honest")
    meter.record(model_s=1.5, speech_s=1.0, key="other")
    with pytest.raises(Refusal):
        check("newcomer")  # no key is over its share now: the load is everyone's
