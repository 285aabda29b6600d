"""The shapes the REST handlers answer with, as pydantic models: what :mod:`streamer.openapi` describes.

The wire models of :mod:`streamer.protocol` (``SessionConfig``, ``Limits``) are described from there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode

from streamer.protocol import Limits, SessionConfig


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionGrantBody(_Body):
    """``201`` from ``POST /v1/sessions`` and ``POST /v1/demo/session``."""

    session_id: str
    token: str = Field(description="Single-use JWT for GET /v1/stream (?token= or token.<jwt> subprotocol)")
    expires_at: float = Field(description="Unix time after which the token can no longer connect")
    ws_url: str
    config: SessionConfig
    limits: Limits


class ResumeGrantBody(SessionGrantBody):
    """``201`` from ``POST /v1/sessions/{session_id}/resume``."""

    last_seq: int = Field(description="The seq of the last final the session has produced")
    transcribed_until_ms: int = Field(
        description="Session time before which all audio is in a final or held no speech: a client sends "
        "again what it kept from there on (GET /v1/stream with audio_from_ms)"
    )


class ErrorDetail(BaseModel):
    # the contract fixes code and message; an error may carry more (never secrets or stack traces)
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(_Body):
    error: ErrorDetail


class AsrInfo(_Body):
    name: str
    multilingual: bool
    languages: list[str]
    tasks: list[Literal["transcribe", "translate"]]


class ModelsBody(_Body):
    asr: AsrInfo
    mt: dict[str, Any] | None


class OpenAIModel(_Body):
    """One entry of OpenAI's model list (``GET /v1/models``), and ``GET /v1/models/{model}``."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(ModelsBody):
    """``GET /v1/models``: OpenAI's list; ``asr`` and ``mt`` are deprecated (``GET /v1/stream/models``)."""

    object: Literal["list"]
    data: list[OpenAIModel]


class HealthBody(_Body):
    status: Literal["ok"]


class ReadinessBody(_Body):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


# ---- the vendor-compatible surfaces (streamer/adapters/, docs/api-openai.md, docs/api-deepgram.md)


class DeepgramGrantRequest(_Body):
    ttl_seconds: float | None = Field(default=None, ge=1, le=3600)


class DeepgramGrantBody(_Body):
    """``200`` from ``POST /v1/auth/grant``: a single-use token for one ``GET /v1/listen``."""

    access_token: str
    expires_in: float


class DeepgramErrorBody(_Body):
    err_code: str
    err_msg: str
    request_id: str


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str
    type: str
    code: str | None
    param: str | None = None


class OpenAIErrorBody(_Body):
    error: OpenAIErrorDetail


class ClientSecretBody(BaseModel):
    """``200`` from ``POST /v1/realtime/client_secrets``: a single-use secret for one session."""

    model_config = ConfigDict(extra="allow")

    value: str = Field(description="ek_...: the credential for GET /v1/realtime (Bearer or subprotocol)")
    expires_at: int
    session: dict[str, Any]


class TranscriptionSessionBody(BaseModel):
    """``200`` from ``POST /v1/realtime/transcription_sessions`` (the beta shape)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["realtime.transcription_session"]
    client_secret: dict[str, Any]


class TranscriptionBody(BaseModel):
    """``200`` from ``POST /v1/audio/transcriptions`` (json and verbose_json)."""

    model_config = ConfigDict(extra="allow")

    text: str


MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (DeepgramGrantRequest, "validation"),
    (DeepgramGrantBody, "serialization"),
    (DeepgramErrorBody, "serialization"),
    (OpenAIErrorBody, "serialization"),
    (ClientSecretBody, "serialization"),
    (TranscriptionSessionBody, "serialization"),
    (TranscriptionBody, "serialization"),
    (SessionConfig, "validation"),
    (SessionGrantBody, "serialization"),
    (ResumeGrantBody, "serialization"),
    (ErrorBody, "serialization"),
    (ModelsBody, "serialization"),
    (OpenAIModel, "serialization"),
    (OpenAIModelList, "serialization"),
    (HealthBody, "serialization"),
    (ReadinessBody, "serialization"),
]
