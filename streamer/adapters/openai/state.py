"""An OpenAI Realtime transcription session's settings in OpenAI's terms: how an update (GA or beta) changes
them, which are refused (:mod:`streamer.adapters.openai.options`), how they map onto a protocol v1
session, and how both shapes render them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.adapters.common import Turns, check_language
from streamer.adapters.openai import options
from streamer.adapters.openai.wire import (
    LOGPROBS,
    BetaSession,
    ClientEventError,
    FormatType,
    GaSession,
    NoiseReduction,
    Transcription,
    TurnDetection,
    invalid,
)
from streamer.protocol import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, Encoding, SessionConfig
from streamer.services import Services

DIARIZE_MODEL = "gpt-4o-transcribe-diarize"  # OpenAI's model name for speaker labels
DEFAULT_RATE = 24000  # OpenAI's PCM rate
G711_RATE = 8000  # audio/pcmu and audio/pcma are telephony's G.711: 8 kHz only
# the session's encoding of each GA format, and the GA format of each beta name
ENCODINGS: dict[FormatType, Encoding] = {
    "audio/pcm": Encoding.PCM16,
    "audio/pcmu": Encoding.MULAW,
    "audio/pcma": Encoding.ALAW,
}
BETA_FORMATS: dict[str, FormatType] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}

# ---- the session's state, in OpenAI's terms


class RealtimeState(BaseModel):
    """What a transcription session is set to (both shapes render from it)."""

    model_config = ConfigDict(frozen=True)

    format: FormatType = "audio/pcm"
    rate: int = DEFAULT_RATE
    transcription: Transcription = Transcription(model="whisper-1")
    turn_detection: TurnDetection | None = TurnDetection(
        threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500
    )
    noise_reduction: NoiseReduction | None = None
    include: list[str] = Field(default_factory=list)

    def updated_ga(self, s: GaSession, explicit_turns: bool) -> RealtimeState:
        _refuse_unsupported(s, options.GA)
        data = self.model_dump()
        audio_in = s.audio.input if s.audio else None
        if audio_in is not None:
            if audio_in.format is not None:
                data["format"] = audio_in.format.type
                data["rate"] = _rate(audio_in.format.type, audio_in.format.rate, "session.audio.input.format")
            if audio_in.transcription is not None:
                data["transcription"] = audio_in.transcription.model_dump()
            if explicit_turns:
                data["turn_detection"] = _turns(audio_in.turn_detection)
            if "noise_reduction" in audio_in.model_fields_set:
                data["noise_reduction"] = (
                    audio_in.noise_reduction.model_dump() if audio_in.noise_reduction else None
                )
        if s.include is not None:
            data["include"] = s.include
        return RealtimeState.model_validate(data)

    def updated_beta(self, s: BetaSession, creating: bool = False) -> RealtimeState:
        _refuse_unsupported(s, options.BETA)
        if not creating and s.client_secret is not None:
            raise ClientEventError(
                "client_secret is set when a session is created, not in an update",
                code="unsupported_parameter",
                param="session.client_secret",
            )
        data = self.model_dump()
        if s.input_audio_format is not None:
            data["format"] = BETA_FORMATS[s.input_audio_format]
            # the beta formats name no rate: pcm16 is OpenAI's 24 kHz, G.711 8 kHz
            data["rate"] = _rate(data["format"], None, "session.input_audio_format")
        if s.input_audio_transcription is not None:
            data["transcription"] = s.input_audio_transcription.model_dump()
        if "turn_detection" in s.model_fields_set:
            data["turn_detection"] = _turns(s.turn_detection)
        if "input_audio_noise_reduction" in s.model_fields_set:
            nr = s.input_audio_noise_reduction
            data["noise_reduction"] = nr.model_dump() if nr else None
        if s.include is not None:
            data["include"] = s.include
        return RealtimeState.model_validate(data)

    @property
    def turns(self) -> Turns:
        td = self.turn_detection
        if td is None:
            return Turns(end_silence_ms=None, gated=False)
        if td.type == "semantic_vad":
            return Turns(end_silence_ms=EAGERNESS_SILENCE_MS[td.eagerness or "auto"])
        return Turns(
            end_silence_ms=td.silence_duration_ms if td.silence_duration_ms is not None else 500,
            start_threshold=td.threshold,
            pre_roll_ms=td.prefix_padding_ms,
        )

    def config(self, services: Services) -> SessionConfig:
        return SessionConfig(
            sample_rate=self.rate,
            encoding=ENCODINGS[self.format],
            language=check_language(services, self.transcription.language),
            # with no language: the ones detection may choose among (a given language makes them moot)
            languages=[]
            if self.transcription.language
            else [check_language(services, code) or code for code in self.transcription.languages or []],
            interim_results=True,
            prompt=self.transcription.prompt or "",
            keywords=self.transcription.keywords or [],
            logprobs=LOGPROBS in self.include,
            # OpenAI's diarizing transcription model: speaker labels, sent as segment events
            diarize=self.transcription.model == DIARIZE_MODEL,
        )

    def ga(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The GA session as REST answers it (a client secret's ``session``): with its id and expiry."""
        described = {"id": session_id, "object": "realtime.transcription_session", "expires_at": expires_at}
        return {"type": "transcription", **described, **self.ga_config()}

    def ga_config(self) -> dict[str, Any]:
        """The GA session as ``session.created`` / ``.updated`` carry it: the SDK's
        ``RealtimeTranscriptionSessionCreateRequest``, which has no id or expiry."""
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": self._format_out(),
                    "transcription": self.transcription.model_dump(exclude_none=True),
                    "turn_detection": self._turns_out(),
                    "noise_reduction": self.noise_reduction.model_dump() if self.noise_reduction else None,
                }
            },
            "include": self.include,
        }

    def beta(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The beta session as ``POST /v1/realtime/transcription_sessions`` answers it."""
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "expires_at": expires_at,
            **self.beta_config(),
            "input_audio_noise_reduction": self.noise_reduction.model_dump()
            if self.noise_reduction
            else None,
            "include": self.include,
        }

    def beta_config(self) -> dict[str, Any]:
        """The beta session as ``transcription_session.*`` events carry it (the SDK's
        ``TranscriptionSession`` less its ``client_secret``, which a live socket never re-sends)."""
        return {
            "input_audio_format": next(k for k, v in BETA_FORMATS.items() if v == self.format),
            "input_audio_transcription": self.transcription.model_dump(exclude_none=True),
            "turn_detection": self._turns_out(),
            "modalities": ["text"],
        }

    def _format_out(self) -> dict[str, Any]:
        """GA's format: PCM names its rate; OpenAI's G.711 formats have no rate field (always 8 kHz)."""
        if self.format == "audio/pcm":
            return {"type": self.format, "rate": self.rate}
        return {"type": self.format}

    def _turns_out(self) -> dict[str, Any] | None:
        return self.turn_detection.model_dump(exclude_none=True) if self.turn_detection else None


def _refuse_unsupported(session: BaseModel, table: dict[str, options.Status]) -> None:
    refused = options.refusal(session, table)
    if refused is not None:
        raise ClientEventError(refused.message, code=refused.code, param=refused.param)


def _rate(kind: FormatType, rate: int | None, param: str) -> int:
    """The sample rate of a format: PCM at 8000-48000 Hz (24000 unless given), G.711 at 8000 only."""
    if kind != "audio/pcm":
        if rate not in (None, G711_RATE):
            raise ClientEventError(
                f"{kind} is G.711 at {G711_RATE} Hz; rate {rate} is not supported",
                code="invalid_value",
                param=f"{param}.rate",
            )
        return G711_RATE
    rate = DEFAULT_RATE if rate is None else rate
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ClientEventError(
            f"sample rate {rate} is not supported: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (OpenAI: 24000)",
            code="invalid_value",
            param=f"{param}.rate",
        )
    return rate


# semantic_vad's eagerness -> the silence after a finished sentence that ends the turn (a pause whose
# words do not end a sentence waits hold_ms longer at any eagerness: the turn detector's verdict)
EAGERNESS_SILENCE_MS = {"high": 300, "medium": 700, "auto": 700, "low": 1500}


def _turns(td: TurnDetection | None) -> dict[str, Any] | None:
    if td is None:
        return None
    if td.type == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": td.eagerness or "auto"}
    return {
        "type": "server_vad",
        "threshold": td.threshold if td.threshold is not None else 0.5,
        "prefix_padding_ms": td.prefix_padding_ms if td.prefix_padding_ms is not None else 300,
        "silence_duration_ms": td.silence_duration_ms if td.silence_duration_ms is not None else 500,
    }


def state_from_ga(raw: dict[str, Any]) -> RealtimeState:
    try:
        session = GaSession.model_validate(raw)
    except ValidationError as e:
        raise invalid(e, None, "session") from e
    audio_in = session.audio.input if session.audio else None
    explicit = audio_in is not None and "turn_detection" in audio_in.model_fields_set
    return RealtimeState().updated_ga(session, explicit)
