"""Both clients keep the audio sent after their last final and send it again on resume (durable sessions).

The Python client's buffer is checked directly; the browser client (web/streamer-client.js) runs in Node
against a scripted server (tests/js/resend_on_resume.mjs).
"""

from __future__ import annotations

from pathlib import Path

from support import run_js

from streamer.client import AudioBuffer

HARNESS = Path(__file__).parent / "js" / "resend_on_resume.mjs"
CHUNK_100MS = b"\x01\x00" * 1600  # 100 ms at 16 kHz


def test_the_buffer_keeps_what_follows_the_transcribed_point_in_whole_chunks() -> None:
    buffer = AudioBuffer()
    for _ in range(5):
        buffer.add(CHUNK_100MS, 16000)
    assert (buffer.start_ms, buffer.end_ms) == (0.0, 500.0)
    buffer.transcribed_until(250)  # chunks ending at 100 and 200 ms go; the one holding 250 stays
    assert buffer.start_ms == 200.0
    assert b"".join(buffer.frames(32_000)) == CHUNK_100MS * 3
    buffer.transcribed_until(10_000)
    assert (buffer.start_ms, list(buffer.frames(32_000))) == (500.0, [])


def test_the_buffer_is_bounded_and_resends_in_few_frames() -> None:
    buffer = AudioBuffer(max_ms=1000)
    for _ in range(25):
        buffer.add(CHUNK_100MS, 16000)
    assert (buffer.start_ms, buffer.end_ms) == (1500.0, 2500.0)  # the oldest 1.5 s went
    frames = list(buffer.frames(len(CHUNK_100MS) * 4))
    assert [len(f) // len(CHUNK_100MS) for f in frames] == [4, 4, 2]
    # at another sample rate a chunk's length in time follows its rate
    buffer.add(b"\x00\x00" * 800, 8000)
    assert buffer.end_ms == 2600.0


def test_the_js_client_resends_the_audio_after_the_transcribed_point_on_resume() -> None:
    result = run_js(HARNESS)
    # frames 1..5 were 0..500 ms; the server says 300 ms are transcribed: 4 and 5 again, from 300 ms
    assert result["params"] == {"last_seq": "1", "audio_from_ms": "300"}
    assert result["first"] == [1, 2, 3, 4, 5]
    # then the frame buffered while reconnecting, then live audio: in order, nothing twice
    assert result["second"] == [4, 5, 6, 7]
