"""The audio a Deepgram client sends, as each channel's PCM16: raw encodings and containers, decoded as
they stream in.

Deepgram's ``encoding`` names raw audio (``linear16``, ``linear32``, ``mulaw``, ``alaw``: ``sample_rate``
and ``channels`` say how to read it) or a codec in its container (``opus``: Ogg or WebM, ``ogg-opus``,
``flac``); without ``encoding`` the audio is containerized and its header says the rest (WAV, Ogg, WebM,
FLAC, MP3, AAC).
Raw audio keeps its rate; containers are decoded to 16 kHz. With ``multichannel=true`` each channel goes
to its own session, otherwise the channels are mixed down to one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from streamer.errors import ConfigError, InvalidAudioError
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.codecs import Decoder, Encoding, SampleDecoder, open_decoder
from streamer.pipeline.containers import DEMUXERS
from streamer.pipeline.streaming import (
    LIVE_CONTAINERS,
    MAX_CHANNELS,
    AudioStreamError,
    ContainerDecoder,
    Expect,
)

RAW = {"linear16": Encoding.PCM16, "mulaw": Encoding.MULAW, "alaw": Encoding.ALAW}
FLOAT32 = "linear32"  # Deepgram's name for 32-bit little-endian float PCM
# Opus needs its framing to be cut from a byte stream: Ogg (Deepgram's ogg-opus) or WebM (MediaRecorder)
CONTAINED = {
    "opus": Expect(frozenset({"ogg", "webm"}), "opus"),
    "ogg-opus": Expect(frozenset({"ogg"}), "opus"),
    "flac": Expect(frozenset({"flac"}), "flac"),
}
ALL_CONTAINERS = frozenset(DEMUXERS)  # a whole file (pre-recorded): MP4 too, when its index comes first
SUPPORTED = "linear16, linear32, mulaw, alaw, opus or ogg-opus (Ogg/WebM), flac, or none for containers"


@dataclass(frozen=True)
class AudioFormat:
    """What the client declared: ``encoding`` (None: containerized), rate, channels, multichannel."""

    encoding: str | None
    sample_rate: int | None
    channels: int | None  # None: not said (raw audio is then mono; a container's header says)
    multichannel: bool

    @classmethod
    def parse(
        cls, encoding: str | None, sample_rate: int | None, channels: int | None, multichannel: bool
    ) -> AudioFormat:
        if encoding is not None and encoding not in RAW and encoding != FLOAT32 and encoding not in CONTAINED:
            raise ConfigError(f"encoding {encoding} is not supported: use {SUPPORTED}")
        if (encoding in RAW or encoding == FLOAT32) and sample_rate is None:
            raise ConfigError(f"sample_rate is required with encoding={encoding}")
        if channels is not None and not 1 <= channels <= MAX_CHANNELS:
            raise ConfigError(f"channels must be from 1 to {MAX_CHANNELS}")
        return cls(encoding, sample_rate, channels, multichannel)

    @property
    def raw(self) -> bool:
        return self.encoding in RAW or self.encoding == FLOAT32

    @property
    def session_rate(self) -> int:
        """The rate every channel's session runs at: raw audio's own, 16 kHz for decoded containers."""
        return self.sample_rate if self.raw and self.sample_rate is not None else MODEL_RATE

    @property
    def outputs(self) -> int | None:
        """How many sessions the audio feeds (None: as many as the container's header will say)."""
        if not self.multichannel:
            return 1
        return self.channels if self.channels is not None or not self.raw else 1

    @property
    def passthrough(self) -> bool:
        """Mono linear16: the bytes are the session's PCM as they come."""
        return self.encoding == "linear16" and (self.channels or 1) == 1


class Float32Decoder(SampleDecoder):
    """32-bit little-endian float PCM (``linear32``), clipped to [-1, 1] and scaled to PCM16."""

    width = 4

    def convert(self, data: bytes) -> bytes:
        samples = np.nan_to_num(np.frombuffer(data, dtype="<f4"), nan=0.0, posinf=1.0, neginf=-1.0)
        pcm: bytes = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
        return pcm


class AudioInput:
    """One stream's bytes in, each output channel's PCM16 (at ``format.session_rate``) out."""

    def __init__(self, format: AudioFormat, containers: frozenset[str] = LIVE_CONTAINERS) -> None:
        self.format = format
        self._decoder: Decoder
        if format.encoding == FLOAT32:
            assert format.sample_rate is not None
            self._decoder = Float32Decoder(format.sample_rate, format.channels or 1)
        elif format.raw:
            assert format.encoding is not None and format.sample_rate is not None
            self._decoder = open_decoder(RAW[format.encoding], format.sample_rate, format.channels or 1)
        else:
            expect = CONTAINED.get(format.encoding or "", Expect())
            keep = None if format.multichannel else 1
            self._decoder = ContainerDecoder(MODEL_RATE, keep, expect=expect, allowed=containers)

    async def feed(self, data: bytes) -> AsyncIterator[list[bytes]]:
        """The channels' PCM that ``data`` completes, in pieces of at most about a second."""
        async for pcm in self._pieces(data):
            yield self._split(pcm)

    async def finish(self) -> AsyncIterator[list[bytes]]:
        """What is left at the end of the stream."""
        async for pcm in self._pieces(None):
            yield self._split(pcm)

    def close(self) -> None:
        if isinstance(self._decoder, ContainerDecoder):
            self._decoder.close()

    async def _pieces(self, data: bytes | None) -> AsyncIterator[bytes]:
        try:
            decoder = self._decoder
            if not isinstance(decoder, ContainerDecoder):  # raw: a table or a copy, cheap on the loop
                out = decoder.decode(data) if data is not None else decoder.flush()
                if out:
                    yield out
                return
            # the container's own thread decodes; this waits for it without holding the loop
            async for out in decoder.decoded(data):
                yield out
        except AudioStreamError:
            raise
        except InvalidAudioError as e:
            raise AudioStreamError(e.message) from e

    def _split(self, pcm: bytes) -> list[bytes]:
        channels = self._decoder.channels
        declared = self.format.channels
        if self.format.multichannel and declared is not None and channels != declared:
            raise AudioStreamError(
                f"the audio has {channels} channels, not the {declared} declared (channels=)"
            )
        if channels == 1:
            return [pcm]
        frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
        if self.format.multichannel:
            return [np.ascontiguousarray(frames[:, i]).tobytes() for i in range(channels)]
        return [frames.mean(axis=1).round().astype("<i2").tobytes()]
