"""Protocol v1's container encodings: a session's binary messages as one container stream, decoded as it
arrives into the PCM16 the session runs on.

The container is recognized by its magic bytes and must be the one the session's ``encoding`` names
(``container`` takes any the server reads live). Its audio is decoded off the event loop by a
:class:`~streamer.pipeline.streaming.ContainerDecoder` thread, resampled to the session's ``sample_rate``
and mixed to mono, and handed back in pieces of at most one frame (``max_pcm_bytes``), so the caller
paces, charges and counts decoded audio seconds one piece at a time: a stream that decodes to far more
audio than its bytes (hours of Opus silence) is decoded no faster than the caller's pacer lets it.

One :class:`ContainerInput` is one container stream: a resumed connection starts a new one (a
MediaRecorder restarted after a reconnect sends a new header).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from streamer.errors import InvalidAudioError
from streamer.pipeline.audio import pieces
from streamer.pipeline.codecs import Encoding
from streamer.pipeline.containers import UNDECODABLE
from streamer.pipeline.streaming import LIVE_CONTAINERS, AudioStreamError, ContainerDecoder, Expect

# encoding -> the container its bytes must be (``container``: any the server reads live)
EXPECT = {
    Encoding.WEBM: Expect(frozenset({"webm"})),
    Encoding.OGG: Expect(frozenset({"ogg"})),
    Encoding.WAV: Expect(frozenset({"wav"})),
    Encoding.MP3: Expect(frozenset({"mp3"})),
    Encoding.FLAC: Expect(frozenset({"flac"})),
    Encoding.CONTAINER: Expect(),
}


class ContainerInput:
    """One container stream in, mono PCM16 at ``sample_rate`` out, in pieces of at most
    ``max_pcm_bytes``."""

    def __init__(self, encoding: Encoding, sample_rate: int, max_pcm_bytes: int) -> None:
        self.encoding = encoding
        self.max_pcm_bytes = max_pcm_bytes
        self.bytes_in = 0
        self._decoder = ContainerDecoder(sample_rate, 1, expect=EXPECT[encoding], allowed=LIVE_CONTAINERS)

    async def feed(self, data: bytes) -> AsyncIterator[bytes]:
        """The PCM16 that ``data`` completes (maybe none yet: a header, a partial page)."""
        self.bytes_in += len(data)
        async for piece in self._decoded(data):
            yield piece

    async def finish(self) -> AsyncIterator[bytes]:
        """The end of the stream: everything left in the decoder."""
        if self.bytes_in == 0:
            return
        async for piece in self._decoded(None):
            yield piece

    def close(self) -> None:
        """Stop the decoder's thread (the connection is gone)."""
        self._decoder.close()

    async def _decoded(self, data: bytes | None) -> AsyncIterator[bytes]:
        """The decoder's PCM for ``data`` in pieces, or the stream's end as :class:`AudioStreamError`."""
        try:
            async for out in self._decoder.decoded(data):
                for piece in pieces(out, self.max_pcm_bytes):
                    yield piece
        except InvalidAudioError as e:
            message = e.message if e.message.startswith(UNDECODABLE) else f"{UNDECODABLE}: {e.message}"
            raise AudioStreamError(f"{message} (encoding {self.encoding})") from e
