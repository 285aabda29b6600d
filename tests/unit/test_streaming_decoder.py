"""Containers decoded as they stream in: every container a Deepgram client sends, in messages of any size,
gives the same samples as decoding the whole file; bad and hostile streams are refused, bounded."""

from __future__ import annotations

import io
import threading

import av
import numpy as np
import pytest
from encoders import FORMATS, encode, wav_header
from support import read_pcm16

from streamer.errors import InvalidAudioError
from streamer.pipeline.containers import decoded_chunks
from streamer.pipeline.streaming import ContainerDecoder, Expect


def decode_audio(source: io.BytesIO, seconds: int) -> np.ndarray:
    """The whole file decoded at once, as uploads decode it (the reference for the streamed decoder)."""
    return np.concatenate(
        list(decoded_chunks(source, rate=16000, chunk_samples=seconds * 16000, min_rate=8000))
    )


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


# left out: Ogg (FFmpeg's muxer writes pages of a second, and a page is read whole) and FLAC (FFmpeg's
# parser holds about ten frames, 2.5 s at 16 kHz, to find frame boundaries)
@pytest.mark.parametrize("container", ["wav", "webm", "mp3"])
def test_output_comes_while_the_stream_is_still_arriving(speech: np.ndarray, container: str) -> None:
    data = encode(speech, 16000, container)
    decoder = ContainerDecoder(16000)
    try:
        early = decoder.decode(data[: len(data) // 3])
    finally:
        decoder.close()
    # at least half a second decoded from the first third of the stream (1.1 s of audio)
    assert len(early) / 2 / 16000 > 0.5, container


@pytest.mark.parametrize(
    ("codec", "bits"), [("pcm_mulaw", 8), ("pcm_alaw", 8), ("pcm_f32le", 32), ("pcm_u8", 8)]
)
def test_wav_codings_read_raw_after_the_header_match_ffmpeg(
    speech: np.ndarray, codec: str, bits: int
) -> None:
    out = io.BytesIO()
    with av.open(out, "w", format="wav") as file:
        stream = file.add_stream(codec, rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(speech.reshape(1, -1), format="s16", layout="mono")
        frame.rate = 16000
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=8000)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                file.mux(packet)
    data = out.getvalue()
    whole = decode_audio(io.BytesIO(data), 60)
    streamed = np.frombuffer(_stream(ContainerDecoder(16000), data, 501), dtype="<i2")
    assert abs(streamed.size - whole.size) <= 16 and np.corrcoef(streamed[:8000], whole[:8000])[0, 1] > 0.99


def test_a_wav_header_that_never_ends_is_refused() -> None:
    endless = wav_header(16000)[:12] + b"LIST" + (1 << 30).to_bytes(4, "little") + bytes(70_000)
    with pytest.raises(InvalidAudioError, match="header is longer"):
        _stream(ContainerDecoder(16000), endless, 4096)


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
        _stream(
            ContainerDecoder(16000, expect=Expect(frozenset({"ogg"}), "opus")),
            encode(speech, 16000, "flac"),
            4096,
        )


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


@pytest.mark.parametrize("container", ["wav", "webm", "mp3"])
async def test_the_event_loops_decoding_gives_the_same_samples(speech: np.ndarray, container: str) -> None:
    data = encode(speech, 16000, container)
    expected = _stream(ContainerDecoder(16000), data, 997)
    decoder = ContainerDecoder(16000)
    out = bytearray()
    for i in range(0, len(data), 997):
        got = await decoder.decode_async(data[i : i + 997])
        while got:
            out += got
            got = await decoder.decode_async(b"")
    while got := await decoder.flush_async():
        out += got
    assert bytes(out) == expected
