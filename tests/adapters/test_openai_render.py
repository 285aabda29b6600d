"""The OpenAI Realtime renderer alone (pure: protocol v1 messages in, OpenAI events out): what is stable
before an item is committed waits for its announcement, and an item ends in one terminal event."""

from __future__ import annotations

import json
from typing import Any

from streamer.adapters.openai.render import EventRenderer
from streamer.adapters.openai.state import RealtimeState
from streamer.protocol import (
    ErrorEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    Warning_,
)

DELTA = "conversation.item.input_audio_transcription.delta"


def _events(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames]


def test_deltas_before_the_commit_wait_for_the_items_announcement() -> None:
    render = EventRenderer(RealtimeState(), beta=False)
    assert [e["type"] for e in _events(render.render(SpeechStarted(segment_id=1, audio_start_ms=0)))] == [
        "input_audio_buffer.speech_started"
    ]
    assert render.render(TranscriptPartial(segment_id=1, text="hello there", stable_text="hello")) == []
    assert (
        render.render(TranscriptPartial(segment_id=1, text="hello there you", stable_text="hello there"))
        == []
    )
    stopped = _events(render.render(SpeechStopped(segment_id=1, audio_end_ms=900)))
    assert [e["type"] for e in stopped] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        DELTA,
    ]
    assert stopped[-1]["delta"] == "hello there" and stopped[-1]["item_id"] == stopped[1]["item_id"]
    final = TranscriptFinal(
        segment_id=1, seq=1, text="hello there you", language="en", audio_start_ms=0, audio_end_ms=900
    )
    done = _events(render.render(final))
    assert [(e["type"], e.get("delta")) for e in done] == [
        (DELTA, " you"),
        ("conversation.item.input_audio_transcription.completed", None),
    ]


def test_a_failing_model_fails_each_committed_item_and_only_then() -> None:
    render = EventRenderer(RealtimeState(), beta=True)
    for segment in (1, 2):
        render.render(SpeechStarted(segment_id=segment, audio_start_ms=0))
        render.render(SpeechStopped(segment_id=segment, audio_end_ms=900))
    render.render(SpeechStarted(segment_id=3, audio_start_ms=1000))  # open: the client awaits nothing yet
    failed = _events(render.render(Warning_(code="unrecognized_speech", message="-", segment_id=1)))
    assert [e["type"] for e in failed] == ["conversation.item.input_audio_transcription.failed"]
    error = ErrorEvent(code="model_unavailable", message="the model failed", retryable=True)
    # an error that does not end the session fails no item
    assert [e["type"] for e in _events(render.render(error))] == ["error"]
    ending = _events(render.render(error, session_failed=True))
    assert [e["type"] for e in ending] == ["conversation.item.input_audio_transcription.failed", "error"]
    assert ending[0]["error"]["code"] == "model_unavailable"
    assert [e["type"] for e in _events(render.render(error, session_failed=True))] == ["error"]
