"""web/streamer-client.js follows the documented resume rule and counts audio in the session's encoding (run
in Node against a scripted server)."""

from __future__ import annotations

from pathlib import Path

from support import run_js

HARNESS = Path(__file__).parent / "js" / "resume_rule.mjs"


def test_the_js_client_resumes_from_the_final_before_one_whose_translation_is_missing() -> None:
    result = run_js(HARNESS)
    # final 1 arrived, its translation into es did not: resume from 0 (docs/protocol.md), not 1
    assert result["resumeFrom"] == 0
    assert result["lastSeq"] == "0"
    # the replayed final 1 is not delivered twice; its translation and what follows are
    assert result["delivered"] == [
        "session.created::",
        "transcript.final:1:en",
        "session.created::",
        "translation.final:1:es",
        "transcript.final:2:en",
    ]


def test_the_js_client_counts_g711_audio_by_its_one_byte_samples() -> None:
    result = run_js(Path(__file__).parent / "js" / "g711_frames.mjs")
    # split at the session's largest frame (1 s of μ-law is 8000 bytes)
    assert result["sizes"] == [8000, 8000, 4000]
    # the resume re-sends from the frame that holds 1.5 s, which starts at 1 s of audio (counted as
    # PCM16, the three frames would have been 1.25 s in all, and the client would re-send nothing)
    assert result["params"]["audio_from_ms"] == "1000"


def test_the_js_client_sends_a_containers_chunks_in_order_and_starts_a_new_stream_on_resume() -> None:
    result = run_js(Path(__file__).parent / "js" / "container_chunks.mjs")
    # none dropped while connecting (raw audio would keep only maxBufferMs), a typed array after a Blob
    # goes after it, and session.close after the last chunk
    assert result["first"] == ["HEADER", "c1", "c2", "c3"]
    # the resumed socket: no audio_from_ms and nothing re-sent; the old recorder's chunk is discarded
    assert result["params"] == {"last_seq": "0"}
    assert result["second"] == ["HEADER2", "session.close"]
