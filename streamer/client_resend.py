"""What a client keeps to send again when it resumes: the audio after the last final, bounded."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class AudioBuffer:
    """The audio sent after the last final, kept to be sent again on resume: at most ``max_ms``.

    Chunks are kept whole (each was a valid frame) with their start in session time (ms, counted from
    the first sample sent); the oldest go first when the bound is passed.
    """

    def __init__(self, max_ms: float = 30_000.0) -> None:
        self.max_ms = max_ms
        self.end_ms = 0.0  # session time after the last chunk sent (or lost)
        self._chunks: deque[tuple[float, float, bytes]] = deque()  # (start ms, duration ms, pcm)
        self._held_ms = 0.0

    def add(self, pcm: bytes, sample_rate: int, sample_size: int = 2) -> None:
        """A chunk as sent (``sample_size`` bytes a sample in the session's encoding)."""
        duration = len(pcm) / sample_size / sample_rate * 1000
        self._chunks.append((self.end_ms, duration, pcm))
        self.end_ms += duration
        self._held_ms += duration
        while self._held_ms > self.max_ms and len(self._chunks) > 1:
            self._held_ms -= self._chunks.popleft()[1]

    def transcribed_until(self, ms: float) -> None:
        """The server will not need audio before ``ms``: drop the chunks that end at or before it."""
        while self._chunks and self._chunks[0][0] + self._chunks[0][1] <= ms:
            self._held_ms -= self._chunks.popleft()[1]

    @property
    def start_ms(self) -> float:
        """Where the buffered audio starts (``end_ms`` when nothing is buffered)."""
        return self._chunks[0][0] if self._chunks else self.end_ms

    def frames(self, max_bytes: int) -> Iterator[bytes]:
        """The buffered audio as frames of up to ``max_bytes`` (whole chunks joined: fewer messages)."""
        frame = b""
        for _, _, pcm in list(self._chunks):
            if frame and len(frame) + len(pcm) > max_bytes:
                yield frame
                frame = b""
            frame += pcm
        if frame:
            yield frame
