"""Fuzzed containers through the streaming decoder: truncated anywhere, bit-flipped anywhere, each either
decodes or is refused with the one undecodable message, and none hangs or raises anything else."""

from __future__ import annotations

import random

import numpy as np
import pytest
from encoders import FORMATS, encode
from support import read_pcm16

from streamer.errors import InvalidAudioError
from streamer.pipeline.containers import UNDECODABLE
from streamer.pipeline.streaming import ContainerDecoder

CASES = 12  # per container and kind: the suite stays fast
SECONDS = 3  # several Ogg pages (FFmpeg writes one a second): a cut leaves whole ones behind


def _decode(data: bytes) -> int:
    decoder = ContainerDecoder(16000)
    total = 0
    try:
        for i in range(0, len(data), 1500):
            got = decoder.decode(data[i : i + 1500])
            while got:
                total += len(got)
                got = decoder.decode(b"")
        while got := decoder.flush():
            total += len(got)
    finally:
        decoder.close()
    return total


@pytest.fixture(scope="module")
def encoded() -> dict[str, bytes]:
    speech = read_pcm16("en_utt1.wav")[: SECONDS * 16000]
    return {name: encode(speech, 16000, name) for name in FORMATS}


@pytest.mark.parametrize("container", sorted(FORMATS))
def test_truncated_and_bit_flipped_streams_end(encoded: dict[str, bytes], container: str) -> None:
    data = encoded[container]
    rng = random.Random(container)
    variants = [data[: rng.randrange(1, len(data))] for _ in range(CASES)]
    for _ in range(CASES):
        flipped = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            at = rng.randrange(len(flipped))
            flipped[at] ^= 1 << rng.randrange(8)
        variants.append(bytes(flipped))
    for variant in variants:
        try:
            samples = _decode(variant)
        except InvalidAudioError as e:
            assert e.message.startswith(UNDECODABLE), e.message
            continue
        # whatever decodes is bounded by what an honest stream of that length holds
        assert samples <= 2 * SECONDS * 16000 * 2 + 4 * 1152
    # a stream cut after most of it arrived still gives what did arrive (a cut-off last packet is skipped)
    for variant in variants[:CASES]:
        if len(variant) > len(data) * 3 // 4:
            assert _decode(variant) > 0, len(variant)


def test_random_bytes_behind_every_magic_end_refused_or_decoded() -> None:
    """Noise behind each container's magic: the one refusal or some samples, never a hang or a crash."""
    rng = np.random.default_rng(7)
    for magic in (b"RIFF\x00\x00\x00\x00WAVE", b"OggS", b"\x1a\x45\xdf\xa3", b"fLaC", b"ID3", b"\xff\xfb"):
        noise = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
        try:
            _decode(magic + noise)
        except InvalidAudioError as e:
            assert e.message.startswith(UNDECODABLE)
