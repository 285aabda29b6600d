"""OpenAI Realtime's client side of the wire: the events and session shapes this server reads (GA and beta),
each a pydantic model that refuses unknown fields as OpenAI does, and the error a refused event carries
(``param``, the event's ``event_id``)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.errors import BadRequestError
from streamer.protocol import MAX_KEYWORD_CHARS, MAX_KEYWORDS, MAX_PROMPT_CHARS

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
SECRET_TTL_S = 600
MAX_SECRET_TTL_S = 7200

# ---- wire models (what this server reads; unknown fields are refused, as OpenAI refuses them)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_In):
    type: FormatType = "audio/pcm"
    rate: int | None = None


Keyword = Annotated[str, Field(min_length=1, max_length=MAX_KEYWORD_CHARS)]
LOGPROBS = "item.input_audio_transcription.logprobs"  # what ``include`` may ask for


class Transcription(_In):
    model: str | None = None
    language: str | None = None
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    delay: str | None = None
    keywords: list[Keyword] | None = Field(default=None, max_length=MAX_KEYWORDS)
    languages: list[str] | None = None


class TurnDetection(_In):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=10_000)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None


class NoiseReduction(_In):
    type: str | None = None
    strength: float | None = None


class AudioInput(_In):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: NoiseReduction | None = None


class Audio(_In):
    input: AudioInput | None = None


class GaSession(_In):
    """``session`` of ``session.update`` and of a client secret (GA)."""

    type: Literal["transcription"]
    audio: Audio | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None


class ExpiresAt(_In):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(default=SECRET_TTL_S, ge=10, le=MAX_SECRET_TTL_S)


class BetaClientSecret(_In):
    expires_at: ExpiresAt | None = None


class BetaSession(_In):
    """``session`` of ``transcription_session.update`` and the body of ``transcription_sessions`` (beta)."""

    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    input_audio_noise_reduction: NoiseReduction | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    modalities: list[str] | None = None
    client_secret: BetaClientSecret | None = None


class SecretRequest(_In):
    expires_after: ExpiresAt | None = None
    session: dict[str, Any] | None = None


class SessionUpdate(_In):
    type: Literal["session.update"]
    event_id: str | None = None
    session: GaSession


class BetaSessionUpdate(_In):
    type: Literal["transcription_session.update"]
    event_id: str | None = None
    session: BetaSession


class Append(_In):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str


class BufferEvent(_In):
    type: Literal["input_audio_buffer.commit", "input_audio_buffer.clear"]
    event_id: str | None = None


CLIENT_EVENTS: dict[str, type[_In]] = {
    "session.update": SessionUpdate,
    "transcription_session.update": BetaSessionUpdate,
    "input_audio_buffer.append": Append,
    "input_audio_buffer.commit": BufferEvent,
    "input_audio_buffer.clear": BufferEvent,
}


class ClientEventError(BadRequestError):
    """A refused client event, with what OpenAI's ``error`` names: ``param`` and the event's id."""

    def __init__(
        self, message: str, *, code: str, param: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.event_id = event_id


def invalid(e: ValidationError, event_id: str | None, prefix: str = "") -> ClientEventError:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    param = f"{prefix}{where}" if prefix and where else (where or prefix or None)
    kind = "unknown_parameter" if first.get("type") == "extra_forbidden" else "invalid_value"
    return ClientEventError(f"{first.get('msg')}: {param}", code=kind, param=param, event_id=event_id)


def json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or the client error that says what is wrong with ``what``."""
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ClientEventError(f"{what} is not valid JSON", code="invalid_json") from e
    if not isinstance(value, dict):
        raise ClientEventError(f"{what} must be a JSON object", code="invalid_value")
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"
