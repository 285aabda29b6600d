"""Audio containers, opened only with the demuxers this server supports.

FFmpeg left to itself probes a body against every demuxer it has: an ``ffconcat`` script then reads files
from the server's disk, an SDP description binds UDP ports, an ``sbg`` script synthesizes hours of tone.
So the container is recognized here by its own magic bytes, from a short list, and FFmpeg is told which
demuxer to use; anything else is refused before FFmpeg sees it. Every failure reads the same to the client
(no exception names: they would tell a prober which files exist).
"""

from __future__ import annotations

from typing import IO, Protocol

import av
import av.container

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
LIVE_OPTIONS = {"probesize": "4096", "analyzeduration": "0"}


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
