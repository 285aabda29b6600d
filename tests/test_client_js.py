"""web/streamer-client.js follows the documented resume rule (run in Node against a scripted server)."""

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
