"""``SessionSpeakers`` with the real worker thread and encoder doubles: a refusing or failing encoder
leaves the final whole and unlabelled; a working one labels in order of appearance."""

from __future__ import annotations

import itertools

import numpy as np

from streamer.pipeline.speakers import WordSpan, find_changes
from streamer.pipeline.speakers_encoder import EMBED_DIM, partial_starts
from streamer.pipeline.speakers_worker import SpeakerBatch, SpeakerWorker
from streamer.protocol import Word
from streamer.session.diarize import (
    CHEAP_WHOLE_WINDOWS,
    MAX_CHANGES,
    MAX_WHOLE_WINDOWS,
    SessionSpeakers,
    ends_sentence,
)

AUDIO = np.zeros(16000 * 2, np.float32)
WORDS = [Word(word="hello", start_ms=1000, end_ms=1500, probability=0.9)]


def _broken(mels: np.ndarray) -> np.ndarray:
    raise RuntimeError("encoder down")


def _constant(mels: np.ndarray) -> np.ndarray:
    out = np.zeros((mels.shape[0], EMBED_DIM), np.float32)
    out[:, 0] = 1.0
    return out


async def test_a_failing_encoder_leaves_the_final_whole_without_a_speaker() -> None:
    async with SpeakerWorker(_broken) as worker:
        parts = await SessionSpeakers("s", worker).parts(True, AUDIO, 1000, 3000, "hello", WORDS)
    assert len(parts) == 1
    assert (parts[0].text, parts[0].words, parts[0].speaker) == ("hello", WORDS, None)


async def test_a_stopped_worker_leaves_the_final_whole_without_a_speaker() -> None:
    worker = SpeakerWorker(_constant)
    async with worker:
        pass
    (part,) = await SessionSpeakers("s", worker).parts(True, AUDIO, 1000, 3000, "hello", WORDS)
    assert part.speaker is None and part.words == WORDS


async def test_one_voice_is_speaker_zero_on_every_final_and_word() -> None:
    async with SpeakerWorker(_constant) as worker:
        speakers = SessionSpeakers("s", worker)
        first = await speakers.parts(True, AUDIO, 1000, 3000, "hello", WORDS)
        second = await speakers.parts(True, AUDIO, 4000, 6000, "again", None)
    assert [p.speaker for p in first + second] == [0, 0]
    assert first[0].words is not None and first[0].words[0].speaker == 0
    assert first[0].speaker_confidence == 1.0 and second[0].speaker_confidence == 1.0


async def test_off_means_untouched() -> None:
    async with SpeakerWorker(_broken) as worker:
        (part,) = await SessionSpeakers("s", worker).parts(False, AUDIO, 1000, 3000, "hello", WORDS)
    assert part.speaker is None and part.words == WORDS


def _loudest_band(mels: np.ndarray) -> np.ndarray:
    """A 'voice' per window: one-hot at its loudest mel band, so two tones are two speakers."""
    out = np.zeros((mels.shape[0], EMBED_DIM), np.float32)
    out[np.arange(mels.shape[0]), mels.mean(axis=1).argmax(axis=1)] = 1.0
    return out


async def test_the_parts_of_a_split_final_are_embedded_in_one_batch() -> None:
    """A quick reply inside one utterance: the change is found, and both parts' embeddings go to the
    worker together (one encoder call), not one call and one wait per part."""
    t = np.arange(2 * 16000) / 16000
    low, high = 0.3 * np.sin(2 * np.pi * 300 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)
    audio = np.concatenate([low, np.zeros(3200), high]).astype(np.float32)  # 2 s, a 0.2 s pause, 2 s
    words = [
        Word(word="is", start_ms=1000, end_ms=1900, probability=0.9),
        Word(word="it?", start_ms=1900, end_ms=3000, probability=0.9),
        Word(word="yes,", start_ms=3200, end_ms=4100, probability=0.9),
        Word(word="it is", start_ms=4100, end_ms=5200, probability=0.9),
    ]
    batches: list[SpeakerBatch] = []
    async with SpeakerWorker(_loudest_band, on_batch=batches.append) as worker:
        parts = await SessionSpeakers("s", worker).parts(True, audio, 1000, 5200, "is it? yes, it is", words)
    assert [(p.text, p.speaker) for p in parts] == [("is it?", 0), ("yes, it is", 1)]
    assert batches[-1].jobs == 2  # the two parts, in one call


def _turns(freqs: list[int], words_per_turn: int = 2) -> tuple[np.ndarray, list[Word]]:
    """One tone per turn, ``words_per_turn`` words of 0.9 s each, 0.2 s apart inside a turn and 0.3 s
    between turns (so every boundary is a candidate, the turns' first): a dialogue of 'voices'."""
    rate, pieces, words, at = 16000, [], [], 0
    for k, freq in enumerate(freqs):
        for j in range(words_per_turn):
            t = np.arange(int(0.9 * rate)) / rate
            pieces.append(0.3 * np.sin(2 * np.pi * freq * t))
            words.append(Word(word=f"w{k}{j}", start_ms=1000 + at * 1000 // rate, end_ms=0, probability=0.9))
            at += t.size
            words[-1] = words[-1].model_copy(update={"end_ms": 1000 + at * 1000 // rate})
            pause = int((0.2 if j < words_per_turn - 1 else 0.3) * rate)
            pieces.append(np.zeros(pause))
            at += pause
    return np.concatenate(pieces).astype(np.float32), words


async def _diarize(
    audio: np.ndarray, words: list[Word], batches: list[SpeakerBatch]
) -> list[tuple[list[str], int | None]]:
    # a wait long enough that jobs sent together always share a call, even on a busy machine
    async with SpeakerWorker(_loudest_band, max_wait_s=0.2, on_batch=batches.append) as worker:
        speakers = SessionSpeakers("s", worker)
        end_ms = 1000 + audio.size * 1000 // 16000
        text = " ".join(w.word for w in words)
        parts = await speakers.parts(True, audio, 1000, end_ms, text, words)
    return [([w.word for w in p.words or []], p.speaker) for p in parts]


async def test_a_final_of_one_voice_is_tested_and_embedded_in_one_encoder_call() -> None:
    """Most finals have one voice: the change-point test and the final's embedding share one call
    instead of waiting for the test, then queueing the embedding behind other sessions' jobs."""
    audio, words = _turns([300, 300])
    batches: list[SpeakerBatch] = []
    assert await _diarize(audio, words, batches) == [(["w00", "w01", "w10", "w11"], 0)]
    assert len(batches) == 1


async def test_both_sides_of_a_split_are_tested_in_one_encoder_call() -> None:
    """After a split, each side is tested again for a further change: both at once, in one call."""
    audio, words = _turns([300, 3000])
    batches: list[SpeakerBatch] = []
    assert await _diarize(audio, words, batches) == [(["w00", "w01"], 0), (["w10", "w11"], 1)]
    # the whole final; both sides' tests (they were one call each, one after the other); the parts
    assert [b.jobs for b in batches] == [1, 2, 2]


async def test_the_changes_found_are_those_of_a_search_one_stretch_at_a_time() -> None:
    """Six turns, five changes: the parallel search stops at MAX_CHANGES where the one-at-a-time
    search (``find_changes``, right side first) stops, so its cuts are the same."""
    audio, words = _turns([300, 3000, 300, 3000, 300, 3000])
    spans = [
        WordSpan((w.start_ms - 1000) / 1000, (w.end_ms - 1000) / 1000, ends_sentence(w.word)) for w in words
    ]
    expected = find_changes(_loudest_band, audio, spans, max_changes=MAX_CHANGES)
    assert len(expected) == MAX_CHANGES  # the cap is what this test is about
    parts = await _diarize(audio, words, [])
    cuts = list(itertools.accumulate(len(p) for p, _ in parts))[:-1]
    assert cuts == expected


async def test_after_a_split_final_the_next_long_ones_are_tested_before_they_are_embedded() -> None:
    """In a dialogue a long final mostly splits, and embedding it whole with its test would be wasted:
    for three finals after a split one, a long final is tested first, a short one still embedded with
    its test (cheap); then, the session back to one voice, every final is one call again."""
    split_audio, split_words = _turns([300, 3000])
    long_audio, long_words = _turns([300, 300])  # 4.3 s: four partial windows
    short_audio, short_words = _turns([300])  # 2.1 s: two
    assert len(partial_starts(short_audio.size)) <= CHEAP_WHOLE_WINDOWS < len(partial_starts(long_audio.size))
    finals = [(split_audio, split_words), (short_audio, short_words)] + [(long_audio, long_words)] * 3
    batches: list[SpeakerBatch] = []
    async with SpeakerWorker(_loudest_band, max_wait_s=0.2, on_batch=batches.append) as worker:
        speakers = SessionSpeakers("s", worker)
        for audio, words in finals:
            end_ms = 1000 + audio.size * 1000 // 16000
            await speakers.parts(True, audio, 1000, end_ms, " ".join(w.word for w in words), words)
    # the split final: whole, both sides, the parts; the short one: one call; the next two long ones:
    # the test, then the embedding; the last (three finals since the split): both in one call
    assert [b.jobs for b in batches] == [1, 2, 2, 1, 1, 1, 1, 1, 1]


async def test_a_long_final_is_tested_before_it_is_embedded_even_in_a_one_voice_session() -> None:
    """A long final's whole embedding, wasted if it splits, costs more windows than the call it saves."""
    audio, words = _turns([300] * 5)  # 11.5 s: fourteen partial windows
    assert len(partial_starts(audio.size)) > MAX_WHOLE_WINDOWS
    batches: list[SpeakerBatch] = []
    assert len(await _diarize(audio, words, batches)) == 1
    assert [b.jobs for b in batches] == [1, 1]  # the test, then the embedding
