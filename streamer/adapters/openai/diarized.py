"""OpenAI's ``response_format=diarized_json`` for ``/v1/audio/transcriptions``: the session's diarized
finals as speaker segments (``speaker`` "A", "B", … in order of first appearance, as OpenAI labels them
without known speakers)."""

from __future__ import annotations

import string
from typing import Any

from streamer.protocol import TranscriptFinal

FORMAT = "diarized_json"


def speaker_name(label: int | None) -> str:
    """0 → "A", 25 → "Z", 26 → "AA"; a final without a label (the speaker worker was busy) is "unknown"."""
    if label is None:
        return "unknown"
    name = ""
    label += 1
    while label:
        label, rest = divmod(label - 1, 26)
        name = string.ascii_uppercase[rest] + name
    return name


def diarized(finals: list[TranscriptFinal], seconds: float, usage: dict[str, Any]) -> dict[str, Any]:
    """The ``TranscriptionDiarized`` body: task, duration, text, one segment per final, usage."""
    return {
        "task": "transcribe",
        "duration": round(seconds, 3),
        "text": " ".join(f.text for f in finals),
        "segments": [
            {
                "type": "transcript.text.segment",
                "id": f"seg_{i}",
                "start": f.audio_start_ms / 1000,
                "end": f.audio_end_ms / 1000,
                "text": f.text,
                "speaker": speaker_name(f.speaker),
            }
            for i, f in enumerate(finals)
        ],
        "usage": usage,
    }
