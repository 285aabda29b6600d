"""OpenTelemetry traces of sessions, utterances and model batches, free while tracing is off.

Tracing is off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (spans then go out over OTLP/HTTP, set up by
the standard ``OTEL_*`` variables) or a test installs a provider with :func:`use`. While it is off every
hook is a call on a no-op object or a ``None`` check, and the OpenTelemetry packages (the ``otel`` extra)
are never imported.

The spans, each carrying ``streamer.session_id`` and ``streamer.request_id``:

- ``session.start``: a WebSocket upgrade from its arrival to admission (token redeemed, capacity checked).
- ``utterance``: its own trace, linked to its ``session.start``; from VAD end (or from the pause where its
  transcription was started early) to its final and translations. Events ``vad.end`` and ``final``.

  - ``model.batch`` (``asr``): the model call that transcribed it: size, finals and partials, padding.
    A batch serves several sessions: its parent is the first job that carried a trace, the others are
    links, and ``streamer.session_ids`` names them all.
  - ``translate``, and under it the ``model.batch`` (``mt``) that translated the final.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Hashable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SESSION_ID = "streamer.session_id"
REQUEST_ID = "streamer.request_id"


@dataclass(frozen=True)
class Handle:
    """An open span with the ids of its session: what a batch job carries to the model thread."""

    span: Span
    session_id: str
    request_id: str


_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# the span that model work submitted from this task belongs to (set per task, read at submission)
_parent: ContextVar[Handle | None] = ContextVar("streamer_trace_parent", default=None)


def use(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` (tests pass one with an in-memory exporter); ``None`` turns tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("streamer")


def enabled() -> bool:
    return _tracer is not None


def configure_from_env() -> bool:
    """Export over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (once per process); True if tracing."""
    if _tracer is not None:
        return True
    if not os.environ.get(ENDPOINT_ENV):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("%s is set but OpenTelemetry is not installed (the otel extra): no traces", ENDPOINT_ENV)
        return False
    # OTEL_SERVICE_NAME, when set, names the service; Resource.create would let ours override it
    name = os.environ.get("OTEL_SERVICE_NAME", "streamer")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    log.info("tracing: spans go over OTLP to %s", os.environ[ENDPOINT_ENV])
    return True


def flush(timeout_s: float = 5.0) -> bool:
    """Export the spans still buffered (the SDK also does this at exit); False if that timed out."""
    force_flush = getattr(_provider, "force_flush", None)
    return bool(force_flush(int(timeout_s * 1000))) if force_flush is not None else True


def shutdown() -> None:
    """Export what is buffered and stop the exporter; tracing is off afterwards."""
    stop = getattr(_provider, "shutdown", None)  # the SDK's provider has it, the API's type does not
    use(None)
    if stop is not None:
        stop()


def now() -> int:
    """A span timestamp (ns since the epoch), for :func:`session_started`'s ``started``."""
    return time.time_ns()


def current_parent() -> Handle | None:
    """The span that model work submitted now belongs to (the batcher stores it on the job)."""
    return _parent.get()


def context_for(handle: Handle | None) -> contextvars.Context | None:
    """A copy of the current context in which model work belongs to ``handle``, for
    ``asyncio.create_task(..., context=...)``; None (the task copies the current one) while off."""
    if handle is None:
        return None
    context = contextvars.copy_context()
    context.run(_parent.set, handle)
    return context


def enter(handle: Handle | None) -> None:
    """Make ``handle`` the parent of model work this task submits (call it first thing in the task)."""
    if handle is not None:
        _parent.set(handle)


class SessionTrace:
    """A session's spans. This base class is the no-op a session holds while tracing is off."""

    def utterance(self, segment_id: int) -> Handle | None:
        """The utterance's span, opened now if it is not yet."""
        return None

    def vad_end(self, segment_id: int, audio_end_ms: int) -> None:
        """VAD ended the utterance (its span opens here unless its transcription started earlier)."""

    def final(self, segment_id: int, seq: int, latency_s: float) -> None:
        """Its ``transcript.final`` is queued to the client."""

    def translating(self, segment_id: int, targets: Sequence[str]) -> None:
        """Its translation starts (in the task that awaits it)."""

    def translated(self, segment_id: int, error: str | None = None) -> None:
        """Its translation is done (or failed with ``error``); call in the same task as ``translating``."""

    def done(self, segment_id: int, outcome: str) -> None:
        """The utterance is over: ``final``, a rejection reason, or ``error``."""

    def close(self) -> None:
        """The session is gone: end what is still open."""


NOOP = SessionTrace()


def session_started(
    previous: SessionTrace, session_id: str, request_id: str, started: int, **attributes: str | int | bool
) -> SessionTrace:
    """Record a ``session.start`` span from ``started`` (see :func:`now`) until now.

    Returns the session's trace: ``previous`` when it is live (a resumed session keeps its open
    utterances), else a new one; the no-op while tracing is off.
    """
    tracer = _tracer
    if tracer is None:
        return NOOP
    from opentelemetry.context import Context

    ids = {SESSION_ID: session_id, REQUEST_ID: request_id}
    span = tracer.start_span(
        "session.start",
        context=Context(),
        attributes={**ids, **{f"streamer.{k}": v for k, v in attributes.items()}},
        start_time=started,
    )
    span.end()
    # model work this task (the connection's reader) and its children submit belongs to the session,
    # unless a task says otherwise (an utterance's transcription, a translation)
    _parent.set(Handle(span, session_id, request_id))
    if isinstance(previous, _LiveSessionTrace):
        previous.restarted(request_id, span.get_span_context())
        return previous
    return _LiveSessionTrace(tracer, session_id, request_id, span.get_span_context())


class _LiveSessionTrace(SessionTrace):
    def __init__(self, tracer: Tracer, session_id: str, request_id: str, start: SpanContext) -> None:
        self._tracer = tracer
        self._session_id = session_id
        self._request_id = request_id
        self._start = start
        self._utterances: dict[int, Handle] = {}
        self._translations: dict[int, tuple[Handle, Token[Handle | None]]] = {}

    def restarted(self, request_id: str, start: SpanContext) -> None:
        self._request_id = request_id
        self._start = start

    def _ids(self) -> dict[str, str]:
        return {SESSION_ID: self._session_id, REQUEST_ID: self._request_id}

    def utterance(self, segment_id: int) -> Handle:
        handle = self._utterances.get(segment_id)
        if handle is None:
            from opentelemetry.context import Context
            from opentelemetry.trace import Link

            span = self._tracer.start_span(
                "utterance",
                context=Context(),  # a trace of its own: a session may last hours
                links=[Link(self._start)],
                attributes={**self._ids(), "streamer.segment_id": segment_id},
            )
            handle = self._utterances[segment_id] = Handle(span, self._session_id, self._request_id)
        return handle

    def vad_end(self, segment_id: int, audio_end_ms: int) -> None:
        span = self.utterance(segment_id).span
        span.add_event("vad.end", {"streamer.audio_end_ms": audio_end_ms})

    def final(self, segment_id: int, seq: int, latency_s: float) -> None:
        handle = self._utterances.get(segment_id)
        if handle is not None:
            handle.span.add_event("final", {"streamer.seq": seq, "streamer.final_latency_s": latency_s})

    def translating(self, segment_id: int, targets: Sequence[str]) -> None:
        from opentelemetry.trace import set_span_in_context

        parent = self.utterance(segment_id)
        span = self._tracer.start_span(
            "translate",
            context=set_span_in_context(parent.span),
            attributes={**self._ids(), "streamer.targets": list(targets)},
        )
        handle = Handle(span, self._session_id, self._request_id)
        self._translations[segment_id] = (handle, _parent.set(handle))

    def translated(self, segment_id: int, error: str | None = None) -> None:
        entry = self._translations.pop(segment_id, None)
        if entry is None:
            return
        handle, token = entry
        _parent.reset(token)
        _end(handle.span, error)

    def done(self, segment_id: int, outcome: str) -> None:
        handle = self._utterances.pop(segment_id, None)
        if handle is not None:
            handle.span.set_attribute("streamer.outcome", outcome)
            _end(handle.span, outcome if outcome == "error" else None)

    def close(self) -> None:
        for segment_id in list(self._utterances):
            self.done(segment_id, "session_ended")


class BatchedJob(Protocol):
    """What a span needs of one job of a model batch (the pipeline's ``Job`` is one)."""

    @property
    def session_id(self) -> str: ...
    @property
    def key(self) -> Hashable: ...
    @property
    def payload(self) -> object: ...
    @property
    def submitted(self) -> float: ...
    @property
    def trace(self) -> object: ...
    @property
    def final(self) -> bool: ...


def model_batch(batcher: str, jobs: Sequence[BatchedJob], started: float, seconds: float) -> None:
    """One model call that took ``seconds``; ``started`` is on the clock of the jobs' ``submitted``.

    Runs on the model thread. Padding is reported for audio jobs (payloads with an ``audio`` array): the
    share of the batch's samples added to bring every input to the longest one.
    """
    tracer = _tracer
    if tracer is None or not jobs:
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, set_span_in_context

    end = time.time_ns()
    handles = [job.trace for job in jobs if isinstance(job.trace, Handle)]
    finals = sum(1 for job in jobs if job.final)
    attributes: dict[str, Any] = {
        "streamer.batcher": batcher,
        "streamer.batch.size": len(jobs),
        "streamer.batch.finals": finals,
        "streamer.batch.partials": len(jobs) - finals,
        "streamer.batch.kind": "final" if finals == len(jobs) else "partial" if not finals else "mixed",
        "streamer.batch.key": str(jobs[0].key),
        "streamer.batch.queue_wait_s": max(0.0, started - min(job.submitted for job in jobs)),
        "streamer.session_ids": sorted({job.session_id for job in jobs}),
    }
    audio = [getattr(job.payload, "audio", None) for job in jobs]
    sizes: list[int] = [len(a) for a in audio if a is not None]
    longest = max(sizes, default=0)
    if longest:
        attributes["streamer.batch.padding"] = round(1 - sum(sizes) / (len(sizes) * longest), 4)
    parent = handles[0] if handles else None
    if parent is not None:
        attributes[SESSION_ID], attributes[REQUEST_ID] = parent.session_id, parent.request_id
    else:
        attributes[SESSION_ID], attributes[REQUEST_ID] = jobs[0].session_id, ""
    span = tracer.start_span(
        "model.batch",
        context=set_span_in_context(parent.span) if parent is not None else Context(),
        links=[Link(h.span.get_span_context()) for h in handles[1:]],
        attributes=attributes,
        start_time=end - int(seconds * 1e9),
    )
    span.end(end_time=end)


def _end(span: Span, error: str | None) -> None:
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error))
    span.end()
