"""A stretch of speech's typical pitch (F0), cheaply, in numpy: a second cue beside the voice embedding.

Two voices can come out alike to the GE2E encoder (two female voices of one TTS model: 0.75, right at
the clustering threshold) while speaking at clearly different pitches. The pitch of a stretch is the
median F0 of its voiced frames, by normalised autocorrelation: 40 ms Hann frames every 10 ms, F0
between 60 and 400 Hz (the shortest period whose peak comes near the highest), a frame voiced when its
autocorrelation peak reaches ``VOICED_PEAK`` and its energy is within 35 dB of the stretch's loudest
frame. It is given in semitones above 55 Hz, so a difference of pitches is a musical interval whatever
the register. It costs about 6 ms of CPU per second of audio, off the event loop.
"""

from __future__ import annotations

import numpy as np

RATE = 16000
FRAME = 640  # 40 ms: two periods of the lowest F0
HOP = 160  # 10 ms
FMIN, FMAX = 60.0, 400.0
VOICED_PEAK = 0.6  # normalised autocorrelation at the period: clearly periodic
OCTAVE_SHARE = 0.85  # a shorter period's peak this close to the highest is the period
QUIET_DB = 35.0  # frames this far under the loudest are pauses, not voice
MIN_VOICED = 20  # voiced frames (0.2 s) a pitch needs
REFERENCE_HZ = 55.0

_FFT = 2048  # >= 2 * FRAME: the autocorrelation does not wrap
_WINDOW = np.hanning(FRAME).astype(np.float32)
_WINDOW_AC = np.fft.irfft(np.abs(np.fft.rfft(_WINDOW, _FFT)) ** 2)[:FRAME]  # the window's own shape
_LAGS = np.arange(int(RATE / FMAX), int(RATE / FMIN) + 1)


def voiced_f0(audio: np.ndarray) -> np.ndarray:
    """The F0 (Hz) of every voiced frame of 16 kHz float ``audio``, in time order."""
    if audio.size < FRAME:
        return np.zeros(0, dtype=np.float32)
    starts = np.arange(0, audio.size - FRAME + 1, HOP)
    frames = audio[starts[:, None] + np.arange(FRAME)[None, :]].astype(np.float32)
    frames = (frames - frames.mean(axis=1, keepdims=True)) * _WINDOW
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, _FFT, axis=1)) ** 2, axis=1)[:, :FRAME]
    energy = ac[:, 0]
    loud = energy > max(float(energy.max()), 1e-12) * 10 ** (-QUIET_DB / 10)
    # unbiased: divided by the window's own autocorrelation, so long lags are not penalised
    norm = ac[:, _LAGS] / (_WINDOW_AC[_LAGS] / _WINDOW_AC[0]) / np.maximum(energy, 1e-12)[:, None]
    peak = norm.max(axis=1)
    # the shortest lag at a local peak nearly as high as the highest: multiples of the period peak as
    # high, and taking the highest would report an octave (or more) too low
    local = np.zeros_like(norm, dtype=bool)
    local[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
    best = np.argmax(local & (norm >= OCTAVE_SHARE * peak[:, None]), axis=1)
    voiced = loud & (peak >= VOICED_PEAK)
    f0: np.ndarray = (RATE / _LAGS[best[voiced]]).astype(np.float32)
    return f0


def pitch_semitones(audio: np.ndarray) -> float | None:
    """The stretch's median F0 in semitones above 55 Hz, or None when too little of it is voiced."""
    f0 = voiced_f0(audio)
    if f0.size < MIN_VOICED:
        return None
    return float(12 * np.log2(np.median(f0) / REFERENCE_HZ))
