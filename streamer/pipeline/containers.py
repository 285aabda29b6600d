"""Audio containers, opened only with the demuxers this server supports.

FFmpeg left to itself probes a body against every demuxer it has: an ``ffconcat`` script then reads files
from the server's disk, an SDP description binds UDP ports, an ``sbg`` script synthesizes hours of tone.
So the container is recognized here by its own magic bytes, from a short list, and FFmpeg is told which
demuxer to use; anything else is refused before FFmpeg sees it. Every failure reads the same to the client
(no exception names: they would tell a prober which files exist).
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Protocol

import av
import av.container
import numpy as np
import numpy.typing as npt

from streamer.errors import InvalidAudioError

UNDECODABLE = "the audio could not be decoded"

# container -> FFmpeg demuxer
DEMUXERS = {
    "wav": "wav",
    "ogg": "ogg",  # Opus, Vorbis, FLAC in Ogg
    "webm": "matroska",  # MediaRecorder's WebM/Opus, Matroska
    "flac": "flac",
    "mp3": "mp3",
    "mp4": "mov",  # M4A/MP4 (AAC, ALAC); needs the whole file (its index may come last)
    "aac": "aac",  # ADTS
}

HEAD_BYTES = 12  # enough to tell every container in DEMUXERS apart
# the stream's parameters are read from its header and first packets: a live stream must not wait for
# FFmpeg's default 5 MB / 5 s of look-ahead before its first result
LIVE_OPTIONS = {"probesize": "32", "analyzeduration": "0"}


class Readable(Protocol):
    """A source read front to back (a live stream): FFmpeg gets no ``seek``."""

    def read(self, size: int = -1, /) -> bytes: ...


def sniff(head: bytes) -> str | None:
    """The container whose magic bytes ``head`` starts with (a key of ``DEMUXERS``), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"fLaC":
        return "flac"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync, a layer given
            return "mp3"
    return None


def open_input(source: IO[bytes]) -> av.container.InputContainer:
    """``source`` opened with the demuxer its magic bytes name; InvalidAudioError for anything else."""
    start = source.tell()
    container_kind = sniff(source.read(HEAD_BYTES))
    source.seek(start)
    if container_kind is None:
        raise InvalidAudioError(f"{UNDECODABLE}: not a supported container ({', '.join(DEMUXERS)})")
    return open_stream(source, container_kind)


def open_stream(
    source: IO[bytes] | Readable, container_kind: str, *, live: bool = False
) -> av.container.InputContainer:
    """``source`` (a file, or anything with ``read``: then read once, front to back, never seeked)
    opened with the named container's demuxer; InvalidAudioError when it is not one with audio.
    ``live``: read no further ahead than the stream's parameters need."""
    options = LIVE_OPTIONS if live else {}
    try:
        container = av.open(source, mode="r", format=DEMUXERS[container_kind], options=options)
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:
        raise InvalidAudioError(f"{UNDECODABLE} as {container_kind}") from e
    if not container.streams.audio:
        container.close()
        raise InvalidAudioError(f"{UNDECODABLE}: the {container_kind} holds no audio stream")
    return container


# WAV codings FFmpeg reads with a raw demuxer once the header is stripped: (format tag, bits) -> demuxer
RAW_PCM = {
    (1, 8): "u8",
    (1, 16): "s16le",
    (1, 24): "s24le",
    (1, 32): "s32le",
    (3, 32): "f32le",
    (3, 64): "f64le",
    (6, 8): "alaw",
    (7, 8): "mulaw",
}
WAV_HEAD_MAX = 1 << 16  # the chunks before the samples; more is not a recording's header
EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class WavLayout:
    """A WAV header: where the samples start and how they are coded."""

    offset: int
    format_tag: int
    channels: int
    rate: int
    bits: int

    @property
    def demuxer(self) -> str | None:
        """FFmpeg's raw demuxer for the samples, or None (then FFmpeg's WAV demuxer reads the file)."""
        return RAW_PCM.get((self.format_tag, self.bits))


def parse_wav(head: bytes) -> WavLayout | None:
    """The header at the start of ``head`` (a RIFF/WAVE stream), or None while it is still incomplete.

    Reading the header here, not in FFmpeg, lets a live stream start at once: FFmpeg's WAV demuxer reads
    64 KiB ahead (looking for S/PDIF data) before it returns a sample, two seconds of 16 kHz mono.
    """
    at, fmt = 12, None
    while True:
        if at + 8 > len(head):
            if len(head) >= WAV_HEAD_MAX:
                raise InvalidAudioError(f"{UNDECODABLE}: the WAV header is longer than {WAV_HEAD_MAX} bytes")
            return None
        chunk, size = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "little")
        body = at + 8
        if chunk == b"data":
            if fmt is None:
                raise InvalidAudioError(f"{UNDECODABLE}: the WAV has no format before its samples")
            return WavLayout(body, *fmt)
        if body + size > WAV_HEAD_MAX:
            raise InvalidAudioError(f"{UNDECODABLE}: the WAV header is longer than {WAV_HEAD_MAX} bytes")
        if body + size > len(head):
            return None
        if chunk == b"fmt ":
            if size < 16:
                raise InvalidAudioError(f"{UNDECODABLE}: a WAV format chunk of {size} bytes")
            tag, channels, rate = struct.unpack_from("<HHI", head, body)
            bits = struct.unpack_from("<H", head, body + 14)[0]
            if tag == EXTENSIBLE and size >= 26:
                tag = struct.unpack_from("<H", head, body + 24)[0]  # the sub-format GUID's first two bytes
            fmt = (tag, channels, rate, bits)
        at = body + size + size % 2


def open_pcm(source: Readable, wav: WavLayout, layout: str) -> av.container.InputContainer:
    """The samples after a WAV header (already read), through FFmpeg's raw demuxer for their coding."""
    assert wav.demuxer is not None
    options = {**LIVE_OPTIONS, "sample_rate": str(wav.rate), "ch_layout": layout}
    try:
        return av.open(source, mode="r", format=wav.demuxer, options=options)
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:
        raise InvalidAudioError(f"{UNDECODABLE} as wav") from e


def decoded_chunks(
    source: IO[bytes], *, rate: int, chunk_samples: int, min_rate: int
) -> Generator[npt.NDArray[np.int16], None, None]:
    """``source``'s first audio stream as mono s16 samples at ``rate``, ``chunk_samples`` at a time (the
    last chunk shorter), decoded lazily: only what the caller takes is decoded, so a long file is never
    held whole. Run it in a worker thread; closing the generator closes the container.

    A stream (or a frame) sampled under ``min_rate`` is refused: resampling a header that declares 1 Hz
    would turn a few kilobytes into an hour of audio. Every decoding failure is InvalidAudioError.
    """
    pending: list[npt.NDArray[np.int16]] = []
    held = 0
    try:
        with open_input(source) as container:
            stream = container.streams.audio[0]
            if stream.codec_context.sample_rate:  # 0: not declared; each frame's is checked
                _check_rate(stream.codec_context.sample_rate, min_rate)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            frames = container.decode(stream)
            while True:
                frame = next(frames, None)
                if frame is not None:
                    _check_rate(frame.sample_rate, min_rate)
                outs = resampler.resample(frame)
                for out in outs:
                    samples = out.to_ndarray().reshape(-1).astype("<i2", copy=False)
                    pending.append(samples)
                    held += samples.size
                    while held >= chunk_samples:
                        joined = np.concatenate(pending)
                        yield joined[:chunk_samples]
                        pending, held = [joined[chunk_samples:]], joined.size - chunk_samples
                if frame is None:
                    break
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:  # FFmpeg's and PyAV's refusals
        raise InvalidAudioError(UNDECODABLE) from e  # one message for all: no oracle of the cause
    if held:
        yield np.concatenate(pending)


def _check_rate(sample_rate: int, min_rate: int) -> None:
    if sample_rate < min_rate:
        raise InvalidAudioError(f"the audio's sample rate ({sample_rate} Hz) is under {min_rate} Hz")
