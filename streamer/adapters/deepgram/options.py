"""A Deepgram request: its credentials, what it asks for (the ``/v1/listen`` query), refusals in Deepgram's
shape."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping

from streamer import tracing
from streamer.adapters.common import Turns, check_language, key_record, redeem, retune
from streamer.adapters.deepgram.audio import AudioFormat
from streamer.adapters.deepgram.query import ERR_CODES, check_query
from streamer.edge.credentials import authorization, offered_subprotocols, retry_after
from streamer.edge.handshake import REQUEST_ID
from streamer.errors import AuthError, ConfigError, StreamerError
from streamer.guards.keys import KeyRecord
from streamer.guards.tokens import DEEPGRAM_AUDIENCE
from streamer.pipeline.align import supports_word_timestamps
from streamer.pipeline.textformat import TextFormat
from streamer.protocol import MAX_KEYWORD_CHARS, MAX_KEYWORDS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, SessionConfig
from streamer.services import Services
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

SUBPROTOCOLS = ("token", "bearer")
MIN_ENDPOINTING_MS = 100  # our VAD hears silence in 32 ms windows; shorter endpoints cut words apart


class DeepgramRequestError(Exception):
    """A refused request, in Deepgram's shape: HTTP status and ``err_code``."""

    def __init__(self, status: int, err_code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.err_code = err_code
        self.message = message
        self.retry_after = retry_after


def from_domain(e: StreamerError) -> DeepgramRequestError:
    return DeepgramRequestError(e.status, ERR_CODES.get(e.status, e.code.upper()), e.message, e.retry_after)


def refusal(e: StreamerError) -> web.Response:
    """A refusal in Deepgram's shape, with a request id of its own."""
    return error_response(from_domain(e), str(uuid.uuid4()))


def error_response(e: DeepgramRequestError, request_id: str) -> web.Response:
    # the message may quote the client's input: a header value must not carry its control characters
    printable = "".join(c if c.isprintable() else " " for c in e.message[:200])
    headers = {"dg-request-id": request_id, "dg-error": printable}
    if e.retry_after is not None:
        headers["Retry-After"] = retry_after(e.retry_after)
    body = {"err_code": e.err_code, "err_msg": e.message, "request_id": request_id}
    return web.json_response(body, status=e.status, headers=headers)


def flag(query: MultiMapping[str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    return value == "true"


def integer(query: MultiMapping[str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, not {raw!r}")
    return int(raw)


REDACT_VALUES = {
    "pci": "pci",
    "ssn": "ssn",
    "numbers": "numbers",
    "true": "numbers",
    "aggressive_numbers": "numbers",
}


def redactions(query: MultiMapping[str]) -> frozenset[str]:
    """``redact`` (repeatable): ``pci``, ``ssn``, ``numbers`` (or ``true``, ``aggressive_numbers``);
    ``false`` is none. Deepgram's entity groups (``pii``, ``phi``) and single entities are refused."""
    kinds: set[str] = set()
    for raw in query.getall("redact", []):
        value = raw.strip().lower()
        if value == "false":
            continue
        if value not in REDACT_VALUES:
            raise ConfigError(f"redact={raw[:64]!r} is not supported: pci, ssn, numbers or true")
        kinds.add(REDACT_VALUES[value])
    return frozenset(kinds)


@dataclass(frozen=True)
class ListenOptions:
    """The ``/v1/listen`` query this server honours (any other option is refused: ``query``)."""

    audio: AudioFormat
    language: str | None
    languages: tuple[str, ...]  # language=multi: detection chooses among these (language_hint); () any
    interim_results: bool
    text_format: TextFormat  # punctuate, smart_format, numerals, redact, profanity_filter, filler_words
    endpointing_ms: int | None  # None: endpointing=false (only Finalize / CloseStream end an utterance)
    utterance_end_ms: int | None
    vad_events: bool
    utterances: bool  # pre-recorded: the response lists utterances
    diarize: bool  # words carry ``speaker`` (a session's ``diarize``; refused when the server has none)
    model: str
    keywords: tuple[str, ...] = ()  # keyterm and keywords: words to favour, in the model's prompt

    @property
    def punctuate(self) -> bool:
        return self.text_format.punctuate

    @classmethod
    def parse(cls, query: MultiMapping[str], services: Services, prerecorded: bool = False) -> ListenOptions:
        check_query(query, prerecorded)
        encoding = query.get("encoding", "").strip().lower() or None
        audio = AudioFormat.parse(
            encoding,
            integer(query, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
            integer(query, "channels", 1, 1 << 16),
            flag(query, "multichannel", False),
        )
        endpointing = query.get("endpointing", "true").strip().lower()
        if endpointing == "false":
            endpointing_ms = None
        elif endpointing == "true":
            endpointing_ms = services.settings.end_silence_ms
        else:
            endpointing_ms = max(MIN_ENDPOINTING_MS, integer(query, "endpointing", 0, 60_000) or 0)
        smart = flag(query, "smart_format", False)
        if flag(query, "filler_words", False):
            # Whisper does not write "uh" and "um": asked for, they could not be given
            raise ConfigError(
                "filler_words=true is not supported: this server's model does not transcribe fillers"
            )
        text_format = TextFormat(
            punctuate=flag(query, "punctuate", False) or smart,
            numerals=flag(query, "numerals", False),
            smart_format=smart,
            profanity_filter=flag(query, "profanity_filter", False),
            redact=redactions(query),
        )
        # as on Deepgram, no language is English; multi detects each utterance's, and only then are the
        # language_hint codes read (Deepgram biases detection toward them; here it chooses among them)
        multi = query.get("language") == "multi"
        hints = [check_language(services, hint) or "" for hint in query.getall("language_hint", [])]
        return cls(
            audio=audio,
            language=None if multi else check_language(services, query.get("language", "en")),
            languages=tuple(dict.fromkeys(hints)) if multi else (),
            interim_results=flag(query, "interim_results", False),
            text_format=text_format,
            endpointing_ms=endpointing_ms,
            utterance_end_ms=integer(query, "utterance_end_ms", 1000, 5000),
            vad_events=flag(query, "vad_events", False),
            utterances=flag(query, "utterances", False),
            diarize=flag(query, "diarize", False),
            model=query.get("model", "general"),
            keywords=boosted(query),
        )


def boosted(query: MultiMapping[str]) -> tuple[str, ...]:
    """``keyterm`` phrases and ``keywords`` words, in order, once each.

    Whisper is steered by putting the words in its prompt (faster-whisper's ``hotwords``): a word is
    favoured or not, so a ``keywords`` intensifier (``word:2``) must be positive, and its size is not
    graded; a zero or negative one (Deepgram's suppression) cannot be honoured and is refused.
    """
    words = [term.strip() for term in query.getall("keyterm", [])]
    for raw in query.getall("keywords", []):
        word, colon, intensifier = raw.strip().rpartition(":")
        if not colon:
            word = intensifier
        else:
            try:
                strength = float(intensifier)
            except ValueError as e:
                raise ConfigError(f"keywords {raw!r}: the intensifier after ':' must be a number") from e
            if not strength > 0 or strength == float("inf"):
                raise ConfigError(
                    f"keywords {raw!r}: only a positive intensifier is supported (words can be favoured, "
                    "not suppressed)"
                )
        words.append(word.strip())
    out = tuple(dict.fromkeys(words))
    if any(not w or len(w) > MAX_KEYWORD_CHARS for w in out) or len(out) > MAX_KEYWORDS:
        raise ConfigError(
            f"keyterm and keywords: at most {MAX_KEYWORDS}, each 1 to {MAX_KEYWORD_CHARS} characters"
        )
    return out


async def authenticate(request: web.Request, services: Services) -> tuple[KeyRecord, str | None]:
    """The key behind the request, and the subprotocol to answer when the credential came in one."""
    offered = offered_subprotocols(request)
    if len(offered) >= 2 and offered[0].lower() in SUBPROTOCOLS:
        scheme, credential, answer = offered[0].lower(), offered[1], offered[0]
    else:
        (scheme, credential), answer = authorization(request), None
    if not credential or scheme not in SUBPROTOCOLS:
        raise AuthError("send Authorization: Token <api key> or Bearer <temporary token>")
    if scheme == "token":
        return await key_record(services, credential), answer
    if credential.count(".") != 2:  # not a JWT: an API key sent as Bearer
        return await key_record(services, credential), answer
    key, _ = await redeem(services, credential, DEEPGRAM_AUDIENCE)
    return key, answer


def session_config(services: Services, options: ListenOptions) -> SessionConfig:
    """The session each channel runs."""
    return SessionConfig(
        sample_rate=options.audio.session_rate,
        language=options.language,
        languages=list(options.languages),
        interim_results=options.interim_results,
        word_timestamps=supports_word_timestamps(services.asr),
        diarize=options.diarize,
        keywords=list(options.keywords),
    )


async def admit_channels(
    registry: SessionRegistry, key: KeyRecord, options: ListenOptions, count: int
) -> list[StreamSession]:
    """One session for each of ``count`` channels (all or none)."""
    config = session_config(registry.services, options)
    sessions: list[StreamSession] = []
    try:
        for _ in range(count):
            sessions.append(await registry.admit(key, config))
    except BaseException:
        for session in sessions:
            await registry.release(session)
        raise
    for session in sessions:
        retune(session, Turns(end_silence_ms=options.endpointing_ms))
    return sessions


def traced(sessions: list[StreamSession], request: web.Request, started: int, request_id: str) -> None:
    """The session.start span of a Deepgram request (live or pre-recorded), on its first channel's session."""
    sessions[0].trace = tracing.session_started(
        sessions[0].trace,
        sessions[0].session_id,
        request.get(REQUEST_ID, ""),
        started,
        surface="deepgram",
        deepgram_request_id=request_id,
    )
