"""OpenAI's transcription-session options: which this server honours and which it refuses.

Every field of the SDK's session types (GA ``RealtimeTranscriptionSessionCreateRequest`` and its audio
input, beta ``transcription_session.update``'s session) is a path below ``session`` in exactly one table
entry, "supported" or "refused"; a path under a refused one is refused with it.
``tests/adapters/test_options_table.py`` reads the fields from the installed SDK and fails on one that is
not classified here. A refused field given a value (anything but ``null`` or an empty list, which ask
for nothing) is an ``error`` (``unsupported_parameter``, ``param`` naming it) before any audio is taken
under it, never ignored. Fields the SDK does not have are refused by the wire models themselves
(``unknown_parameter``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel

Status = Literal["supported", "refused"]


class Refusal(NamedTuple):
    """Why a session is refused, in the terms of OpenAI's ``error``."""

    message: str
    code: str
    param: str


_TURNS: dict[str, Status] = {
    "turn_detection": "supported",
    "turn_detection.type": "supported",  # server_vad, semantic_vad (its eagerness: the silence that ends)
    "turn_detection.threshold": "supported",
    "turn_detection.prefix_padding_ms": "supported",
    "turn_detection.silence_duration_ms": "supported",
    "turn_detection.create_response": "refused",  # conversation sessions only
    "turn_detection.interrupt_response": "refused",
    "turn_detection.idle_timeout_ms": "refused",
    "turn_detection.eagerness": "supported",  # semantic_vad's
}
_TRANSCRIPTION: dict[str, Status] = {
    "": "supported",
    ".model": "supported",  # any name: the server has one model
    ".language": "supported",
    ".prompt": "supported",  # Whisper's previous text
    ".delay": "refused",
    ".keywords": "supported",  # in the model's prompt (faster-whisper's hotwords)
    ".languages": "supported",  # detection chooses among them (docs/api-openai.md)
}
GA: dict[str, Status] = {
    "type": "supported",
    "include": "supported",  # item.input_audio_transcription.logprobs
    "audio": "supported",
    "audio.input": "supported",
    "audio.input.format": "supported",
    "audio.input.format.type": "supported",  # audio/pcm (the codecs are refused by value)
    "audio.input.format.rate": "supported",
    "audio.input.noise_reduction": "refused",
    **{f"audio.input.transcription{k}": v for k, v in _TRANSCRIPTION.items()},
    **{f"audio.input.{k}": v for k, v in _TURNS.items()},
}
BETA: dict[str, Status] = {
    "client_secret": "supported",  # when creating a session: the secret's lifetime
    "client_secret.expires_at": "supported",
    "client_secret.expires_at.anchor": "supported",
    "client_secret.expires_at.seconds": "supported",
    "include": "supported",
    "input_audio_format": "supported",
    "input_audio_noise_reduction": "refused",
    **{f"input_audio_transcription{k}": v for k, v in _TRANSCRIPTION.items()},
    "modalities": "supported",  # ["text"]: a transcription session answers in text only
    **_TURNS,
}


def status(table: dict[str, Status], path: str) -> Status | None:
    """``path``'s status: its own entry, or a refused ancestor's; None when the table lacks it."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        if table.get(".".join(parts[:i])) == "refused":
            return "refused"
    return table.get(path)


def refusal(session: BaseModel, table: dict[str, Status], prefix: str = "session") -> Refusal | None:
    """The first refused field ``session`` sets (its path in ``param``), or None."""
    for name in type(session).model_fields:
        value = getattr(session, name)
        if name not in session.model_fields_set or value is None or value == []:
            continue
        path = f"{prefix}.{name}"
        if status(table, path.removeprefix("session.")) == "refused":
            said = f"{path} is not supported by this server (see docs/api-openai.md)"
            return Refusal(said, "unsupported_parameter", path)
        if name == "modalities" and value != ["text"]:
            return Refusal('a transcription session answers in text only: ["text"]', "invalid_value", path)
        if isinstance(value, BaseModel) and (inner := refusal(value, table, path)) is not None:
            return inner
    return None
