"""Audio containers, opened only with the demuxers this server supports.

FFmpeg left to itself probes a body against every demuxer it has: an ``ffconcat`` script then reads files
from the server's disk, an SDP description binds UDP ports, an ``sbg`` script synthesizes hours of tone.
So the container is recognized here by its own magic bytes, from a short list, and FFmpeg is told which
demuxer to use; anything else is refused before FFmpeg sees it. Every failure reads the same to the client
(no exception names: they would tell a prober which files exist).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import IO

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
    try:
        container = av.open(source, mode="r", format=DEMUXERS[container_kind])
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:
        raise InvalidAudioError(f"{UNDECODABLE} as {container_kind}") from e
    if not container.streams.audio:
        container.close()
        raise InvalidAudioError(f"{UNDECODABLE}: the {container_kind} holds no audio stream")
    return container


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
