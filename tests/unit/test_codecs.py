"""G.711 and PCM16 decoding: the tables against FFmpeg's own decoders, and messages of any size."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streamer.errors import InvalidAudioError
from streamer.pipeline.codecs import ALAW_TO_PCM, MULAW_TO_PCM, Encoding, open_decoder


@pytest.mark.parametrize(("codec", "table"), [("pcm_mulaw", MULAW_TO_PCM), ("pcm_alaw", ALAW_TO_PCM)])
def test_g711_tables_match_ffmpeg(codec: str, table: np.ndarray) -> None:
    context = av.CodecContext.create(codec, "r")
    context.sample_rate, context.layout = 8000, "mono"
    frames = context.decode(av.Packet(bytes(range(256))))
    expected = np.concatenate([f.to_ndarray().ravel() for f in frames]).astype(np.int16)
    assert np.array_equal(expected, table)


@pytest.mark.parametrize("encoding", list(Encoding))
def test_any_split_of_a_stream_decodes_to_the_same_samples(encoding: Encoding) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=4001, dtype=np.uint8).tobytes()[:4000]
    whole = open_decoder(encoding, 8000).decode(data)
    decoder = open_decoder(encoding, 8000)
    cuts = sorted(rng.choice(np.arange(1, len(data)), size=50, replace=False))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert b"".join(decoder.decode(p) for p in pieces) + decoder.flush() == whole
    assert len(whole) == (len(data) if encoding is Encoding.PCM16 else 2 * len(data))


def test_pcm16_stream_ending_inside_a_sample_is_an_error() -> None:
    decoder = open_decoder(Encoding.PCM16, 16000)
    assert decoder.decode(b"\x01\x02\x03") == b"\x01\x02"
    with pytest.raises(InvalidAudioError):
        decoder.flush()
