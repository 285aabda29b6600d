"""Protocol v1: every message on the wire, validated at the edge, and the close codes.

Client messages are parsed with one ``TypeAdapter`` over a union discriminated by ``type``; every model
forbids unknown fields, so a typo in a config is a clear error rather than a silently ignored option.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

PROTOCOL_SUBPROTOCOL = "streamer.v1"
TOKEN_SUBPROTOCOL_PREFIX = "token."

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
# the longest JSON message the protocol needs is a session.update of a few hundred bytes; anything much
# longer is refused before it is parsed
MAX_TEXT_BYTES = 4096
MAX_PING_ID_CHARS = 64
MAX_PING_ID = 2**53  # what a JavaScript client can hold exactly
AUTO_LANGUAGE = "auto"  # as ``language``: detect each utterance's language (the same as null)
MAX_LANGUAGES = 16  # of a session's ``languages`` (detection's allowed list)
MAX_PROMPT_CHARS = 2000  # the model reads at most its last ~220 tokens
MAX_KEYWORDS = 100  # as Deepgram allows keyterms
MAX_KEYWORD_CHARS = 100


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class Encoding(StrEnum):
    """How a client's audio bytes are encoded (``streamer.pipeline.codecs`` decodes each; a member added
    here is a value of the session config's ``encoding`` at once)."""

    PCM16 = "pcm16"  # signed 16-bit little-endian
    MULAW = "mulaw"  # G.711 μ-law, 8 bits a sample
    ALAW = "alaw"  # G.711 A-law, 8 bits a sample
    # containerized audio, decoded as it streams in (each names the one container it must be)
    WEBM = "webm"  # MediaRecorder's WebM (Opus)
    OGG = "ogg"  # Ogg (Opus, Vorbis or FLAC)
    WAV = "wav"
    MP3 = "mp3"
    FLAC = "flac"  # native FLAC (FLAC in Ogg is ``ogg``)
    CONTAINER = "container"  # any of the above (or ADTS AAC), told by its magic bytes

    @property
    def contained(self) -> bool:
        """Whether the bytes are a container (its header says rate and channels), not raw samples."""
        return self not in (Encoding.PCM16, Encoding.MULAW, Encoding.ALAW)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionConfig(_Wire):
    """What a client may choose for its session (POST body, ``session.update``)."""

    sample_rate: int = Field(default=16000, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    encoding: Encoding = Encoding.PCM16  # of the binary frames; changes only before the first audio
    # the spoken language; None (or "auto") detects it for each utterance
    language: str | None = Field(default=None, min_length=2, max_length=8)
    # with language auto: the languages detection may choose from (empty: any the model knows)
    languages: list[str] = Field(default_factory=list, max_length=MAX_LANGUAGES)
    task: Literal["transcribe", "translate"] = "transcribe"
    translate_to: list[str] = Field(default_factory=list, max_length=8)
    interim_results: bool = True
    word_timestamps: bool = False  # finals carry ``words`` (a second, alignment pass of the model)
    diarize: bool = False  # finals and their words carry ``speaker``; implies word timings
    # What the model is asked (extensions): Whisper's previous text, words to favour (in the model's
    # prompt), a sampling temperature (0: greedy), and what finals carry of the decode
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    keywords: list[str] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    logprobs: bool = False  # finals carry ``logprobs``: each token's log-probability
    decoding: bool = False  # finals carry ``decoding``: the decode's scores and tokens

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        words = [w.strip() for w in v]
        if any(not w or len(w) > MAX_KEYWORD_CHARS for w in words):
            raise ValueError(f"a keyword is 1 to {MAX_KEYWORD_CHARS} characters")
        return words

    @field_validator("language")
    @classmethod
    def _lower_language(cls, v: str | None) -> str | None:
        return None if not v or v.lower() == AUTO_LANGUAGE else v.lower()

    @field_validator("translate_to", "languages")
    @classmethod
    def _lower_codes(cls, v: list[str]) -> list[str]:
        return language_codes(v)

    @model_validator(mode="after")
    def _language_in_languages(self) -> SessionConfig:
        if self.language is not None and self.languages and self.language not in self.languages:
            raise ValueError(f"language {self.language!r} is not one of languages {self.languages}")
        return self


def language_codes(codes: list[str]) -> list[str]:
    """Lower-cased, de-duplicated language codes, in order; a code of the wrong length is refused."""
    out: list[str] = []
    for code in codes:
        code = code.strip().lower()
        if not 2 <= len(code) <= 8:
            raise ValueError(f"bad language code {code!r}")
        if code not in out:
            out.append(code)
    return out


class SessionConfigPatch(_Wire):
    """A partial config for ``session.update``: fields left out keep their value."""

    sample_rate: int | None = Field(default=None, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    encoding: Encoding | None = None
    language: str | None = Field(default=None, min_length=2, max_length=8)
    languages: list[str] | None = Field(default=None, max_length=MAX_LANGUAGES)
    task: Literal["transcribe", "translate"] | None = None
    translate_to: list[str] | None = Field(default=None, max_length=8)
    interim_results: bool | None = None
    word_timestamps: bool | None = None
    diarize: bool | None = None
    prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    keywords: list[str] | None = Field(default=None, max_length=MAX_KEYWORDS)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    logprobs: bool | None = None
    decoding: bool | None = None

    def apply(self, config: SessionConfig) -> SessionConfig:
        """The config with this patch applied, validated as a whole."""
        merged = config.model_dump()
        merged.update(self.model_dump(exclude_unset=True))
        return SessionConfig.model_validate(merged)


class Limits(_Wire):
    max_frame_bytes: int
    max_frame_ms: int
    max_session_s: float
    max_realtime_factor: float
    max_messages_per_s: float


# --- client -> server


class SessionUpdate(_Wire):
    type: Literal["session.update"]
    config: SessionConfigPatch


class InputAudioCommit(_Wire):
    type: Literal["input_audio.commit"]


class SessionClose(_Wire):
    type: Literal["session.close"]


PingId = (
    Annotated[str, Field(max_length=MAX_PING_ID_CHARS)]
    | Annotated[int, Field(ge=-MAX_PING_ID, le=MAX_PING_ID)]
)


class Ping(_Wire):
    type: Literal["ping"]
    id: PingId | None = None  # echoed in the pong, so bounded


ClientMessage = Annotated[SessionUpdate | InputAudioCommit | SessionClose | Ping, Field(discriminator="type")]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


# --- server -> client


class SessionCreated(_Wire):
    type: Literal["session.created"] = "session.created"
    session_id: str
    config: SessionConfig
    limits: Limits
    resumed: bool = False


class SpeechStarted(_Wire):
    type: Literal["speech.started"] = "speech.started"
    segment_id: int
    audio_start_ms: int


class SpeechStopped(_Wire):
    type: Literal["speech.stopped"] = "speech.stopped"
    segment_id: int
    audio_end_ms: int


class TranscriptPartial(_Wire):
    type: Literal["transcript.partial"] = "transcript.partial"
    segment_id: int
    text: str
    stable_text: str = ""


class Word(_Wire):
    """One word of a final, on the session's audio clock (``word_timestamps``)."""

    word: str
    start_ms: int
    end_ms: int
    probability: float
    speaker: int | None = None  # with ``diarize``: its final's speaker


# what ended an utterance: ``silence`` (the end-of-utterance pause), ``max_length`` (split at the
# maximum utterance length, speech goes on), ``commit`` (the client's commit or Finalize), ``drain`` (the
# server ended the stream: shutdown, an error, a dropped connection), ``close`` (the client ended the stream)
EndReason = Literal["silence", "max_length", "commit", "drain", "close"]


class TokenLogprob(_Wire):
    token: str
    logprob: float


class Decoding(_Wire):
    """How the model decoded an utterance (Whisper's per-segment numbers)."""

    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    tokens: list[int]


class TranscriptFinal(_Wire):
    type: Literal["transcript.final"] = "transcript.final"
    segment_id: int
    seq: int
    text: str
    language: str
    # how sure detection was of ``language`` (0-1); left out when the session gave its language
    language_probability: float | None = None
    audio_start_ms: int
    audio_end_ms: int
    words: list[Word] | None = None  # only with ``word_timestamps``; left out of the JSON otherwise
    # with ``diarize`` (left out otherwise, and when no label could be had): 0, 1, 2, ... in order of
    # first appearance in the session, and how close the voice was to that speaker's (0-1)
    speaker: int | None = None
    speaker_confidence: float | None = None
    # with ``diarize``, when a change of speaker split the utterance: another part (final) of the same
    # segment follows (left out otherwise)
    more: bool | None = None
    # the segment's terminal answer when it has no text (left out otherwise): ``too_short`` (a blip),
    # ``nonspeech`` (noise, breath, a rejected hallucination); ``text`` is then empty
    dropped: Literal["too_short", "nonspeech"] | None = None
    # what ended the utterance (every final of the server has it; left out of a replayed older one)
    end_reason: EndReason | None = None
    logprobs: list[TokenLogprob] | None = None  # only with ``logprobs``: the utterance's tokens
    decoding: Decoding | None = None  # only with ``decoding``


class TranslationFinal(_Wire):
    type: Literal["translation.final"] = "translation.final"
    segment_id: int
    seq: int
    language: str
    text: str


class Warning_(_Wire):
    type: Literal["warning"] = "warning"
    code: str
    message: str
    segment_id: int | None = None  # extension: the utterance a warning is about (unrecognized_speech)


class ErrorEvent(_Wire):
    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool = False


class SessionClosed(_Wire):
    type: Literal["session.closed"] = "session.closed"
    reason: str
    audio_ms: int
    finals: int


class Pong(_Wire):
    type: Literal["pong"] = "pong"
    id: str | int | None = None


ServerMessage = (
    SessionCreated
    | SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | TranslationFinal
    | Warning_
    | ErrorEvent
    | SessionClosed
    | Pong
)


def dump(message: ServerMessage) -> str:
    """Serialize a server message to its JSON text frame (a warning omits ``segment_id`` it lacks, a final
    the ``words`` it was not asked for)."""
    return message.model_dump_json(exclude_none=isinstance(message, Warning_ | TranscriptFinal))


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The REST error shape: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message, **extra}}
