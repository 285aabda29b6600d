"""Hypothesis strategies for WebSocket frames: text, JSON, typed messages, configs, binary audio."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from hypothesis import strategies as st
from support import read_pcm16, to_bytes

from streamer.edge.ws import WS_MAX_MSG

SPEECH = to_bytes(read_pcm16("en_utt1.wav"))
MAX_FRAME = 16000 * 2  # 1 s at the default 16 kHz


@dataclass(frozen=True)
class Noise:
    """A binary frame of ``size`` random bytes, made when sent (a short repr in Hypothesis reports)."""

    size: int
    seed: int = 0
    zeros: bool = False

    def materialize(self) -> bytes:
        return bytes(self.size) if self.zeros else random.Random(self.seed).randbytes(self.size)


@dataclass(frozen=True)
class Speech:
    """``samples`` of en_utt1.wav from ``start``."""

    start: int
    samples: int

    def materialize(self) -> bytes:
        return SPEECH[self.start * 2 : (self.start + self.samples) * 2]


Frame = str | bytes | Noise | Speech

# ---- strategies

SEEDS = st.integers(0, 2**32 - 1)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
CLIENT_TYPES = ["session.update", "input_audio.commit", "session.close", "ping"]
TYPES = (
    st.sampled_from(CLIENT_TYPES)
    | st.sampled_from(["", "PING", "Ping ", "session.created", "error", "transcript.final", "session"])
    | st.text(max_size=16)
    | JSON_VALUES
)
GARBAGE = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3)
CONFIG_FIELDS = {
    "sample_rate": st.sampled_from([8000, 16000, 22050, 44100, 48000])
    | st.integers(-1, 200_000)
    | JSON_VALUES,
    "language": st.none() | st.sampled_from(["en", "EN", "de", "xx", "english", "e"]) | JSON_VALUES,
    "task": st.sampled_from(["transcribe", "translate"]) | JSON_VALUES,
    "translate_to": st.lists(st.sampled_from(["de", "fr", "en", " ", "x"]) | st.text(max_size=9), max_size=10)
    | JSON_VALUES,
    "interim_results": st.booleans() | JSON_VALUES,
}
CONFIGS = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=CONFIG_FIELDS),  # type: ignore[arg-type]
    GARBAGE | st.just({}),
)
UPDATES = st.builds(lambda config: {"type": "session.update", "config": config}, CONFIGS | JSON_VALUES)
PINGS = st.builds(lambda i: {"type": "ping", "id": i}, JSON_VALUES)
TYPED = st.builds(lambda t, extra: {**extra, "type": t}, TYPES, GARBAGE)

TEXT_FRAMES = st.one_of(
    st.text(max_size=300),
    JSON_VALUES.map(json.dumps),
    TYPED.map(json.dumps),
    UPDATES.map(json.dumps),
    UPDATES.map(json.dumps),
    PINGS.map(json.dumps),
)
SPEECH_CHUNKS = st.builds(Speech, st.integers(0, len(SPEECH) // 2), st.integers(160, 16000))
FRAMES_WITHIN_LIMITS = st.one_of(
    st.binary(max_size=64),  # empty, odd, far below the 10 ms minimum
    st.builds(Noise, st.integers(0, MAX_FRAME), SEEDS),  # any size up to the limit, odd or even
    st.builds(Noise, st.integers(160, MAX_FRAME // 2).map(lambda n: n * 2), SEEDS),  # valid PCM noise
    SPEECH_CHUNKS,
    SPEECH_CHUNKS,
    st.just(Noise(3200, zeros=True)),  # 100 ms of silence
)
# over the session's frame limit (error, then 1009) and, rarely, over aiohttp's 4 MiB message limit
OVERSIZED_FRAMES = st.builds(Noise, st.integers(MAX_FRAME + 1, 3 * MAX_FRAME), SEEDS) | st.just(
    Noise(WS_MAX_MSG + 2, zeros=True)
)


def _frame_kind(percent: int) -> st.SearchStrategy[Frame]:
    # an oversized frame ends its connection: keep those rare, so most scripts play to the end
    return TEXT_FRAMES if percent < 48 else OVERSIZED_FRAMES if percent < 50 else FRAMES_WITHIN_LIMITS


# explicit weights (a plain one_of would weigh its flattened branches equally)
FRAMES: st.SearchStrategy[Frame] = st.integers(0, 99).flatmap(_frame_kind)
SCRIPTS = st.lists(FRAMES, min_size=1, max_size=20)
FRESH = st.integers(0, 4).map(lambda n: n == 0)  # one script in five starts on a new connection
