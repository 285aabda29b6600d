"""The client's G.711 encoders against the server's decoders (whose tables match FFmpeg's)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.client_audio import alaw_encode, encode, mulaw_encode
from streamer.pipeline.codecs import ALAW_TO_PCM, MULAW_TO_PCM

EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


@pytest.mark.parametrize(("encoder", "table"), [(mulaw_encode, MULAW_TO_PCM), (alaw_encode, ALAW_TO_PCM)])
def test_every_code_encodes_back_to_itself(encoder: object, table: np.ndarray) -> None:
    codes = np.frombuffer(encoder(table), dtype=np.uint8)  # type: ignore[operator]
    same = codes == np.arange(256)
    # μ-law has two zeros (0x7F and 0xFF): zero encodes to 0xFF
    assert same.all() or (table is MULAW_TO_PCM and np.flatnonzero(~same).tolist() == [0x7F])


@pytest.mark.parametrize(("encoder", "table"), [(mulaw_encode, MULAW_TO_PCM), (alaw_encode, ALAW_TO_PCM)])
def test_every_sample_decodes_within_its_step(encoder: object, table: np.ndarray) -> None:
    decoded = table[np.frombuffer(encoder(EVERY_SAMPLE), dtype=np.uint8)].astype(np.int32)  # type: ignore[operator]
    error = np.abs(decoded - EVERY_SAMPLE.astype(np.int32))
    # the steps double with each segment: at most 1024 off in the loudest one;
    # quiet samples are within their first step of 8 (μ-law) or 16 (A-law)
    assert error.max() <= 1024
    quiet = np.abs(EVERY_SAMPLE.astype(np.int32)) < 32
    assert error[quiet].max() <= 8


def test_encode_by_name() -> None:
    pcm = np.array([0, 1000, -1000], dtype="<i2").tobytes()
    assert encode(pcm, "pcm16") == pcm
    assert encode(pcm, "mulaw") == mulaw_encode(np.frombuffer(pcm, "<i2"))
    assert encode(pcm, "alaw")[0] == 0xD5  # A-law's silence
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(pcm, "opus")
