"""``SessionSpeakers`` with the real worker thread and encoder doubles: a refusing or failing encoder
leaves the final whole and unlabelled; a working one labels in order of appearance."""

from __future__ import annotations

import numpy as np

from streamer.pipeline.speakers_encoder import EMBED_DIM
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.protocol import Word
from streamer.session.diarize import SessionSpeakers

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
