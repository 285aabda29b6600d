"""Audio as clients encode it, turned into the PCM16 every session runs on.

A :class:`Decoder` takes the bytes of a stream as they arrive (in messages of any size) and returns the
PCM16 little-endian samples they complete; ``flush`` returns what is left at the end. Raw encodings
(``pcm16``, G.711 ``mulaw`` and ``alaw``) keep their sample rate and channel count; container decoders
(see ``streamer.pipeline.containers``) add to :func:`open_decoder`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamer.errors import InvalidAudioError

# a wire value, so it lives with the wire messages (``streamer.protocol`` cannot import this module: it
# would be an import cycle through ``streamer.errors``); re-exported here for the decoders' callers
from streamer.protocol import Encoding as Encoding

# bytes a sample takes in each raw encoding; an encoding without an entry (a container) is bounded as if
# it were PCM16, which compressed audio never exceeds
SAMPLE_BYTES = {Encoding.PCM16: 2, Encoding.MULAW: 1, Encoding.ALAW: 1}


class Decoder(Protocol):
    """Bytes of one stream in, PCM16 out (interleaved when ``channels`` > 1)."""

    sample_rate: int
    channels: int

    def decode(self, data: bytes) -> bytes:
        """The PCM16 that ``data`` completes (maybe none yet: a partial sample is held)."""
        ...

    def flush(self) -> bytes:
        """The rest at the end of the stream."""
        ...


def _mulaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 μ-law expansion of every byte value."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 A-law expansion of every byte value."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = a & 0x80, (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


MULAW_TO_PCM = _mulaw_table()
ALAW_TO_PCM = _alaw_table()


class SampleDecoder:
    """Fixed-width samples (``width`` bytes each, ``channels`` interleaved): a message may end inside a
    sample frame, whose bytes wait for the rest; :meth:`convert` turns whole frames into PCM16."""

    width = 2

    def __init__(self, sample_rate: int, channels: int = 1) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._held = b""

    def decode(self, data: bytes) -> bytes:
        data = self._held + data
        whole = len(data) - len(data) % (self.width * self.channels)
        self._held = data[whole:]
        return self.convert(data[:whole])

    def convert(self, data: bytes) -> bytes:
        return data  # PCM16 passes through

    def flush(self) -> bytes:
        if self._held:
            self._held = b""
            raise InvalidAudioError(f"the stream ended inside a {8 * self.width}-bit sample")
        return b""


class PcmDecoder(SampleDecoder):
    """PCM16 passes through; an odd trailing byte waits for its partner."""


class G711Decoder(SampleDecoder):
    """G.711 μ-law or A-law, one byte a sample, expanded by table."""

    width = 1

    def __init__(self, encoding: Encoding, sample_rate: int, channels: int = 1) -> None:
        super().__init__(sample_rate, channels)
        self._table = MULAW_TO_PCM if encoding is Encoding.MULAW else ALAW_TO_PCM

    def convert(self, data: bytes) -> bytes:
        return self._table[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def open_decoder(encoding: Encoding, sample_rate: int, channels: int = 1) -> Decoder:
    """A decoder for one stream of ``encoding``."""
    if encoding is Encoding.PCM16:
        return PcmDecoder(sample_rate, channels)
    return G711Decoder(encoding, sample_rate, channels)
