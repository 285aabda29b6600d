"""The application factory: wiring of routes, models, batchers and state, with their lifetimes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from aiohttp import web

from streamer import tracing
from streamer.adapters import setup_adapters
from streamer.config import Settings, SpeakerEncoder
from streamer.edge import admin, ops, rest, ws
from streamer.edge.cors import setup_cors
from streamer.edge.handshake import REGISTRY, SERVICES, edge_middleware, stamp_response
from streamer.errors import ConfigError
from streamer.guards.admission import model_load
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import KeyRing, static_key_pepper
from streamer.guards.tokens import TokenService
from streamer.looplag import loop_lag_watched
from streamer.metrics import Metrics
from streamer.openapi import openapi_json
from streamer.pipeline import align
from streamer.pipeline.asr import (
    FRAMES_PER_S,
    AsrEngine,
    AsrRequest,
    AsrResult,
    WhisperEngine,
    default_workers,
    resolve_device,
)
from streamer.pipeline.audio import MODEL_RATE
from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.batchtypes import BatchStats
from streamer.pipeline.calibration import CpuShare, calibrate
from streamer.pipeline.models import resolve_asr_model
from streamer.pipeline.mt import TranslationEngine
from streamer.pipeline.mt_cache import (
    AsyncMemoryTranslationCache,
    RedisTranslationCache,
    TranslationCache,
)
from streamer.pipeline.speakers import VoiceKind
from streamer.pipeline.speakers_weights import WeightsError
from streamer.pipeline.speakers_worker import EmbedWindows, SpeakerBatch, SpeakerWorker, load_voice_encoder
from streamer.pipeline.translation import TranslationService, run_mt_batch
from streamer.pipeline.vad import SileroVad, VadModel
from streamer.services import Services
from streamer.session.registry import SessionRegistry
from streamer.state.backend import StateBackend
from streamer.state.connect import create_backend

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"


def load_asr_engine(settings: Settings) -> AsrEngine:
    """Resolve and load the configured Whisper model (blocking: call it in a thread)."""
    path = resolve_asr_model(settings.asr_model, settings.model_cache_dir)
    return WhisperEngine(
        path,
        name=settings.asr_model if settings.asr_model in ("tiny.en", "base") else None,
        threads=settings.asr_threads,
        workers=default_workers(settings.asr_workers, resolve_device(settings.device)),
        device=settings.device,
        compute_type=settings.compute_type,
        beam_size=settings.beam_size,
        pad_to_buckets=settings.batching,
    )


def load_mt_engine(settings: Settings) -> TranslationEngine:
    """Load the operator's CTranslate2 translation model (blocking: call it in a thread)."""
    from streamer.pipeline.mt import CT2Translator

    assert settings.mt_model is not None
    return CT2Translator(settings.mt_model, device=resolve_device(settings.device), intra_threads=1)


def load_speaker_encoder(settings: Settings) -> tuple[EmbedWindows, VoiceKind] | None:
    """The speaker encoder (its embedding call and kind), or None when diarization is off or the default
    encoder's weights are not in the cache (blocking: call it in a thread). Weights named by
    ``STREAMER_SPEAKER_WEIGHTS``, or an encoder named by ``STREAMER_SPEAKER_ENCODER``, that cannot be
    read stop the start: the operator asked for them."""
    named = settings.speaker_weights
    if named is not None and named.lower() == "off":
        return None
    chosen = settings.speaker_encoder
    try:
        return load_voice_encoder(chosen, Path(named) if named else None)
    except WeightsError as e:
        if named:
            raise ConfigError(f"STREAMER_SPEAKER_WEIGHTS: {e}") from e
        if chosen != SpeakerEncoder.GE2E:
            raise ConfigError(f"STREAMER_SPEAKER_ENCODER={chosen}: {e}") from e
        log.warning("diarization unavailable: %s", e)
        return None


def make_breaker(
    name: str, metrics: Metrics, *, failure_threshold: int, reset_timeout_s: float
) -> CircuitBreaker:
    """A circuit breaker whose state changes show on the ``breaker_state`` gauge."""
    metrics.breaker_state.labels(name).set(0.0)  # closed, and exported from the start for alert rules
    return CircuitBreaker(
        name,
        failure_threshold=failure_threshold,
        reset_timeout_s=reset_timeout_s,
        on_change=lambda n, st: metrics.breaker_state.labels(n).set(_breaker_value(st)),
    )


def batch_observer(metrics: Metrics) -> Callable[[BatchStats], None]:
    def on_batch(stats: BatchStats) -> None:
        metrics.batch_size.labels(stats.name).observe(stats.size)
        metrics.inference_seconds.labels(stats.name).observe(stats.seconds)

    return on_batch


def build_translation(
    settings: Settings,
    engine: TranslationEngine,
    metrics: Metrics,
    on_batch: Callable[[BatchStats], None] | None = None,
) -> TranslationService:
    """The translation service: its batcher (not started: ``async with service.batcher``) and cache."""
    breaker = make_breaker(
        "mt", metrics, failure_threshold=settings.breaker_threshold, reset_timeout_s=settings.breaker_reset_s
    )
    batcher: MicroBatcher[str, str] = MicroBatcher(
        "mt",
        functools.partial(run_mt_batch, engine),
        max_batch=32 if settings.batching else 1,
        max_wait_s=settings.batch_wait_ms / 1000 if settings.batching else 0.0,
        max_pending_finals=settings.max_pending_finals,
        call_timeout_s=settings.model_timeout_s,
        breaker=breaker,
        on_batch=on_batch or batch_observer(metrics),
    )
    cache: TranslationCache = (
        RedisTranslationCache(settings.redis_url) if settings.redis_url else AsyncMemoryTranslationCache()
    )
    return TranslationService(engine, batcher, cache)


@dataclass(frozen=True)
class _State:
    metrics: Metrics
    backend: StateBackend
    breaker: CircuitBreaker | None  # around Redis; None for the in-process backend


@dataclass(frozen=True)
class _Asr:
    engine: AsrEngine
    vad: VadModel
    batcher: MicroBatcher[AsrRequest, AsrResult]
    breaker: CircuitBreaker


# what one cleanup context hands to the next (private: routes read SERVICES and REGISTRY)
_STATE: web.AppKey[_State] = web.AppKey("state", _State)
_ASR: web.AppKey[_Asr] = web.AppKey("asr", _Asr)
_SPEAKERS: web.AppKey[SpeakerWorker | None] = web.AppKey("speakers", object)  # type: ignore[arg-type]
_MT: web.AppKey[TranslationService | None] = web.AppKey("mt", object)  # type: ignore[arg-type]


def create_app(
    settings: Settings,
    *,
    asr_engine: AsrEngine | None = None,
    vad: VadModel | None = None,
    mt_engine: TranslationEngine | None = None,
    backend: StateBackend | None = None,
) -> web.Application:
    """Build the server. Engines and the state backend can be injected (tests pass fakes).

    Five cleanup contexts, each unwinding only what it started, in reverse order: state (metrics, the
    backend), ASR (model, VAD, batcher thread and watchdog), speakers (the encoder and its worker
    thread, when its weights are there), MT (model, batcher, cache), sessions
    (the dependency record and the session registry). A failure while starting one unwinds the ones
    before it.
    """
    app = web.Application(middlewares=[edge_middleware], client_max_size=1 << 20)

    async def state_context(app: web.Application) -> AsyncIterator[None]:
        tracing.configure_from_env()  # once per process; nothing without OTEL_EXPORTER_OTLP_ENDPOINT
        metrics = Metrics()
        state = backend or await create_backend(settings.redis_url)
        breaker = None
        if settings.redis_url:
            # around Redis: after a few failed calls, stop waiting on timeouts and apply the outage
            # policy at once; a probe every couple of seconds notices recovery
            breaker = make_breaker("state", metrics, failure_threshold=3, reset_timeout_s=2.0)
        app[_STATE] = _State(metrics, state, breaker)
        try:
            yield
        finally:
            if backend is None:  # an injected backend belongs to the caller
                await state.close()

    async def asr_context(app: web.Application) -> AsyncIterator[None]:
        metrics = app[_STATE].metrics
        engine = asr_engine if asr_engine is not None else await asyncio.to_thread(load_asr_engine, settings)
        vad_model = vad if vad is not None else await asyncio.to_thread(SileroVad)
        breaker = make_breaker(
            "asr",
            metrics,
            failure_threshold=settings.breaker_threshold,
            reset_timeout_s=settings.breaker_reset_s,
        )
        batcher: MicroBatcher[AsrRequest, AsrResult] = MicroBatcher(
            "asr",
            lambda _key, requests: align.run_batch(engine, requests),  # transcriptions and word timings
            max_batch=settings.max_batch if settings.batching else 1,
            max_wait_s=settings.batch_wait_ms / 1000 if settings.batching else 0.0,
            max_pending_finals=settings.max_pending_finals,
            call_timeout_s=settings.model_timeout_s,
            breaker=breaker,
            on_batch=batch_observer(metrics),
            on_drop=lambda reason: metrics.partials_dropped.labels(reason).inc(),
            workers=engine.workers if isinstance(engine, WhisperEngine) else 1,
            # log-Mel features at submission, on their own thread, not on the model threads
            prepare=engine.prepare if isinstance(engine, WhisperEngine) else None,
            # every batch's cost, for admission (off: it waits for the sessions' own measured cost)
            input_s=model_input_s(engine) if settings.asr_calibrate else None,
            bucket=engine.window if isinstance(engine, WhisperEngine) else None,
            # the CPU the model threads get beside other work: admission counts those cores, not workers
            cpu=CpuShare() if isinstance(engine, WhisperEngine) and engine.device == "cpu" else None,
        )
        async with batcher:
            if settings.asr_calibrate and isinstance(engine, WhisperEngine):
                # the workers call together, as under load: that is the cost admission plans with
                costs = await asyncio.to_thread(
                    functools.partial(
                        calibrate,
                        engine,
                        batcher.cost,
                        align.run_batch,
                        workers=batcher.workers,
                        input_s=model_input_s(engine),
                    )
                )
                log.info("model seconds per input second by batch size: %s", costs)
            metrics.model_cost.set_function(lambda: batcher.cost.cost() or 0.0)
            app[_ASR] = _Asr(engine, vad_model, batcher, breaker)
            yield

    async def speakers_context(app: web.Application) -> AsyncIterator[None]:
        encoder = await asyncio.to_thread(load_speaker_encoder, settings)
        if encoder is None:
            app[_SPEAKERS] = None
            yield
            return
        embed_windows, kind = encoder
        log.info("speaker labels by the %s voice encoder", kind.name)
        metrics = app[_STATE].metrics

        def on_batch(stats: SpeakerBatch) -> None:
            metrics.batch_size.labels("speakers").observe(stats.jobs)
            metrics.inference_seconds.labels("speakers").observe(stats.seconds)

        # its one thread, limited to one BLAS thread
        async with SpeakerWorker(embed_windows, on_batch=on_batch, kind=kind) as worker:
            app[_SPEAKERS] = worker
            yield

    async def mt_context(app: web.Application) -> AsyncIterator[None]:
        mt = mt_engine
        if mt is None and settings.mt_model:
            mt = await asyncio.to_thread(load_mt_engine, settings)
        if mt is None:
            app[_MT] = None
            yield
            return
        translator = build_translation(settings, mt, app[_STATE].metrics)
        try:
            async with translator.batcher:
                app[_MT] = translator
                yield
        finally:
            if isinstance(translator.cache, RedisTranslationCache):
                await translator.cache.aclose()

    async def sessions_context(app: web.Application) -> AsyncIterator[None]:
        state, asr, translator = app[_STATE], app[_ASR], app[_MT]
        breakers: dict[str, CircuitBreaker] = {"asr": asr.breaker}
        if state.breaker is not None:
            breakers["state"] = state.breaker
        if translator is not None and isinstance(translator.batcher.breaker, CircuitBreaker):
            breakers["mt"] = translator.batcher.breaker
        services = Services(
            settings=settings,
            vad=asr.vad,
            asr=asr.engine,
            asr_batcher=asr.batcher,
            tokens=TokenService(settings.jwt_secret, settings.token_ttl_s),
            keys=KeyRing(
                settings.api_keys, tier=settings.api_key_tier, pepper=static_key_pepper(settings.jwt_secret)
            ),
            backend=state.backend,
            metrics=state.metrics,
            translator=translator,
            speakers=app[_SPEAKERS],
            breakers=MappingProxyType(breakers),
        )
        registry = SessionRegistry(services)
        state.metrics.admission_load.set_function(
            lambda: model_load(held(registry), asr.batcher.snapshot(), registry.expected_load()) or 0.0
        )
        app[SERVICES] = services
        app[REGISTRY] = registry
        log.info("ready: model %s on %s, batching %s", asr.engine.name, settings.device, settings.batching)
        try:
            async with loop_lag_watched(state.metrics.loop_lag):
                yield
        finally:
            await registry.close()

    app.cleanup_ctx.extend([state_context, asr_context, speakers_context, mt_context, sessions_context])
    app.on_shutdown.append(ops.drain_sessions)
    app.on_response_prepare.append(stamp_response)
    app.router.add_post("/v1/sessions", rest.create_session)
    app.router.add_post("/v1/sessions/{session_id}/resume", rest.resume_session)
    app.router.add_post("/v1/demo/session", rest.demo_session)
    app.router.add_get("/v1/stream/models", rest.list_models)  # /v1/models: OpenAI's list (adapters)
    app.router.add_get("/v1/stream", ws.stream_handler)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.json", openapi_json)
    web_root = Path(settings.web_root) if settings.web_root else WEB_ROOT
    if (web_root / "demo").is_dir():
        app.router.add_get("/", ops.index_of(web_root / "demo" / "index.html"))
        app.router.add_static("/demo/", web_root / "demo", show_index=False)
        app.router.add_static("/web/", web_root, show_index=False)
    setup_adapters(app)  # Deepgram- and OpenAI-compatible surfaces (streamer/adapters/)
    # --- admin API and CORS (edge/admin.py, edge/cors.py); CORS wraps routes, so it comes last
    admin.setup_admin(app)
    setup_cors(app, settings)
    return app


def _breaker_value(state: object) -> float:
    name = getattr(state, "name", str(state)).upper()
    return {"CLOSED": 0.0, "HALF_OPEN": 0.5, "OPEN": 1.0}.get(name, 0.0)


def held(registry: SessionRegistry) -> int:
    """Sessions that count toward the model's load: live and parked (a parked one may resume any time)."""
    return len(registry.sessions) + len(registry.parked)


def model_input_s(engine: AsrEngine) -> Callable[[AsrRequest], float]:
    """Seconds of model input a request is decoded in: its padded window (WhisperEngine), else its audio."""
    if isinstance(engine, WhisperEngine):
        return lambda request: engine.window(request) / FRAMES_PER_S
    return lambda request: request.audio.size / MODEL_RATE
