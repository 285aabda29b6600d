"""Containers decoded as they stream in: every container a Deepgram client sends, in messages of any size,
gives the same samples as decoding the whole file; bad and hostile streams are refused, bounded."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from encoders import FORMATS, encode, wav_header
from support import read_pcm16

from streamer.adapters.transcriptions import decode_audio
from streamer.errors import InvalidAudioError
from streamer.pipeline.streaming import ContainerDecoder, Expect


def _stream(decoder: ContainerDecoder, data: bytes, chunk: int) -> bytes:
    out = bytearray()
    for i in range(0, len(data), chunk):
        got = decoder.decode(data[i : i + chunk])
        while got:
            out += got
            got = decoder.decode(b"")
    while got := decoder.flush():
        out += got
    return bytes(out)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_pcm16("en_utt1.wav")


@pytest.mark.parametrize("container", sorted(FORMATS))
@pytest.mark.parametrize("chunk", [997, 1 << 16])
def test_streamed_decoding_matches_the_whole_file(speech: np.ndarray, container: str, chunk: int) -> None:
    data = encode(speech, 16000, container)
    whole = decode_audio(io.BytesIO(data), 60)
    streamed = np.frombuffer(_stream(ContainerDecoder(16000), data, chunk), dtype="<i2")
    if container in ("wav", "flac"):  # lossless: the same samples
        assert np.array_equal(streamed, whole)
    else:  # a read-once MP3 cannot look for the encoder's padding note at the end: a frame more at most
        assert abs(streamed.size - whole.size) <= 1152
        n = min(streamed.size, whole.size)
        assert np.corrcoef(streamed[:n], whole[:n])[0, 1] > 0.99


def test_output_comes_while_the_stream_is_still_arriving(speech: np.ndarray) -> None:
    data = encode(speech, 16000, "webm")
    decoder = ContainerDecoder(16000)
    half = len(data) // 2
    early = decoder.decode(data[:half])
    assert len(early) / 2 / 16000 > 1.0  # more than a second decoded before the second half arrives
    decoder.close()


def test_stereo_keeps_its_channels_or_mixes_down(speech: np.ndarray) -> None:
    stereo = np.stack([speech, np.zeros_like(speech)], axis=1)
    data = encode(stereo, 16000, "flac")
    kept = ContainerDecoder(16000, channels=None)
    pcm = np.frombuffer(_stream(kept, data, 4096), dtype="<i2").reshape(-1, 2)
    assert kept.channels == 2
    assert np.array_equal(pcm[:, 0], speech) and not pcm[:, 1].any()
    mixed = np.frombuffer(_stream(ContainerDecoder(16000), data, 4096), dtype="<i2")
    assert mixed.size == speech.size


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 64,  # no container's magic bytes
        b"OggS" + bytes(4000),  # Ogg's magic, then nothing Ogg
        wav_header(1) + bytes(4000),  # 1 Hz: a few KiB would be hours
    ],
)
def test_bad_streams_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidAudioError, match="could not be decoded"):
        _stream(ContainerDecoder(16000), data, 1000)


def test_a_codec_other_than_the_declared_one_is_refused(speech: np.ndarray) -> None:
    with pytest.raises(InvalidAudioError, match="not the declared encoding"):
        _stream(ContainerDecoder(16000, expect=Expect("ogg", "opus")), encode(speech, 16000, "flac"), 4096)


def test_a_bomb_waits_for_its_reader(speech: np.ndarray) -> None:
    """A header that claims hours: the output held never exceeds the bound, however much is claimed."""
    decoder = ContainerDecoder(16000, out_seconds=0.5)
    got = decoder.decode(wav_header(16000) + bytes(200_000))  # 6 s of (silent) samples
    assert 0 < len(got) <= 0.5 * 16000 * 2 + 8192
    decoder.close()
    assert _decode_threads_end()


def _decode_threads_end() -> bool:
    for thread in threading.enumerate():
        if thread.name.startswith("decode-"):
            thread.join(timeout=10)
            if thread.is_alive():
                return False
    return True
