"""The turn detector's speculation: a final decoded at a pause is withdrawn the moment speech resumes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from fakes import FakeAsr
from support import make_settings

from session.doubles import ScriptedVad, Sink, services
from streamer.pipeline.asr import AsrRequest, AsrResult
from streamer.protocol import SessionConfig
from streamer.session.outbox import Outbox
from streamer.session.runtime import StreamSession

FRAME = np.zeros(512, dtype="<i2").tobytes()  # one 32 ms window at 16 kHz
SPEECH, PAUSE = 20, 6  # the default pause is 160 ms (5 windows); the utterance ends at 400 ms
LATE_PAUSE = 9  # 288 ms: a pause without a finished sentence is speculated on from 280 ms


@dataclass
class _StartedAsr(FakeAsr):
    """Says when its first model call has begun."""

    started: threading.Event = field(default_factory=threading.Event)

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.started.set()
        return super().transcribe_batch(requests)


def _outcomes(session: StreamSession) -> dict[str, float]:
    counter = session.services.metrics.speculations
    return {o: counter.labels(o)._value.get() for o in ("used", "wasted", "withdrawn")}


async def _settle(condition: object, tries: int = 50) -> None:
    """Let the loop run the cancelled decode's cleanup (no sleeping on the clock)."""
    for _ in range(tries):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)


async def test_a_speculation_is_withdrawn_from_the_queue_when_speech_resumes() -> None:
    asr = _StartedAsr(text="Hello there.", hang=True)
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * LATE_PAUSE + [0.9] * 3)
    async with services(asr=asr, vad=vad, settings=make_settings(batching=True)) as svc:
        # another session's decode holds the model, so this session's speculation waits in the queue
        blocker = asyncio.create_task(
            svc.asr_batcher.submit_final("other", ("transcribe", "en", ""), AsrRequest(np.zeros(1600)))
        )
        assert await asyncio.to_thread(asr.started.wait, 10), "the model thread has taken it"
        config = SessionConfig(language="en", interim_results=False)
        session = StreamSession("sess_spec", "key", config, svc)
        session.attach(Outbox(Sink(), maxsize=64))
        for _ in range(1 + SPEECH + LATE_PAUSE):
            await session.push_audio(FRAME)
        await _settle(lambda: svc.asr_batcher.depth[0] == 1)
        assert svc.asr_batcher.depth[0] == 1, "the pause queued a speculative decode"

        await session.push_audio(FRAME)  # speech resumes: that decode can no longer be the final
        await _settle(lambda: svc.asr_batcher.depth[0] == 0)
        assert svc.asr_batcher.depth[0] == 0, "withdrawn before the model ran it"
        assert _outcomes(session) == {"used": 0, "wasted": 0, "withdrawn": 1}

        asr.release()
        await blocker
        await session.abort()


async def test_a_speculation_of_the_whole_utterance_is_its_final() -> None:
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * 40)
    async with services(
        asr=FakeAsr(text="Hello there."), vad=vad, settings=make_settings(batching=True)
    ) as svc:
        config = SessionConfig(language="en", interim_results=False)
        session = StreamSession("sess_used", "key", config, svc)
        sink = Sink()
        outbox = Outbox(sink, maxsize=64)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        for _ in range(1 + SPEECH + 40):
            await session.push_audio(FRAME)
            await asyncio.sleep(0)
        await session.drain()
        await outbox.finish()
        await writer
    assert sink.types().count("transcript.final") == 1
    assert _outcomes(session) == {"used": 1, "wasted": 0, "withdrawn": 0}


async def _speculated_at_a_short_pause(words: str) -> float:
    """Speculative decodes fired at a 192 ms pause after ``words`` (its partial); speech resumes."""
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * PAUSE + [0.9] * 3)
    async with services(asr=FakeAsr(text=words), vad=vad, settings=make_settings(batching=True)) as svc:
        session = StreamSession("sess_gate", "key", SessionConfig(language="en"), svc)
        session.attach(Outbox(Sink(), maxsize=64))
        for _ in range(1 + SPEECH):
            await session.push_audio(FRAME)
            await _partials_done()
        for _ in range(PAUSE + 3):
            await session.push_audio(FRAME)
        await _settle(lambda: sum(_outcomes(session).values()) > 0)
        await session.abort()
    return sum(_outcomes(session).values())


async def test_a_pause_after_an_unfinished_phrase_does_not_speculate() -> None:
    assert await _speculated_at_a_short_pause("and then we went") == 0


async def test_a_pause_after_a_finished_sentence_speculates() -> None:
    assert await _speculated_at_a_short_pause("And then we went home.") == 1


async def test_a_long_pause_after_an_unfinished_phrase_speculates_late() -> None:
    vad = ScriptedVad([0.0] + [0.9] * SPEECH + [0.0] * 40)
    async with services(
        asr=FakeAsr(text="and then we went"), vad=vad, settings=make_settings(batching=True)
    ) as svc:
        session = StreamSession("sess_late", "key", SessionConfig(language="en"), svc)
        session.attach(Outbox(Sink(), maxsize=64))
        for i in range(1 + SPEECH + LATE_PAUSE):
            await session.push_audio(FRAME)
            await _partials_done()
            if i == SPEECH + PAUSE:
                assert svc.asr_batcher.depth[0] == 0 and sum(_outcomes(session).values()) == 0
        await session.clear()  # forgets the speculation: counted as withdrawn or wasted
        await session.abort()
    assert _outcomes(session)["withdrawn"] + _outcomes(session)["wasted"] == 1, "fired at 288 ms"


STEP = 100  # int16 levels between seconds


@dataclass
class _LevelsAsr(FakeAsr):
    """Reads each second's level back as its word (a word per second mostly inside the request); clips
    at 30 s as the engine does."""

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.batches.append(len(requests))
        return [AsrResult(text=_words(r.audio[: 30 * 16000]), language="en") for r in requests]


class _PassVad:
    """Scores everything silence and hands the audio on in windows (ScriptedVad makes up its own)."""

    def __init__(self) -> None:
        self._held = np.zeros(0, dtype=np.float32)

    def new_stream(self) -> _PassVad:
        return self

    def probabilities(self, audio: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        self._held = np.concatenate([self._held, audio])
        n = self._held.size // 512
        windows = [self._held[i * 512 : (i + 1) * 512] for i in range(n)]
        self._held = self._held[n * 512 :]
        return np.zeros(n, dtype=np.float32), windows


async def _partials_done() -> None:
    async with asyncio.timeout(10):
        while any("Partials." in repr(t) for t in asyncio.all_tasks()):  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.005)


def _words(audio: np.ndarray) -> str:
    levels = np.rint(audio * 32768 / STEP).astype(int) - 1
    values, counts = np.unique(levels[levels >= 0], return_counts=True)
    return " ".join(f"w{k}" for k, n in zip(values, counts, strict=True) if n > 8000)


async def test_a_partial_of_a_span_past_the_model_window_covers_all_of_it() -> None:
    """A manual turn of 45 s: its partials decode the closed 28 s window once and then the rest, so the
    latest partial says the whole span (decoding it whole, the engine heard its first 30 s only)."""
    seconds = 45
    async with services(asr=_LevelsAsr(), vad=_PassVad(), settings=make_settings(batching=False)) as svc:
        session = StreamSession("sess_long", "key", SessionConfig(language="en", interim_results=True), svc)
        session.retune(dataclasses.replace(svc.segmenter_config, gated=False, max_utterance_s=600.0))
        sink = Sink()
        outbox = Outbox(sink, maxsize=4096, max_bytes=1 << 24)
        writer = asyncio.create_task(outbox.run())
        session.attach(outbox)
        for i in range(seconds * 16000 // 512):
            level = (i * 512 // 16000 + 1) * STEP
            await session.push_audio(np.full(512, level, dtype="<i2").tobytes())
            if i % 31 == 30:  # about every second, the model keeps up: its partial is back
                await _partials_done()
        await session.drain()
        await outbox.finish()
        await writer
    partials = [json.loads(t) for t in sink.sent if json.loads(t)["type"] == "transcript.partial"]
    assert partials, sink.types()
    last = partials[-1]["text"].split()
    assert last == [f"w{k}" for k in range(len(last))] and len(last) >= seconds - 2, (
        last
    )  # past 30 s  # in order, past the first 30 s


@dataclass
class _MeteredAsr(FakeAsr):
    """Counts the seconds of audio it was asked to decode."""

    seconds: float = 0.0

    def transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[AsrResult]:
        self.seconds += sum(r.audio.size for r in requests) / 16000
        return [AsrResult(text=f"words {len(self.batches)}", language="en") for _ in requests]


async def test_partials_of_a_long_utterance_cost_its_length_not_its_square() -> None:
    """20 s of open speech with the model keeping up: at a fixed 500 ms cadence its 40 partials decode
    410 s of audio (the square of its length); stretched past 5 s, under half of that."""
    seconds, asr = 20, _MeteredAsr()
    async with services(asr=asr, vad=_PassVad(), settings=make_settings(batching=False)) as svc:
        session = StreamSession("sess_cost", "key", SessionConfig(language="en", interim_results=True), svc)
        session.retune(dataclasses.replace(svc.segmenter_config, gated=False, max_utterance_s=600.0))
        session.attach(Outbox(Sink(), maxsize=4096, max_bytes=1 << 24))
        for i in range(seconds * 16000 // 512):
            await session.push_audio(np.full(512, STEP, dtype="<i2").tobytes())
            if i % 15 == 14:  # about every half second, the partial asked for is back
                await _partials_done()
        await _partials_done()
        await session.abort()
    fixed = sum(0.5 * k for k in range(1, 2 * seconds + 1))  # 410 s
    assert 0 < asr.seconds < fixed / 2, asr.seconds


# ---- continuous speech: a long utterance ends at a pause whose decode ends a sentence

SENTENCE = 40  # 1.28 s of speech per sentence
GAP = 6  # 192 ms between sentences: under the 400 ms that ends an utterance on silence


async def _read_continuously(
    text: str, sentence_cut_s: float
) -> tuple[list[dict[str, object]], StreamSession]:
    """Three sentences with 192 ms gaps, then silence: the session's finals, in order."""
    script = [0.0] + ([0.9] * SENTENCE + [0.0] * GAP) * 2 + [0.9] * SENTENCE + [0.0] * 40
    settings = make_settings(batching=True, sentence_cut_s=sentence_cut_s)
    async with services(asr=FakeAsr(text=text), vad=ScriptedVad(script), settings=settings) as svc:
        session = StreamSession("sess_cut", "key", SessionConfig(language="en", interim_results=False), svc)
        async with _written(session) as sink:
            for i, p in enumerate(script):
                await session.push_audio(FRAME)
                if i and p > 0 and script[i - 1] == 0:  # speech resumed after a gap: let its verdict arrive
                    for _ in range(500):
                        if session.services.metrics.speculations.labels("used")._value.get() + sum(
                            _outcomes(session)[o] for o in ("wasted", "withdrawn")
                        ) >= i // (SENTENCE + GAP):
                            break
                        await asyncio.sleep(0.002)
    return _finals(sink), session


@contextlib.asynccontextmanager
async def _written(session: StreamSession) -> AsyncIterator[Sink]:
    """``session`` attached to an outbox written to a sink; on leaving, drained and every message sent."""
    sink = Sink()
    outbox = Outbox(sink, maxsize=256)
    writer = asyncio.create_task(outbox.run())
    session.attach(outbox)
    yield sink
    await session.drain()
    await outbox.finish()
    await writer


def _finals(sink: Sink) -> list[dict[str, object]]:
    return [m for m in map(json.loads, sink.sent) if m["type"] == "transcript.final"]


async def test_a_long_stream_is_cut_at_its_sentence_ending_pauses() -> None:
    finals, session = await _read_continuously("That was the end of it.", sentence_cut_s=1.0)
    assert len(finals) == 3, [(f["audio_start_ms"], f["audio_end_ms"]) for f in finals]
    # each sentence's final starts where the one before it was cut: nothing lost or doubled
    for before, after in itertools.pairwise(finals):
        assert before["audio_end_ms"] == after["audio_start_ms"]
    assert finals[0]["end_reason"] == "silence"
    assert _outcomes(session)["used"] == 3  # the two cuts' decodes and the last pause's are the finals


async def test_a_pause_inside_a_sentence_does_not_cut() -> None:
    finals, session = await _read_continuously("and then we went", sentence_cut_s=1.0)
    assert len(finals) == 1
    assert _outcomes(session)["wasted"] + _outcomes(session)["withdrawn"] == 2


async def test_an_utterance_shorter_than_the_cut_length_is_not_cut() -> None:
    finals, _ = await _read_continuously("That was the end of it.", sentence_cut_s=5.0)
    assert len(finals) == 1  # 4 s of speech with two short gaps: one utterance, as before


async def test_a_decode_slower_than_the_next_clause_still_cuts_at_its_own_pause() -> None:
    """Under load the first pause's decode is still running at the second pause: it is kept (the
    second is not speculated on), and when it comes back the utterance is cut at the first pause."""
    asr = _StartedAsr(text="That was the end of it.", hang=True)
    script = [0.0] + [0.9] * SENTENCE + [0.0] * GAP + [0.9] * SENTENCE + [0.0] * GAP + [0.9] * 10
    settings = make_settings(batching=True, sentence_cut_s=1.0)
    async with services(asr=asr, vad=ScriptedVad(script), settings=settings) as svc:
        session = StreamSession("sess_slow", "key", SessionConfig(language="en", interim_results=False), svc)
        async with _written(session) as sink:
            for _ in script:
                await session.push_audio(FRAME)
            assert await asyncio.to_thread(asr.started.wait, 10), "the first pause's decode is running"
            assert session.open_segment_id == 1 and sum(_outcomes(session).values()) == 0
            asr.release()
            for _ in range(500):
                if session.open_segment_id != 1:
                    break
                await asyncio.sleep(0.002)
    finals = _finals(sink)
    assert len(finals) == 2
    first_pause_end_ms = (1 + SENTENCE) * 32 + 128  # speech, then the 128 ms tail
    assert finals[0]["audio_end_ms"] == finals[1]["audio_start_ms"] == first_pause_end_ms
    assert _outcomes(session)["used"] == 1
