"""PcmInput: frame validation and streaming resampling to 16 kHz."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from streamer.errors import FrameTooLargeError, InvalidAudioError
from streamer.pipeline.audio import MODEL_RATE, PcmInput, max_frame_bytes

TONE_HZ = 440.0


def tone(rate: int, seconds: float, hz: float = TONE_HZ, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")


def stream(pcm: PcmInput, samples: np.ndarray, chunk_ms: int) -> np.ndarray:
    """Push ``samples`` in ``chunk_ms`` frames; a remainder shorter than a frame joins the last one."""
    step = pcm.sample_rate * chunk_ms // 1000
    cuts = [*range(0, samples.size - step + 1, step), samples.size]
    out = [pcm.push(samples[a:b].tobytes()) for a, b in pairwise(cuts)]
    out.append(pcm.flush())
    return np.concatenate(out)


def spectrum_peak(audio: np.ndarray, rate: int) -> tuple[float, float]:
    """The peak frequency and the fraction of energy further than 20 Hz from it (leakage, clicks)."""
    windowed = audio * np.hanning(audio.size)
    power = np.abs(np.fft.rfft(windowed)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / rate)
    peak = float(freqs[int(np.argmax(power))])
    outside = power[np.abs(freqs - peak) > 20].sum() / power.sum()
    return peak, float(outside)


def test_max_frame_bytes() -> None:
    assert max_frame_bytes(16000, 1000) == 32000
    assert max_frame_bytes(8000, 500) == 8000
    assert max_frame_bytes(44100, 1000) == 88200


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_frame_limits_are_10ms_to_1s_at_the_session_rate(rate: int) -> None:
    pcm = PcmInput(rate)
    smallest, largest = rate // 100 * 2, rate * 2
    pcm.validate(b"\0" * smallest)
    pcm.validate(b"\0" * largest)
    with pytest.raises(InvalidAudioError, match="shorter than the minimum"):
        pcm.validate(b"\0" * (smallest - 2))
    with pytest.raises(FrameTooLargeError) as too_large:
        pcm.validate(b"\0" * (largest + 2))
    assert too_large.value.code == "frame_too_large" and too_large.value.close_code == 1009


def test_odd_length_frame_is_invalid_audio() -> None:
    pcm = PcmInput(16000)
    with pytest.raises(InvalidAudioError, match="odd number of bytes") as err:
        pcm.push(b"\0" * 3201)
    assert err.value.code == "invalid_audio" and not err.value.retryable
    assert pcm.samples_in == 0  # nothing was buffered


def test_limits_follow_the_settings() -> None:
    pcm = PcmInput(16000, min_frame_ms=20, max_frame_ms=100)
    pcm.validate(b"\0" * 640)
    pcm.validate(b"\0" * 3200)
    with pytest.raises(InvalidAudioError):
        pcm.validate(b"\0" * 638)
    with pytest.raises(FrameTooLargeError):
        pcm.validate(b"\0" * 3202)


def test_16k_passes_through_unchanged() -> None:
    samples = tone(16000, 0.5)
    pcm = PcmInput(16000)
    out = stream(pcm, samples, 20)
    np.testing.assert_array_equal(out, samples.astype(np.float32) / 32768.0)
    assert out.dtype == np.float32
    assert pcm.flush().size == 0
    assert pcm.audio_ms == 500


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("chunk_ms", [10, 30])
def test_resampling_keeps_duration_and_pitch_across_small_chunks(rate: int, chunk_ms: int) -> None:
    seconds = 2.0
    pcm = PcmInput(rate)
    out = stream(pcm, tone(rate, seconds), chunk_ms)
    assert out.dtype == np.float32
    assert abs(out.size - seconds * MODEL_RATE) <= 0.01 * seconds * MODEL_RATE, out.size
    assert pcm.audio_ms == 2000
    # skip the filter's start-up; the middle must be one clean tone: a gap or click at any of the
    # hundreds of chunk boundaries would spread energy far from 440 Hz
    middle = out[MODEL_RATE // 4 : -MODEL_RATE // 4]
    peak, outside = spectrum_peak(middle, MODEL_RATE)
    assert abs(peak - TONE_HZ) <= 2.0, peak
    assert outside < 1e-6, outside  # a clean stream measures ~1e-9
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.02)  # level kept


def test_a_refused_frame_does_not_disturb_the_stream() -> None:
    rate = 48000
    samples = tone(rate, 1.0)
    step = rate // 50  # 20 ms
    pcm = PcmInput(rate)
    out = []
    for n, i in enumerate(range(0, samples.size, step)):
        if n == 10:
            with pytest.raises(InvalidAudioError):
                pcm.push(b"\0" * 7)
        out.append(pcm.push(samples[i : i + step].tobytes()))
    out.append(pcm.flush())
    audio = np.concatenate(out)
    peak, outside = spectrum_peak(audio[MODEL_RATE // 4 : -MODEL_RATE // 4], MODEL_RATE)
    assert abs(peak - TONE_HZ) <= 2.0 and outside < 1e-6
    assert pcm.samples_in == samples.size
