"""PcmInput: frame validation, G.711 decoding and streaming resampling to 16 kHz."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from streamer.errors import FrameTooLargeError, InvalidAudioError
from streamer.pipeline.audio import MODEL_RATE, PcmInput, max_frame_bytes
from streamer.pipeline.codecs import MULAW_TO_PCM, Encoding

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
def test_a_frame_is_one_sample_to_1s_at_the_session_rate(rate: int) -> None:
    pcm = PcmInput(rate)
    largest = rate * 2
    pcm.validate(b"\0" * 2)  # framing is the client's business: one sample is a frame
    pcm.validate(b"\0" * largest)
    with pytest.raises(FrameTooLargeError) as too_large:
        pcm.validate(b"\0" * (largest + 2))
    assert too_large.value.code == "frame_too_large" and too_large.value.close_code == 1009


def test_odd_length_frame_is_invalid_audio() -> None:
    pcm = PcmInput(16000)
    with pytest.raises(InvalidAudioError, match="not a whole number of pcm16 samples") as err:
        pcm.push(b"\0" * 3201)
    assert err.value.code == "invalid_audio" and not err.value.retryable
    assert pcm.samples_in == 0  # nothing was buffered


def test_limits_follow_the_settings() -> None:
    pcm = PcmInput(16000, max_frame_ms=100)
    pcm.validate(b"\0" * 3200)
    with pytest.raises(FrameTooLargeError):
        pcm.validate(b"\0" * 3202)


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_g711_frames_are_any_number_of_bytes_and_counted_in_seconds(encoding: Encoding) -> None:
    pcm = PcmInput(8000, encoding=encoding)
    assert pcm.max_frame_bytes == 8000  # 1 s at one byte a sample
    pcm.validate(b"\xff")  # one sample; an odd count is no error here
    with pytest.raises(FrameTooLargeError):
        pcm.validate(b"\xff" * 8001)
    assert pcm.seconds(b"\xff" * 4000) == 0.5
    out = np.concatenate([pcm.push(bytes([b])) for b in (0xFF, 0x7F, 0x80, 0x00)])
    assert out.size == 0  # 8 kHz: the resampler holds its first samples back
    assert pcm.samples_in == 4 and pcm.audio_ms == 0


def test_g711_decodes_to_the_same_audio_as_the_pcm_it_encodes() -> None:
    samples = tone(8000, 1.0)
    mulaw = _mulaw_encode(samples)
    decoded = stream(PcmInput(8000, encoding=Encoding.MULAW), mulaw, 20)
    reference = stream(PcmInput(8000), samples, 20)
    assert decoded.size == reference.size
    # μ-law keeps about 38 dB of signal to noise on a loud tone
    noise = float(np.sqrt(np.mean(np.square(decoded - reference))))
    assert noise < 0.5 / 10 ** (35 / 20), noise


def _mulaw_encode(samples: np.ndarray) -> np.ndarray:
    """The closest μ-law byte for every sample (a search of the decoder's own table)."""
    order = np.argsort(MULAW_TO_PCM)
    ranked = MULAW_TO_PCM[order].astype(np.int32)
    at = np.clip(np.searchsorted(ranked, samples.astype(np.int32)), 1, 255)
    nearer = np.where(samples - ranked[at - 1] < ranked[at] - samples, at - 1, at)
    return order[nearer].astype(np.uint8)


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
