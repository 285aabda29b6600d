"""Signals for the realistic corpus: noise, mixing at a signal-to-noise ratio, levels, the telephone band,
and the non-speech clips. Float32 mono in [-1, 1]; every random draw comes from the caller's generator,
so the same seed gives the same audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr

Spans = Sequence[tuple[int, int]]  # (start, end) sample indices of the speech in a signal


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def speech_rms(x: np.ndarray, spans: Spans) -> float:
    """The RMS of the speech parts only: pauses between sentences must not make the speech look quiet."""
    if not spans:
        return rms(x)
    return rms(np.concatenate([x[a:b] for a, b in spans]))


def bandpass(x: np.ndarray, rate: int, low_hz: float, high_hz: float, edge_hz: float = 100.0) -> np.ndarray:
    """Zero-phase band-pass in the frequency domain, with raised-cosine edges ``edge_hz`` wide."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / rate)
    rise = np.clip((f - (low_hz - edge_hz / 2)) / edge_hz, 0, 1)
    fall = np.clip(((high_hz + edge_hz / 2) - f) / edge_hz, 0, 1)
    mask = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    return np.fft.irfft(spectrum * mask, x.size).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    noise: np.ndarray = rng.standard_normal(n).astype(np.float32)
    return noise / max(rms(noise), 1e-12)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with power falling 3 dB per octave (1/f), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), n).astype(np.float32)
    return noise / max(rms(noise), 1e-12)


def babble(n: int, voices: Sequence[np.ndarray], rng: np.random.Generator, talkers: int = 5) -> np.ndarray:
    """Several other sentences talking at once, each looped from a random offset, unit RMS."""
    out = np.zeros(n, dtype=np.float32)
    for k in rng.choice(len(voices), size=min(talkers, len(voices)), replace=False):
        voice = voices[int(k)] / max(rms(voices[int(k)]), 1e-12)
        reps = -(-n // voice.size) + 1
        looped = np.tile(voice, reps)
        start = int(rng.integers(0, voice.size))
        out += looped[start : start + n]
    return out / max(rms(out), 1e-12)


def mix_at_snr(speech: np.ndarray, spans: Spans, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` scaled so the speech parts stand ``snr_db`` above it."""
    target = speech_rms(speech, spans) / db_to_gain(snr_db)
    mixed = speech + noise[: speech.size] * (target / max(rms(noise), 1e-12))
    return np.clip(mixed, -1.0, 1.0).astype(np.float32)


def set_level(x: np.ndarray, dbfs: float, peak_limit_dbfs: float = -1.0) -> np.ndarray:
    """Scale ``x`` to an RMS of ``dbfs``, but never past ``peak_limit_dbfs`` (loud settings do not clip)."""
    gain = db_to_gain(dbfs) / max(rms(x), 1e-12)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0:
        gain = min(gain, db_to_gain(peak_limit_dbfs) / peak)
    return (x * gain).astype(np.float32)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x.astype(np.float32)
    return np.asarray(soxr.resample(x.astype(np.float32), rate_in, rate_out, quality="HQ"), dtype=np.float32)


def telephone(x: np.ndarray, rate: int) -> np.ndarray:
    """The narrowband telephone channel: 300–3400 Hz, sampled at 8 kHz."""
    return resample(bandpass(x, rate, 300.0, 3400.0), rate, 8000)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")


# --- non-speech: what a microphone hears when nobody talks


def silence(n: int, rng: np.random.Generator) -> np.ndarray:
    """Near-digital silence: a dither of about -90 dBFS, as a real converter gives."""
    return (rng.standard_normal(n) * db_to_gain(-90)).astype(np.float32)


def hum_with_clicks(n: int, rate: int, rng: np.random.Generator, mains_hz: float = 50.0) -> np.ndarray:
    """Mains hum (fundamental and odd harmonics, about -30 dBFS) with a few sharp clicks."""
    t = np.arange(n) / rate
    hum = sum(np.sin(2 * np.pi * mains_hz * k * t) / k for k in (1, 3, 5, 7))
    out = (np.asarray(hum) * db_to_gain(-30)).astype(np.float32)
    for at in rng.integers(0, max(1, n - rate // 100), size=max(1, n // rate // 2)):
        width = int(rng.integers(rate // 2000 + 1, rate // 500 + 2))
        click = rng.uniform(-1, 1, width) * np.exp(-np.arange(width) / (width / 4))
        out[at : at + width] += (click * db_to_gain(-6)).astype(np.float32)
    return np.clip(out, -1, 1).astype(np.float32)


def breaths(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Breath-like bursts: band-limited noise (500–2500 Hz) swelling and fading over 0.4–0.9 s."""
    out = silence(n, rng)
    at = int(rng.integers(rate // 4, rate))
    while at < n:
        length = min(int(rng.uniform(0.4, 0.9) * rate), n - at)
        burst = bandpass(rng.standard_normal(length).astype(np.float32), rate, 500.0, 2500.0, 400.0)
        envelope = np.sin(np.pi * np.arange(length) / max(1, length)) ** 2
        out[at : at + length] += (burst / max(rms(burst), 1e-12) * envelope * db_to_gain(-32)).astype(
            np.float32
        )
        at += length + int(rng.uniform(1.0, 2.5) * rate)
    return out


def music(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Tonal, music-like sound: three-note chords with harmonics and soft attacks, a new chord each beat."""
    out = np.zeros(n, dtype=np.float32)
    beat = int(rate * 0.5)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    for start in range(0, n, beat):
        length = min(beat, n - start)
        t = np.arange(length) / rate
        root = int(rng.choice(scale))
        tone = np.zeros(length)
        for step in (0, 4, 7):
            f0 = 220.0 * 2 ** ((root + step) / 12)
            tone += sum(np.sin(2 * np.pi * f0 * h * t) / h**1.5 for h in (1, 2, 3, 4))
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-t / 0.35)
        out[start : start + length] = tone * envelope
    return set_level(out, -20.0)
