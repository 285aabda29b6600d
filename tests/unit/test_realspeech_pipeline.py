"""Pipeline pieces that real speech needs: held pauses, narrowband thresholds, the VAD energy gate,
silent padding, withdrawn speculations and the open-utterance buffer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from streamer.pipeline.asr import AsrResult
from streamer.pipeline.batchqueue import BatchQueue, Job, Priority
from streamer.pipeline.fallback import ends_sentence
from streamer.pipeline.segmenter import Ended, Event, Paused, Segmenter, SegmenterConfig
from streamer.pipeline.vad import HANGOVER, WINDOW, SileroVad

SPEECH, SILENCE = 0.9, 0.05
CONFIG = SegmenterConfig(
    start_ms=64, min_speech_ms=160, pre_roll_ms=128, end_silence_ms=320, pause_ms=160, tail_ms=64, hold_ms=320
)  # end after 10 silent windows, pause after 5, a hold adds 10


def feed(seg: Segmenter, probs: Sequence[float], first: int = 0) -> list[Event]:
    windows = [np.full(WINDOW, float(first + k), dtype=np.float32) for k in range(len(probs))]
    return seg.feed(np.asarray(probs, dtype=np.float32), windows)


def test_a_held_pause_ends_the_utterance_only_after_the_extra_silence() -> None:
    seg = Segmenter(CONFIG)
    events = feed(seg, [SPEECH] * 20 + [SILENCE] * 5)
    paused = [e for e in events if isinstance(e, Paused)]
    assert len(paused) == 1
    assert seg.hold(paused[0].segment_id, paused[0].utterance.end_sample)
    assert not [e for e in feed(seg, [SILENCE] * 9, 25) if isinstance(e, Ended)]  # would end here unheld
    ended = [e for e in feed(seg, [SILENCE] * 11, 34) if isinstance(e, Ended)]
    assert len(ended) == 1 and ended[0].utterance is not None


def test_speech_after_a_held_pause_clears_the_hold() -> None:
    seg = Segmenter(CONFIG)
    events = feed(seg, [SPEECH] * 20 + [SILENCE] * 5)
    pause = next(e for e in events if isinstance(e, Paused))
    assert seg.hold(pause.segment_id, pause.utterance.end_sample)
    feed(seg, [SPEECH] * 10 + [SILENCE] * 10, 25)  # the next pause is not held: it ends at 10 windows
    assert seg.open_segment_id is None


def test_a_hold_for_a_stale_pause_is_refused() -> None:
    seg = Segmenter(CONFIG)
    events = feed(seg, [SPEECH] * 20 + [SILENCE] * 5)
    pause = next(e for e in events if isinstance(e, Paused))
    feed(seg, [SPEECH] * 5 + [SILENCE] * 5, 25)  # speech resumed: the old pause's utterance is outdated
    assert not seg.hold(pause.segment_id, pause.utterance.end_sample)


def test_open_audio_is_the_windows_so_far_in_order_across_buffer_growth() -> None:
    seg = Segmenter(CONFIG)
    feed(seg, [SPEECH] * 3)
    sizes = []
    for step in range(40):  # past the first buffer (64 windows) and its doubling
        feed(seg, [SPEECH] * 3, 3 + step * 3)
        utt = seg.open_audio()
        assert utt is not None
        ids = utt.audio.reshape(-1, WINDOW)[:, 0]
        first = int(ids[0])
        assert ids.tolist() == list(range(first, first + ids.size))
        sizes.append(ids.size)
    assert sizes == sorted(sizes) and sizes[-1] > 64


def test_narrowband_input_gets_lower_thresholds() -> None:
    wide = SegmenterConfig()
    narrow = wide.for_input_rate(8000)
    assert wide.for_input_rate(16000) is wide
    assert narrow.start_threshold < 0.35 < wide.start_threshold  # telephone speech scores 0.35-0.5
    assert narrow.end_threshold < wide.end_threshold


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("When the rain stopped, we walked home.", True),
        ("Can you hear me?", True),
        ("When the rain stopped,", False),
        ("when the rain stopped", False),
        ("When the rain stopped. When the rain stopped. When the rain stopped.", False),  # a loop
        ("When the rain stopped.", False),  # Whisper's full stop on a clause cut at its comma
        ("If you need help with the boxes, just let me know.", True),
        ("I went to the shop and.", False),
    ],
)
def test_ends_sentence(text: str, ends: bool) -> None:
    audio = np.full(16000 * 3, 0.05, dtype=np.float32)
    result = AsrResult(text, "en", avg_logprob=-0.2, compression_ratio=1.2)
    assert ends_sentence(result, audio) is ends


def test_a_withdrawn_final_is_not_run() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch=4, max_wait_s=0.0)
    keep, drop = (Job("s", "k", p, Priority.FINAL, 0.0) for p in ("keep", "drop"))
    queue.push(keep)
    queue.push(drop)
    assert queue.withdraw(drop) and not queue.withdraw(drop)
    batch = queue.take(1.0)
    assert batch is not None and [j.payload for j in batch.jobs] == ["keep"]


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad()


def test_the_energy_gate_skips_steady_noise_but_not_what_rises_above_it(silero: SileroVad) -> None:
    rng = np.random.default_rng(7)
    stream = silero.new_stream()
    hum = (0.003 * rng.standard_normal(16000 * 4)).astype(np.float32)  # -50 dBFS of steady noise
    for i in range(0, hum.size, 1600):
        stream.probabilities(hum[i : i + 1600])
    gated = stream.gated_windows  # type: ignore[attr-defined]
    assert gated >= hum.size // WINDOW - HANGOVER - 10  # all but the first second or so
    loud = (0.1 * rng.standard_normal(1600)).astype(np.float32)  # 30 dB over the floor
    stream.probabilities(loud)
    assert stream.gated_windows == gated  # type: ignore[attr-defined]


def test_digital_silence_is_gated_from_the_start_after_the_hangover(silero: SileroVad) -> None:
    stream = silero.new_stream()
    zeros = np.zeros(16000 * 2, dtype=np.float32)
    probs = [stream.probabilities(zeros[i : i + 1600])[0] for i in range(0, zeros.size, 1600)]
    assert all(float(p.max(initial=0.0)) < 0.2 for p in probs)
    assert stream.gated_windows > 0  # type: ignore[attr-defined]


def test_a_pause_awaiting_its_verdict_outlasts_the_end_silence_until_released() -> None:
    seg = Segmenter(CONFIG)
    pause = next(e for e in feed(seg, [SPEECH] * 20 + [SILENCE] * 5) if isinstance(e, Paused))
    seg.await_verdict(pause.segment_id, pause.utterance.end_sample)
    assert not [e for e in feed(seg, [SILENCE] * 7, 25) if isinstance(e, Ended)]  # 12 silent: past the end
    ended = seg.release(pause.segment_id, pause.utterance.end_sample)
    assert ended is not None and ended.utterance is not None
    assert ended.utterance.end_sample == pause.utterance.end_sample  # the same audio the verdict was on
    assert seg.open_segment_id is None


def test_a_verdict_that_never_comes_delays_the_end_by_the_hold_at_most() -> None:
    seg = Segmenter(CONFIG)
    pause = next(e for e in feed(seg, [SPEECH] * 20 + [SILENCE] * 5) if isinstance(e, Paused))
    seg.await_verdict(pause.segment_id, pause.utterance.end_sample)
    ended = [e for e in feed(seg, [SILENCE] * 15, 25) if isinstance(e, Ended)]  # 20 silent = end + hold
    assert len(ended) == 1


def test_a_sentence_decoded_twice_over_still_ends_the_sentence() -> None:
    audio = np.full(16000 * 3, 0.05, dtype=np.float32)
    looped = AsrResult(
        "The meeting starts at noon, so bring your notes. The meeting starts at noon, so bring",
        "en",
        avg_logprob=-0.2,
        compression_ratio=1.9,
    )
    assert ends_sentence(looped, audio, voiced_ms=2500)
    assert not ends_sentence(looped, audio, voiced_ms=6000)  # the loop began before the speaker finished
