"""The GE2E voice encoder (resemblyzer's) in numpy: mel front end, partial windows, LSTM, embedding.

As resemblyzer defines it: 16 kHz audio raised to -30 dBFS when quieter (never lowered), a power (not
log) mel spectrogram with 40 Slaney mel bands over a 25 ms Hann window every 10 ms (centred frames,
zero padded), cut into partial windows of 160 frames (1.6 s); each partial goes through a 3-layer LSTM
(hidden 256), the last layer's final state through a linear layer and a ReLU, and is L2-normalised.
An utterance's embedding is the normalised mean of its partials' embeddings.

Checked once against resemblyzer's torch ``VoiceEncoder`` and librosa (see tests/unit/test_speakers.py
for the differences found); torch is never needed at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.pipeline.speakers_weights import EncoderWeights

RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
TARGET_DBFS = -30.0
EMBED_DIM = 256


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default, ``htk=False``)."""
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    hz = mel * f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


def mel_filters() -> np.ndarray:
    """(40, 201) triangular filters on Slaney's mel scale, area-normalised (``norm="slaney"``)."""
    fft_hz = np.linspace(0.0, RATE / 2, 1 + N_FFT // 2)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([RATE / 2]))[0], N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


_FILTERS = mel_filters()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise the audio to -30 dBFS if it is quieter (resemblyzer's ``increase_only``); silence stays."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 1e-9:
        return wav
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else wav


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram, ``1 + len(wav) // 160`` frames (librosa, centred)."""
    padded = np.pad(wav.astype(np.float32, copy=False), N_FFT // 2)
    n_frames = 1 + (padded.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    spectrum = np.fft.rfft(frames * _WINDOW, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel: np.ndarray = power @ _FILTERS.T
    return mel


def partial_starts(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
    """Start frames of the partial windows for ``n_samples`` of audio (resemblyzer's slicing).

    Windows of 160 frames every ``16000 / rate / 160`` frames; the last is kept when at least
    ``min_coverage`` of it is audio, and there is always at least one (zero padded).
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = round(RATE / rate / HOP)
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} gives a step of {step} frames (1..{PARTIAL_FRAMES})")
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts.pop()
    return starts


def utterance_partials(wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
    """(partials, 160, 40) mel windows of one stretch of 16 kHz float audio, ready for :class:`Encoder`."""
    starts = partial_starts(wav.size, rate, min_coverage)
    need = (starts[-1] + PARTIAL_FRAMES) * HOP
    wav = normalize_volume(wav)
    if wav.size < need:
        wav = np.pad(wav, (0, need - wav.size))
    mel = mel_spectrogram(wav)
    return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


@dataclass(frozen=True)
class _Layer:
    """One LSTM layer's weights laid out for the step loop: gates in the order input, forget, output,
    cell, and the three sigmoid gates' rows halved.

    Halving is exact in floating point, and sigmoid(x) = 0.5 + 0.5 * tanh(x / 2), so one ``tanh`` over
    all four gates gives every gate: each step is a third of the numpy calls the sigmoid written out
    took, and numpy calls, not arithmetic, are what a step of a small batch costs.
    """

    w_ih: np.ndarray  # (1024, inputs)
    w_hh: np.ndarray  # (1024, 256)
    bias: np.ndarray  # (1024, 1)

    @classmethod
    def of(cls, w_ih: np.ndarray, w_hh: np.ndarray, bias: np.ndarray) -> _Layer:
        order = np.r_[0:512, 768:1024, 512:768]  # torch's gate order is input, forget, cell, output
        scale = np.r_[np.full(768, 0.5), np.ones(256)].astype(np.float32)[:, None]
        return cls(
            np.ascontiguousarray(w_ih[order] * scale),
            np.ascontiguousarray(w_hh[order] * scale),
            bias[order, None] * scale,
        )


@dataclass(frozen=True)
class Encoder:
    """The LSTM and linear layer of GE2E on a batch of mel windows; pure numpy, thread-safe."""

    weights: EncoderWeights
    _layers: tuple[_Layer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_layers", tuple(_Layer.of(*layer) for layer in self.weights.lstm))

    def embed_windows(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel windows → (batch, 256) unit-norm embeddings (float32)."""
        if mels.ndim != 3 or mels.shape[2] != N_MELS or mels.shape[1] == 0:
            raise ValueError(f"expected (batch, frames, {N_MELS}) mels, got {mels.shape}")
        batch, steps, _ = mels.shape
        # Features by rows, windows by columns: a step's product is then weights @ state, which
        # OpenBLAS runs 1.3-2.5x faster than state @ weights.T for the batches the worker makes (2-64
        # windows; one window is the same), and each gate is a block of rows.
        x = np.ascontiguousarray(mels.astype(np.float32, copy=False).transpose(2, 1, 0))
        x = x.reshape(N_MELS, steps * batch)
        gates = np.empty((1024, batch), np.float32)
        tmp = np.empty((256, batch), np.float32)
        h = np.zeros((256, batch), np.float32)
        for layer in self._layers:
            # every step's input projection in one product: (1024, steps, batch)
            gates_in = (layer.w_ih @ x + layer.bias).reshape(1024, steps, batch)
            h = np.zeros((256, batch), np.float32)
            c = np.zeros((256, batch), np.float32)
            out = np.empty((steps, 256, batch), np.float32)
            for t in range(steps):
                np.matmul(layer.w_hh, h, out=gates)
                gates += gates_in[:, t]
                np.tanh(gates, out=gates)
                sig = gates[:768]  # input, forget, output: sigmoid = 0.5 + 0.5 * tanh(x / 2)
                sig *= 0.5
                sig += 0.5
                c *= sig[256:512]
                np.multiply(sig[:256], gates[768:], out=tmp)
                c += tmp
                np.tanh(c, out=tmp)
                h = out[t]
                np.multiply(sig[512:768], tmp, out=h)
            x = out.transpose(1, 0, 2).reshape(256, steps * batch)
        raw = np.maximum(h.T @ self.weights.linear_w.T + self.weights.linear_b, 0.0)
        return _unit(raw)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray:
        """One stretch of 16 kHz float audio → its (256,) unit-norm embedding (mean of its partials)."""
        return unit_mean(self.embed_windows(utterance_partials(wav)))


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = (x / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


def unit_mean(embeddings: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of (n, 256) embeddings."""
    return _unit(embeddings.mean(axis=0))
