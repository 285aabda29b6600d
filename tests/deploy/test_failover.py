"""An instance killed (SIGKILL) mid-sentence behind HAProxy: its sessions resume on the others, once.

Three ``streamer serve`` instances on one Redis behind HAProxy (deploy/haproxy/haproxy.cfg), the real
model, several sessions streaming the realistic corpus (tests/fixtures/corpus/clean.wav: six sentences
with pauses, their times in manifest.json) in step. In the middle of a sentence the instance holding the
most sessions is killed without warning: it parks nothing. Each of its clients notices the drop, resumes
through the balancer (which lands on a live instance) and sends again the audio after its last final.
Every session must end with every sentence transcribed exactly once, in order, with seq 1..N and times
that match the audio; the sessions on the other instances must not notice anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from faults.streams import CHUNK, of_type
from support import FIXTURES, read_pcm16, to_bytes

from deploy.conftest import StartCluster
from streamer.client import ClientError, Stream, StreamerClient

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SESSIONS = 6  # two per instance (least-connections balancing, connected one after another)
SPEED = 2.5  # x real time, every session in step
KILL_IN = "s02"  # the sentence in flight when the instance dies
RESUME_TIMEOUT_S = 30.0


def _corpus() -> tuple[bytes, list[dict[str, Any]]]:
    manifest = json.loads((FIXTURES / "corpus" / "manifest.json").read_text())
    item = next(i for i in manifest["items"] if i["id"] == "clean")
    pcm = to_bytes(read_pcm16(str(Path("corpus") / item["file"])))
    return pcm, list(item["sentences"])


@dataclass
class Speaker:
    """One session's client: a microphone sending in step through the first stream (which forwards to
    the stream that resumed it), and a listener that resumes through the balancer when the socket dies."""

    client: StreamerClient
    stream: Stream
    events: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    done_sending: bool = False
    close_sent: bool = False

    async def send(self, pcm: bytes, t0: float) -> None:
        """Each 100 ms chunk at its time, through the drop: a chunk whose send fails is kept in the
        stream's buffer and sent by the resume."""
        first = self.stream
        for i in range(0, len(pcm), CHUNK):
            await asyncio.sleep(max(0.0, t0 + i / 2 / 16000 / SPEED - time.monotonic()))
            with contextlib.suppress(ConnectionError):
                await first.send_audio(pcm[i : i + CHUNK])
        self.done_sending = True
        await self._close()

    async def _close(self) -> None:
        with contextlib.suppress(ConnectionError):  # else the listener sends it again once resumed
            await self.stream.close_session()
            self.close_sent = True

    async def listen(self) -> None:
        while True:
            event = await self.stream.receive(timeout=90)
            if event is not None:
                self.events.append(event)
                if event["type"] == "session.closed":
                    return
                continue
            self.stream = await self._resume()
            self.resumes += 1
            if self.done_sending and not self.close_sent:
                await self._close()

    async def _resume(self) -> Stream:
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while True:
            try:
                return await self.client.resume(self.stream)
            except ClientError as e:
                if e.status == 404:
                    raise
                error: Exception = e
            except (aiohttp.ClientError, ConnectionError) as e:
                error = e  # the balancer had not seen the instance die yet, or it still held the session
            if time.monotonic() > deadline:
                raise AssertionError(f"no resume within {RESUME_TIMEOUT_S}s: {error!r}")
            await asyncio.sleep(0.3)


def _check_exactly_once(events: list[dict[str, Any]], sentences: list[dict[str, Any]]) -> None:
    finals = of_type(events, "transcript.final")
    assert [f["seq"] for f in finals] == list(range(1, len(finals) + 1)), finals
    for sentence in sentences:
        # the finals whose audio covers most of this sentence: exactly one (two would be a duplicate)
        covering = [
            f
            for f in finals
            if min(f["audio_end_ms"], sentence["end_ms"]) - max(f["audio_start_ms"], sentence["start_ms"])
            > 0.5 * (sentence["end_ms"] - sentence["start_ms"])
        ]
        assert len(covering) == 1, (sentence["text"], covering, finals)
        words = str(covering[0]["text"]).lower()
        heard = [w for w in sentence["content_words"] if w in words]
        assert len(heard) >= len(sentence["content_words"]) // 2, (sentence["text"], covering[0]["text"])
    for f in finals:  # and no final of audio that held no sentence
        assert any(
            f["audio_start_ms"] < s["end_ms"] and s["start_ms"] < f["audio_end_ms"] for s in sentences
        ), (f, finals)
    closed = events[-1]
    assert closed["type"] == "session.closed" and closed["finals"] == len(finals), closed


@pytest.mark.timeout(240)
async def test_sigkill_mid_sentence_every_session_resumes_elsewhere_exactly_once(
    make_cluster: StartCluster,
) -> None:
    pcm, sentences = _corpus()
    in_flight = next(s for s in sentences if s["id"] == KILL_IN)
    kill_at_ms = (in_flight["start_ms"] + in_flight["end_ms"]) / 2
    async with make_cluster(3, STREAMER_RESUME_WINDOW_S="60") as cluster, aiohttp.ClientSession() as http:
        async with StreamerClient(cluster.url, api_key=cluster.api_key) as client:
            speakers = [Speaker(client, await client.connect({"language": "en"})) for _ in range(SESSIONS)]
            active = await cluster.wait_active(http, SESSIONS)
            victim = max(cluster.instances, key=lambda i: active.get(i.name, -1))
            held = active[victim.name]
            t0 = time.monotonic() + 0.2
            tasks = [asyncio.create_task(s.send(pcm, t0)) for s in speakers]
            tasks += [asyncio.create_task(s.listen()) for s in speakers]
            try:
                await asyncio.sleep(max(0.0, t0 + kill_at_ms / 1000 / SPEED - time.monotonic()))
                victim.send_signal(signal.SIGKILL)
                rc = await victim.wait_exit(timeout=10)
                async with asyncio.timeout(120):
                    await asyncio.gather(*tasks)
            except (AssertionError, TimeoutError) as e:
                raise AssertionError(f"{e!r}\n{cluster.diagnostics()}") from e
            finally:
                for task in tasks:
                    task.cancel()
                for speaker in speakers:
                    await speaker.stream.ws.close()

    assert rc == -signal.SIGKILL
    resumed = [s for s in speakers if s.resumes]
    # exactly the killed instance's sessions resumed (once each); the others never noticed
    assert held >= 1 and len(resumed) == held, ([s.resumes for s in speakers], held)
    assert all(s.resumes == 1 for s in resumed), [s.resumes for s in speakers]
    for speaker in speakers:
        assert not of_type(speaker.events, "error"), speaker.events
        _check_exactly_once(speaker.events, sentences)
