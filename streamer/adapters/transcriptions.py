"""OpenAI audio transcriptions: ``POST /v1/audio/transcriptions`` (multipart), whole files or as events.

The request is admitted before its body is read (rate, the key's uploads in progress, the audio quota
left, capacity, the key's concurrent sessions: :mod:`streamer.adapters.upload_runner`, the runner that
Deepgram's pre-recorded ``/v1/listen`` shares, :mod:`streamer.adapters.upload`), then the form is
read (:mod:`streamer.adapters.upload_form`) and the file is decoded by PyAV (WAV, FLAC, MP3, OGG/Opus,
WebM, ...) to 16 kHz mono a chunk at a time, straight into an ordinary protocol v1 session, paced like
live audio: charged to the key's daily audio quota, cut into utterances by the session's VAD and
transcribed by the shared batcher, with the decode fallback and, for ``timestamp_granularities[]=word``,
word alignment. So a file of any length works without being held decoded, and a model failure is a 503
like everywhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import IO, Any, Literal

from aiohttp import web

from streamer import tracing
from streamer.adapters import whisper_languages
from streamer.adapters.common import check_language
from streamer.adapters.openai import diarized as openai_diarized
from streamer.adapters.openai.rest import bearer_key, error_response
from streamer.adapters.openai.wire import ClientEventError
from streamer.adapters.upload import Upload
from streamer.adapters.upload_form import Form, read_form
from streamer.adapters.upload_runner import Channels, ClientGoneError, admitted, decoded
from streamer.edge.handshake import REGISTRY, REQUEST_ID
from streamer.errors import StreamerError
from streamer.pipeline.audio import MODEL_RATE
from streamer.protocol import Decoding, SessionConfig, TranscriptFinal, TranscriptPartial, Word
from streamer.session.runtime import StreamSession
from streamer.session.validation import check_session_config

log = logging.getLogger(__name__)

AUDIO_TOKENS_PER_S = 50  # Whisper's encoder: 1500 positions for 30 s


async def transcriptions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/audio/transcriptions``."""
    return await handle(request, "transcribe")


async def handle(request: web.Request, task: Literal["transcribe", "translate"]) -> web.StreamResponse:
    """A transcription (or, with ``task`` translate, a translation to English) of the request's file."""
    started = tracing.now()  # the session.start span: from here to the session's opening
    registry = request.app[REGISTRY]
    services = registry.services
    try:
        key = await bearer_key(request, services)
        async with admitted(registry, key) as ticket:
            form = await read_form(request, translation=task == "translate")
            assert form.file is not None
            with contextlib.closing(form.file):
                if task == "translate" and not services.asr.multilingual:
                    raise ClientEventError(
                        f"the model {services.asr.name} is English-only and cannot translate",
                        code="unsupported_model",
                        param="model",
                    )
                config = SessionConfig(
                    sample_rate=MODEL_RATE,
                    task=task,
                    language=check_language(services, form.language),
                    # a given language makes the list moot (as on the realtime surface)
                    languages=[]
                    if form.language
                    else [check_language(services, code) or code for code in form.languages],
                    # streamed: partials, so text is sent as it becomes stable (a token's logprob
                    # exists only in the final decode, so with logprobs each utterance is one delta);
                    # a whole answer needs none, and they would cost it model time
                    interim_results=form.stream and not form.logprobs,
                    word_timestamps="word" in form.granularities,
                    diarize=form.response_format == openai_diarized.FORMAT,
                    prompt=form.prompt,
                    keywords=form.keywords,
                    temperature=form.temperature,
                    logprobs=form.logprobs,
                    # verbose_json's segments and the streamed usage need the decode's numbers
                    decoding=form.response_format == "verbose_json" or form.stream,
                )
                check_session_config(services, config)

                async def open_session(count: int) -> list[StreamSession]:
                    session = registry.open(ticket.session_id, key.key_id, config)
                    trace, request_id = session.trace, request[REQUEST_ID]
                    session.trace = tracing.session_started(
                        trace, session.session_id, request_id, started, surface="transcriptions"
                    )
                    return [session]

                # from its opening the session is the registry's: released however this ends (D4)
                async with Upload(registry, ticket, open_session) as upload:
                    return await _respond(request, upload, form.file, form)
    except StreamerError as e:
        services.metrics.refused(e)
        return error_response(e)


def _decoded(source: IO[bytes], upload: Upload) -> AsyncGenerator[Channels, None]:
    """The file mono at 16 kHz, in chunks as long as a session's longest frame."""
    settings = upload.registry.services.settings
    return decoded(source, MODEL_RATE * min(1000, settings.max_frame_ms) // 1000)


def _left(upload: Upload) -> None:
    log.info("the client left; its upload stopped", extra={"session_id": upload.ticket.session_id})


async def _respond(request: web.Request, upload: Upload, source: IO[bytes], form: Form) -> web.StreamResponse:
    if form.stream:
        return await _stream(request, upload, source, form)
    try:
        (finals,) = await upload.transcribe(_decoded(source, upload), MODEL_RATE, request)
    except StreamerError as e:
        return error_response(e)
    except ClientGoneError:
        _left(upload)
        return web.Response(status=499)  # nobody reads it (nginx's "client closed request")
    return _answer(form, finals, upload.seconds)


async def _stream(request: web.Request, upload: Upload, source: IO[bytes], form: Form) -> web.StreamResponse:
    """``stream=true``: ``transcript.text.delta`` events as the text becomes stable (see
    :class:`StreamedText`), then ``transcript.text.done`` with the whole text and the token usage."""
    headers = {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Request-ID": request[REQUEST_ID],
    }
    response = web.StreamResponse(headers=headers)
    finals: list[TranscriptFinal] = []
    streamed = StreamedText()

    async def start() -> None:
        await response.prepare(request)

    async def send(event: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())

    async def on_partial(partial: TranscriptPartial) -> None:
        if delta := streamed.partial(partial):
            await send({"type": "transcript.text.delta", "delta": delta})

    async def on_final(final: TranscriptFinal) -> None:
        finals.append(final)
        if not (delta := streamed.final(final)):
            return
        event: dict[str, Any] = {"type": "transcript.text.delta", "delta": delta}
        if form.logprobs:  # (no partials then: the delta is the utterance's whole text)
            event["logprobs"] = logprobs([final])
        await send(event)

    try:
        await upload.transcribe(
            _decoded(source, upload), MODEL_RATE, request, on_final, start, on_partial=on_partial
        )
    except StreamerError as e:
        if not response.prepared:  # refused before the first event: an ordinary error answer
            return error_response(e)
        kind = "invalid_request_error" if e.status < 500 else "server_error"
        last: dict[str, Any] = {"error": {"message": e.message, "type": kind, "code": e.code, "param": None}}
    except ClientGoneError:
        _left(upload)
        return response  # nobody to finish it for
    else:
        last = {"type": "transcript.text.done", "text": streamed.text}
        if form.logprobs:
            last["logprobs"] = logprobs(finals)
        last["usage"] = token_usage(finals, upload.seconds)
    with contextlib.suppress(ConnectionError):  # the client left as it ended
        await send(last)
        await response.write_eof()
    return response


class StreamedText:
    """The streamed transcript, append-only: what each delta adds, and :attr:`text`, every delta so far.

    An utterance's stable partial text is sent as it grows (stable words are never rewritten within an
    utterance), then its final's rest. Utterances are sent in order, joined by a space as in the whole
    answer, so ``text`` is the non-streamed answer's text: a later utterance's partials that come before
    an earlier one's final (which may add to it) wait for that final. Segment ids count from 1 and every
    segment ends in a final (possibly empty). Sent text is never taken back: in the rare case a final
    rewrites words already sent (a punctuation mark or a word's form that the partials agreed on), the
    sent words stand and the final's words after as many words follow; ``text`` is then still every
    delta joined, but may differ from the non-streamed answer in those words.
    """

    def __init__(self) -> None:
        self.text = ""
        self._finished = 0  # the last segment finalized: the next one's text is being sent
        self._said = ""  # the next segment's text sent
        self._held: dict[int, str] = {}  # later segments' latest stable text, waiting for their turn

    def partial(self, partial: TranscriptPartial) -> str:
        """The delta that ``partial``'s stable text adds ("" for none)."""
        segment_id, stable = partial.segment_id, partial.stable_text
        if segment_id <= self._finished:
            return ""  # late: its final came
        if segment_id > self._finished + 1:
            self._held[segment_id] = stable
            return ""
        if not stable.startswith(self._said):
            return ""  # (stable text only grows within an utterance: not expected)
        return self._extend(stable)

    def final(self, final: TranscriptFinal) -> str:
        """The delta that ``final`` adds to what its utterance's partials sent, and what a later
        utterance's partials held back then add ("" for none)."""
        said = self._said if final.segment_id == self._finished + 1 else ""
        self._said = said
        if final.text.startswith(said):
            text = final.text
        else:  # the sent words stand; the final's words after them follow
            text = " ".join([said, *final.text.split()[len(said.split()) :]])
        delta = self._extend(text)
        self._finished, self._said = max(self._finished, final.segment_id), ""
        self._held = {k: v for k, v in self._held.items() if k > self._finished}
        if (held := self._held.pop(self._finished + 1, None)) is not None:
            delta += self._extend(held)
        return delta

    def _extend(self, text: str) -> str:
        grown = text[len(self._said) :]
        if not grown:
            return ""
        if not self._said and self.text:
            grown = " " + grown  # a new utterance
        self._said = text
        self.text += grown
        return grown


def logprobs(finals: list[TranscriptFinal]) -> list[dict[str, Any]]:
    """The finals' tokens as OpenAI's ``logprobs``: each token, its log-probability and UTF-8 bytes."""
    return [
        {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())}
        for f in finals
        for t in f.logprobs or ()
    ]


def token_usage(finals: list[TranscriptFinal], seconds: float) -> dict[str, Any]:
    """OpenAI's token usage: the audio as Whisper's encoder reads it (50 positions a second), and the text
    tokens decoded."""
    audio = round(seconds * AUDIO_TOKENS_PER_S)
    output = sum(len(f.decoding.tokens) for f in finals if f.decoding is not None)
    return {
        "type": "tokens",
        "input_tokens": audio,
        "output_tokens": output,
        "total_tokens": audio + output,
        "input_token_details": {"audio_tokens": audio, "text_tokens": 0},
    }


def _detected(finals: list[TranscriptFinal]) -> list[str]:
    """The detected languages of the finals that have text, most utterances first (ties: first heard)."""
    said = [f.language for f in finals if f.language_probability is not None and f.text.strip()]
    return sorted(dict.fromkeys(said), key=lambda code: -said.count(code))


def _answer(form: Form, finals: list[TranscriptFinal], seconds: float) -> web.Response:
    text = " ".join(f.text for f in finals if f.text)  # as the streamed text joins them
    usage = {"type": "duration", "seconds": round(seconds, 3)}
    if form.response_format == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if form.response_format in ("srt", "vtt"):
        return web.Response(
            text=_captions(finals, vtt=form.response_format == "vtt"), content_type="text/plain"
        )
    detected = _detected(finals)
    if form.response_format == "json":
        # languages: as gpt-transcribe reports them, only when they were detected (no ``language`` sent)
        languages = {"languages": [{"code": code} for code in detected]} if detected else {}
        scores = {"logprobs": logprobs(finals)} if form.logprobs else {}
        return web.json_response({"text": text, **languages, **scores, "usage": usage})
    if form.response_format == openai_diarized.FORMAT:
        return web.json_response(openai_diarized.diarized(finals, seconds, usage))
    code = detected[0] if detected else finals[0].language if finals else ""
    body: dict[str, Any] = {
        "task": "translate" if form.translation else "transcribe",
        # the language of most utterances when detected (Whisper's verbose_json has one language), named
        # as Whisper names it ("english")
        "language": whisper_languages.name(code) if code else "",
        "duration": round(seconds, 3),
        "text": text,
        "usage": usage,
    }
    if not form.granularities or "segment" in form.granularities:
        body["segments"] = [_segment(i, f) for i, f in enumerate(f for f in finals if f.text)]
    if "word" in form.granularities:
        words: list[Word] = [w for f in finals for w in (f.words or [])]
        body["words"] = [{"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000} for w in words]
    return web.json_response(body)


def _segment(i: int, final: TranscriptFinal) -> dict[str, Any]:
    """A verbose_json segment: one utterance, with its decode's numbers as Whisper reports them."""
    decoding = final.decoding or Decoding(
        avg_logprob=0.0, compression_ratio=1.0, no_speech_prob=0.0, temperature=0.0, tokens=[]
    )
    return {
        "id": i,
        "seek": final.audio_start_ms // 10,  # in Whisper's 10 ms mel frames
        "start": final.audio_start_ms / 1000,
        "end": final.audio_end_ms / 1000,
        "text": final.text,
        **decoding.model_dump(),
    }


def _timestamp(ms: int, vtt: bool) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{'.' if vtt else ','}{millis:03d}"


def _captions(finals: list[TranscriptFinal], *, vtt: bool) -> str:
    blocks = []
    for i, f in enumerate(finals, start=1):
        span = f"{_timestamp(f.audio_start_ms, vtt)} --> {_timestamp(f.audio_end_ms, vtt)}"
        blocks.append(f"{span}\n{f.text}\n" if vtt else f"{i}\n{span}\n{f.text}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(blocks)


ROUTES = [web.post("/v1/audio/transcriptions", transcriptions)]
