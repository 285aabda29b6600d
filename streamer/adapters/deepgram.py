"""Deepgram live transcription: ``GET /v1/listen`` (WebSocket) and ``POST /v1/auth/grant``.

The query options become a protocol v1 session config and a way of cutting utterances; each protocol v1
message is rendered as Deepgram renders results (``Results``, ``SpeechStarted``, ``UtteranceEnd``,
``Metadata``). Failures before the upgrade (credentials, capacity, quota) are HTTP statuses with
Deepgram's error body; a bad option or bad audio after it is a close frame with a reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer import tracing
from streamer.adapters.common import (
    AdapterConnection,
    Turns,
    check_language,
    issue,
    key_record,
    redeem,
    retune,
)
from streamer.errors import AuthError, BadRequestError, ConfigError, SessionIdleError, StreamerError
from streamer.guards.keys import KeyRecord
from streamer.pipeline.align import supports_word_timestamps
from streamer.protocol import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    CloseCode,
    ErrorEvent,
    ServerMessage,
    SessionClosed,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    Warning_,
    Word,
)
from streamer.services import Services
from streamer.session.edge import REGISTRY, REQUEST_ID, SERVICES, check_origin
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession
from streamer.session.socket import close_reason_bytes, socket_response

log = logging.getLogger(__name__)

WS_MAX_MSG = 1 << 20  # aiohttp closes (1009) past this; below it the session's frame limit answers
MIN_ENDPOINTING_MS = 100  # our VAD hears silence in 32 ms windows; shorter endpoints cut words apart
GRANT_TTL_S = 30.0
MAX_GRANT_TTL_S = 3600.0
SUBPROTOCOLS = ("token", "bearer")


class DeepgramRequestError(Exception):
    """A refused request, in Deepgram's shape: HTTP status and ``err_code``."""

    def __init__(self, status: int, err_code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.err_code = err_code
        self.message = message
        self.retry_after = retry_after


def _from_domain(e: StreamerError) -> DeepgramRequestError:
    codes = {401: "INVALID_AUTH", 403: "INSUFFICIENT_PERMISSIONS", 429: "TOO_MANY_REQUESTS"}
    return DeepgramRequestError(e.status, codes.get(e.status, e.code.upper()), e.message, e.retry_after)


def _error_response(e: DeepgramRequestError, request_id: str) -> web.Response:
    # the message may quote the client's input: a header value must not carry its control characters
    printable = "".join(c if c.isprintable() else " " for c in e.message[:200])
    headers = {"dg-request-id": request_id, "dg-error": printable}
    if e.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(e.retry_after)))
    body = {"err_code": e.err_code, "err_msg": e.message, "request_id": request_id}
    return web.json_response(body, status=e.status, headers=headers)


# ---- options


def _flag(query: MultiMapping[str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    return value == "true"


def _int(query: MultiMapping[str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class ListenOptions:
    """The ``/v1/listen`` query this server honours (others that Deepgram knows are accepted, ignored)."""

    sample_rate: int
    language: str | None
    interim_results: bool
    punctuate: bool
    endpointing_ms: int | None  # None: endpointing=false (only Finalize / CloseStream end an utterance)
    utterance_end_ms: int | None
    vad_events: bool
    model: str

    @classmethod
    def parse(cls, query: MultiMapping[str], services: Services) -> ListenOptions:
        encoding = query.get("encoding", "").lower()
        if encoding != "linear16":
            raise ConfigError(
                f"encoding {encoding or '(none)'} is not supported: send raw audio as encoding=linear16"
            )
        rate = _int(query, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        if rate is None:
            raise ConfigError("sample_rate is required with encoding=linear16")
        if (_int(query, "channels", 1, 1 << 16) or 1) != 1:
            raise ConfigError("only channels=1 is supported")
        endpointing = query.get("endpointing", "true").strip().lower()
        if endpointing == "false":
            endpointing_ms = None
        elif endpointing == "true":
            endpointing_ms = services.settings.end_silence_ms
        else:
            endpointing_ms = max(MIN_ENDPOINTING_MS, _int(query, "endpointing", 0, 60_000) or 0)
        smart = _flag(query, "smart_format", False)
        return cls(
            sample_rate=rate,
            language=check_language(services, query.get("language"))
            if query.get("language") != "multi"
            else None,
            interim_results=_flag(query, "interim_results", False),
            punctuate=_flag(query, "punctuate", False) or smart,
            endpointing_ms=endpointing_ms,
            utterance_end_ms=_int(query, "utterance_end_ms", 1000, 5000),
            vad_events=_flag(query, "vad_events", False),
            model=query.get("model", "general"),
        )


# ---- credentials


async def _authenticate(request: web.Request, services: Services) -> tuple[KeyRecord, str | None]:
    """The key behind the request, and the subprotocol to answer when the credential came in one."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if len(offered) >= 2 and offered[0].lower() in SUBPROTOCOLS:
        scheme, credential, answer = offered[0].lower(), offered[1], offered[0]
    else:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        scheme, credential, answer = scheme.lower(), credential.strip(), None
    if not credential or scheme not in SUBPROTOCOLS:
        raise AuthError("send Authorization: Token <api key> or Bearer <temporary token>")
    if scheme == "token":
        return await key_record(services, credential), answer
    if credential.count(".") != 2:  # not a JWT: an API key sent as Bearer
        return await key_record(services, credential), answer
    key, _ = await redeem(services, credential)
    return key, answer


async def grant(request: web.Request) -> web.Response:
    """``POST /v1/auth/grant``: a single-use temporary token for one ``/v1/listen`` connection."""
    services = request.app[SERVICES]
    request_id = str(uuid.uuid4())
    try:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in SUBPROTOCOLS or not credential.strip():
            raise AuthError("send Authorization: Token <api key>")
        key = await key_record(services, credential.strip())
        ttl = GRANT_TTL_S
        if request.can_read_body and (raw := await request.read()).strip():
            try:
                body = GrantRequest.model_validate_json(raw)
            except ValidationError as e:
                first = e.errors()[0]
                raise BadRequestError(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from e
            ttl = body.ttl_seconds if body.ttl_seconds is not None else GRANT_TTL_S
        token, expires_at = issue(services, key, ttl, {"surface": "deepgram"})
    except StreamerError as e:
        return _error_response(_from_domain(e), request_id)
    return web.json_response({"access_token": token, "expires_in": round(expires_at - time.time(), 3)})


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: float | None = Field(default=None, ge=1, le=MAX_GRANT_TTL_S)


# ---- the socket


async def listen(request: web.Request) -> web.StreamResponse:
    """``GET /v1/listen``: a live session rendered as Deepgram's streaming API."""
    started = tracing.now()  # the session.start span: from here to admission
    registry = request.app[REGISTRY]
    services = registry.services
    request_id = str(uuid.uuid4())
    try:
        check_origin(request)
        key, answer = await _authenticate(request, services)
    except StreamerError as e:
        services.metrics.refused(e)
        return _error_response(_from_domain(e), request_id)
    options: ListenOptions | None = None
    problem: StreamerError | None = None
    try:
        options = ListenOptions.parse(request.query, services)
    except StreamerError as e:
        problem = e  # said in the close frame, where the SDKs show it (a 400 would lose the reason)
    session = None
    if options is not None:
        config = SessionConfig(
            sample_rate=options.sample_rate,
            language=options.language,
            interim_results=options.interim_results,
            word_timestamps=supports_word_timestamps(services.asr),
        )
        try:
            session = await registry.admit(key, config)
        except StreamerError as e:
            services.metrics.refused(e)
            return _error_response(_from_domain(e), request_id)
        session.trace = tracing.session_started(
            session.trace,
            session.session_id,
            request.get(REQUEST_ID, ""),
            started,
            surface="deepgram",
            deepgram_request_id=request_id,
        )
    ws = socket_response((answer,) if answer else (), WS_MAX_MSG)
    ws.headers["dg-request-id"] = request_id
    try:
        await ws.prepare(request)
    except BaseException:
        if session is not None:
            await registry.release(session)
        raise
    if session is None or options is None:
        assert problem is not None
        await ws.close(code=CloseCode.POLICY, message=close_reason_bytes(f"DATA-0000: {problem.message}"))
        return ws
    retune(session, Turns(end_silence_ms=options.endpointing_ms))
    transport = request.transport if isinstance(request.transport, asyncio.Transport) else None
    await DeepgramConnection(registry, ws, session, options, request_id, transport).run()
    return ws


def _seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def _plain(word: str) -> str:
    """A word as Deepgram writes it without punctuation: lower case, no marks around it."""
    return word.strip().strip('.,!?;:"()[]').lower()


class DeepgramConnection(AdapterConnection):
    surface = "deepgram"

    def __init__(
        self,
        registry: SessionRegistry,
        ws: web.WebSocketResponse,
        session: StreamSession,
        options: ListenOptions,
        request_id: str,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(registry, ws, session, transport)
        self.options = options
        self.request_id = request_id
        self.model_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"streamer:{self.services.asr.name}"))
        self._starts: dict[int, int] = {}  # segment id -> audio_start_ms
        self._stopped: set[int] = set()  # ended segments whose final has not been rendered yet
        self._finalized: set[int] = set()  # segments a Finalize ended
        self._answer_after: int | None = None  # a Finalize that ended nothing is answered after this one
        self._created = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    # ---- client messages

    async def on_binary(self, data: bytes) -> None:
        if not data:
            raise BadRequestError("an empty binary message is the old CloseStream; send CloseStream")
        await self.push_audio(data)

    async def on_text(self, data: str | bytes) -> bool:
        try:
            message = json.loads(data)
        except ValueError as e:
            raise BadRequestError("a text message must be JSON: KeepAlive, Finalize or CloseStream") from e
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "KeepAlive":
            return False
        if kind == "Finalize":
            await self._finalize()
            return False
        if kind == "CloseStream":
            await self.end()
            return True
        raise BadRequestError(f"unknown message type {kind!r}: expected KeepAlive, Finalize or CloseStream")

    async def _finalize(self) -> None:
        """End the open utterance now; its result (or the last one still coming) says ``from_finalize``.

        A marker follows the utterance's end through the outbox: when it is rendered, every utterance
        that had ended before the Finalize has been seen ended, so the marker knows which result is the
        last one still coming, or that none is (then an empty result answers the Finalize).
        """
        await self.flush_audio()
        open_id = self.session.segmenter.open_segment_id
        await self.session.commit("finalize")
        await self.reply(lambda: self._finalize_mark(open_id))

    # ---- rendering

    def render(self, message: ServerMessage) -> list[str]:
        out: list[dict[str, Any]] = []
        if isinstance(message, SpeechStarted):
            self._starts[message.segment_id] = message.audio_start_ms
            if self.options.vad_events:
                start = _seconds(message.audio_start_ms)
                out.append({"type": "SpeechStarted", "channel": [0, 1], "timestamp": start})
        elif isinstance(message, SpeechStopped):
            self._stopped.add(message.segment_id)
        elif isinstance(message, TranscriptPartial):
            if self.options.interim_results:
                start = self._starts.get(message.segment_id, 0)
                out.append(self._results(message.text, [], start, self.session.audio_ms, final=False))
        elif isinstance(message, TranscriptFinal):
            words = message.words or []
            end = max(message.audio_end_ms, words[-1].end_ms if words else 0)
            out.extend(self._final(message.segment_id, message.text, words, message.audio_start_ms, end))
        elif isinstance(message, Warning_) and message.segment_id is not None:
            # speech that could not be transcribed still gets its (empty) final, as Deepgram sends them
            start = self._starts.get(message.segment_id, 0)
            out.extend(self._final(message.segment_id, "", [], start, start))
        elif isinstance(message, ErrorEvent):
            out.append({"type": "Error", "variant": message.code, "description": message.message})
        elif isinstance(message, SessionClosed):
            out.append(self._metadata(message))
        return [json.dumps(m) for m in out]

    def _finalize_mark(self, ended: int | None) -> str | None:
        """A Finalize's turn in the outbox: every utterance that had ended before it has been seen ended."""
        if ended is not None:  # the Finalize ended this utterance: its result is the answer
            self._finalized.add(ended)
        elif self._stopped:  # answer after the results still coming
            self._answer_after = max(self._stopped)
        else:
            return json.dumps(self._finalize_answer())
        return None

    def _final(
        self, segment_id: int, text: str, words: list[Word], start_ms: int, end_ms: int
    ) -> list[dict[str, Any]]:
        from_finalize = segment_id in self._finalized
        self._finalized.discard(segment_id)
        self._stopped = {s for s in self._stopped if s > segment_id}
        self._starts.pop(segment_id, None)
        out = [self._results(text, words, start_ms, end_ms, final=True, from_finalize=from_finalize)]
        if self.options.utterance_end_ms is not None and text:
            last_word_end = words[-1].end_ms if words else end_ms
            out.append({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": _seconds(last_word_end)})
        if self._answer_after is not None and segment_id >= self._answer_after:
            self._answer_after = None
            out.append(self._finalize_answer())
        return out

    def _finalize_answer(self) -> dict[str, Any]:
        """The (empty) result that answers a Finalize which found nothing to end."""
        now = self.session.audio_ms
        return self._results("", [], now, now, final=True, from_finalize=True)

    def _results(
        self,
        text: str,
        words: list[Word],
        start_ms: int,
        end_ms: int,
        *,
        final: bool,
        from_finalize: bool = False,
    ) -> dict[str, Any]:
        punctuate = self.options.punctuate
        rendered: list[dict[str, Any]] = [
            {
                "word": _plain(w.word),
                "start": _seconds(w.start_ms),
                "end": _seconds(w.end_ms),
                "confidence": round(w.probability, 4),
                "punctuated_word": w.word.strip() if punctuate else _plain(w.word),
            }
            for w in words
            if _plain(w.word)
        ]
        transcript = text.strip() if punctuate else " ".join(_plain(w) for w in text.split() if _plain(w))
        confidence = sum(w.probability for w in words) / len(words) if words else 0.0
        result: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": _seconds(max(0, end_ms - start_ms)),
            "start": _seconds(start_ms),
            "is_final": final,
            "speech_final": final and not from_finalize,
            "channel": {
                "alternatives": [{"transcript": transcript, "confidence": confidence, "words": rendered}]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": self._model_info(),
                "model_uuid": self.model_uuid,
            },
        }
        if final:
            result["from_finalize"] = from_finalize
        return result

    def _model_info(self) -> dict[str, str]:
        return {"name": self.services.asr.name, "version": "streamer", "arch": "whisper"}

    def _metadata(self, closed: SessionClosed) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": self._created,
            "duration": _seconds(closed.audio_ms),
            "channels": 1,
            "models": [self.model_uuid],
            "model_info": {self.model_uuid: self._model_info()},
        }

    def close_message(self, reason: str, error: StreamerError | None) -> str:
        if error is None:
            return reason
        # NET-0001 is Deepgram's "no audio within the timeout window", and what it says when it cannot serve
        idle = isinstance(error, SessionIdleError)
        prefix = "NET-0001" if idle or error.close_code == CloseCode.TRY_AGAIN_LATER else "DATA-0000"
        return f"{prefix}: {error.code}: {error.message}"


ROUTES = [web.get("/v1/listen", listen), web.post("/v1/auth/grant", grant)]
