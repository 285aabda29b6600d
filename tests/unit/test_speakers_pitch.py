"""Pitch as a second vote beside the voice embedding: the F0 estimate, and where the clustering asks it."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.pipeline.speakers import SpeakerClusters
from streamer.pipeline.speakers_encoder import EMBED_DIM
from streamer.pipeline.speakers_pitch import pitch_semitones
from streamer.pipeline.speakers_worker import SpeakerWorker
from streamer.session.diarize import SessionSpeakers

RATE = 16000


def voiced(f0: float, seconds: float = 1.5, square: bool = False) -> np.ndarray:
    """A voice-like periodic signal at ``f0``: harmonics falling off, or a square wave (strong odd
    harmonics, whose autocorrelation peaks as high at twice the period)."""
    t = np.arange(int(seconds * RATE)) / RATE
    if square:
        return (0.2 * np.sign(np.sin(2 * np.pi * f0 * t))).astype(np.float32)
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.1 * x).astype(np.float32)


def semitones(hz: float) -> float:
    return float(12 * np.log2(hz / 55.0))


@pytest.mark.parametrize("f0", [85.0, 130.0, 210.0, 280.0, 350.0])
@pytest.mark.parametrize("square", [False, True])
def test_the_pitch_of_a_periodic_stretch_is_its_f0_not_an_octave_below(f0: float, square: bool) -> None:
    pitch = pitch_semitones(voiced(f0, square=square))
    assert pitch is not None
    assert abs(pitch - semitones(f0)) < 0.4


def test_silence_noise_and_a_blip_have_no_pitch() -> None:
    rng = np.random.default_rng(3)
    assert pitch_semitones(np.zeros(RATE, np.float32)) is None
    assert pitch_semitones((0.1 * rng.standard_normal(RATE)).astype(np.float32)) is None
    assert pitch_semitones(voiced(200.0, seconds=0.1)) is None  # under 0.2 s voiced
    assert pitch_semitones(np.zeros(100, np.float32)) is None


def pair(similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit embeddings with the given cosine similarity."""
    a = np.zeros(EMBED_DIM, np.float32)
    b = np.zeros(EMBED_DIM, np.float32)
    a[0], b[1] = 1.0, 1.0
    return a, (similarity * a + np.sqrt(1 - similarity**2) * b).astype(np.float32)


def test_a_stretch_only_just_alike_but_far_in_pitch_is_a_new_speaker() -> None:
    first, second = pair(0.77)  # over the 0.75 threshold, inside a 0.05 band
    clusters = SpeakerClusters(0.75, merge_threshold=None, pitch_band=0.05, pitch_gap=3.0)
    assert clusters.assign(first, 2.0, pitch=27.5) == 0
    assert clusters.assign(second, 2.0, pitch=22.0) == 1
    # the next stretch of each voice goes to its own speaker
    assert clusters.assign(first, 2.0, pitch=27.0) == 0
    assert clusters.assign(second, 2.0, pitch=22.5) == 1


@pytest.mark.parametrize(
    ("similarity", "pitches", "weight"),
    [
        (0.77, (27.5, 25.0), 2.0),  # close in pitch: the voice's own
        (0.77, (27.5, None), 2.0),  # no pitch for the stretch: the embedding alone decides
        (0.77, (None, 22.0), 2.0),  # none for the speaker either
        (0.85, (27.5, 15.0), 2.0),  # clearly alike in voice: pitch is not asked
        (0.77, (27.5, 22.0), 0.5),  # too short to found a speaker on: its nearest
    ],
)
def test_pitch_is_asked_only_where_the_voice_is_unsure(
    similarity: float, pitches: tuple[float | None, float | None], weight: float
) -> None:
    first, second = pair(similarity)
    clusters = SpeakerClusters(0.75, merge_threshold=None, pitch_band=0.05, pitch_gap=3.0)
    assert clusters.assign(first, 2.0, pitch=pitches[0]) == 0
    assert clusters.assign(second, weight, pitch=pitches[1]) == 0


def test_without_a_band_pitch_changes_nothing() -> None:
    first, second = pair(0.77)
    clusters = SpeakerClusters(0.75, merge_threshold=None, pitch_band=0.0)
    assert clusters.assign(first, 2.0, pitch=27.5) == 0
    assert clusters.assign(second, 2.0, pitch=10.0) == 0
    with pytest.raises(ValueError, match="pitch"):
        clusters.assign(first, 2.0, pitch=float("nan"))


async def test_a_session_asks_pitch_when_two_voices_come_out_only_just_alike() -> None:
    """Two stretches whose embeddings are 0.77 alike (over the 0.75 threshold, as two female voices of
    one TTS model come out) but an octave apart get two speakers when the pitch vote is on."""
    first, second = pair(0.77)
    calls: list[int] = []

    def encoder(mels: np.ndarray) -> np.ndarray:  # the first stretch's windows get one voice, later ones
        calls.append(mels.shape[0])
        return np.repeat((first if len(calls) == 1 else second)[None, :], mels.shape[0], axis=0)

    async with SpeakerWorker(encoder) as worker:
        speakers = SessionSpeakers("s", worker)
        speakers.clusters = SpeakerClusters(0.75, merge_threshold=None, pitch_band=0.05, pitch_gap=3.0)
        low = await speakers.parts(True, voiced(130.0, seconds=2.0), 0, 2000, "low voice", None)
        high = await speakers.parts(True, voiced(260.0, seconds=2.0), 3000, 5000, "high voice", None)
        again = await speakers.parts(True, voiced(255.0, seconds=2.0), 6000, 8000, "high again", None)
    assert [p.speaker for p in low + high + again] == [0, 1, 1]
