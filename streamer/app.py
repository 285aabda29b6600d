"""The application factory: wiring of routes, models, batchers and state, with their lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from streamer.config import Settings
from streamer.guards.backend import StateBackend, create_backend
from streamer.guards.breaker import CircuitBreaker
from streamer.guards.keys import KeyRing
from streamer.metrics import Metrics
from streamer.openapi import openapi_json
from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult, WhisperEngine, resolve_device
from streamer.pipeline.batcher import BatchStats, MicroBatcher
from streamer.pipeline.models import resolve_asr_model
from streamer.pipeline.mt import TranslationEngine
from streamer.pipeline.mt_cache import (
    AsyncMemoryTranslationCache,
    RedisTranslationCache,
    TranslationCache,
)
from streamer.pipeline.translation import TranslationService, run_mt_batch
from streamer.pipeline.vad import SileroVad, VadModel
from streamer.services import Services
from streamer.session import admin, ops, rest, ws
from streamer.session.cors import setup_cors
from streamer.session.edge import SERVICES, edge_middleware
from streamer.session.resume import release_all
from streamer.session.tokens import TokenService

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"


def load_asr_engine(settings: Settings) -> AsrEngine:
    """Resolve and load the configured Whisper model (blocking: call it in a thread)."""
    path = resolve_asr_model(settings.asr_model, settings.model_cache_dir)
    return WhisperEngine(
        path,
        name=settings.asr_model if settings.asr_model in ("tiny.en", "base") else None,
        threads=settings.asr_threads,
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


def build_translation(
    settings: Settings, engine: TranslationEngine, metrics: Metrics, on_batch: Callable[[BatchStats], None]
) -> TranslationService:
    breaker = CircuitBreaker(
        "mt",
        failure_threshold=settings.breaker_threshold,
        reset_timeout_s=settings.breaker_reset_s,
        on_change=lambda name, st: metrics.breaker_state.labels(name).set(_breaker_value(st)),
    )
    batcher: MicroBatcher[str, str] = MicroBatcher(
        "mt",
        functools.partial(run_mt_batch, engine),
        max_batch=32 if settings.batching else 1,
        max_wait_s=settings.batch_wait_ms / 1000 if settings.batching else 0.0,
        max_pending_finals=settings.max_pending_finals,
        call_timeout_s=settings.model_timeout_s,
        breaker=breaker,
        on_batch=on_batch,
    )
    cache: TranslationCache = (
        RedisTranslationCache(settings.redis_url) if settings.redis_url else AsyncMemoryTranslationCache()
    )
    return TranslationService(engine, batcher, cache)


def create_app(
    settings: Settings,
    *,
    asr_engine: AsrEngine | None = None,
    vad: VadModel | None = None,
    mt_engine: TranslationEngine | None = None,
    backend: StateBackend | None = None,
) -> web.Application:
    """Build the server. Engines and the state backend can be injected (tests pass fakes)."""
    app = web.Application(middlewares=[edge_middleware], client_max_size=1 << 20)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        metrics = Metrics()
        engine = asr_engine if asr_engine is not None else await asyncio.to_thread(load_asr_engine, settings)
        state = backend or await create_backend(settings.redis_url)
        breaker = CircuitBreaker(
            "asr",
            failure_threshold=settings.breaker_threshold,
            reset_timeout_s=settings.breaker_reset_s,
            on_change=lambda name, st: metrics.breaker_state.labels(name).set(_breaker_value(st)),
        )

        def on_batch(stats: BatchStats) -> None:
            metrics.batch_size.labels(stats.name).observe(stats.size)
            metrics.inference_seconds.labels(stats.name).observe(stats.seconds)

        batcher: MicroBatcher[AsrRequest, AsrResult] = MicroBatcher(
            "asr",
            lambda _key, requests: engine.transcribe_batch(requests),
            max_batch=settings.max_batch if settings.batching else 1,
            max_wait_s=settings.batch_wait_ms / 1000 if settings.batching else 0.0,
            max_pending_finals=settings.max_pending_finals,
            call_timeout_s=settings.model_timeout_s,
            breaker=breaker,
            on_batch=on_batch,
            on_drop=lambda reason: metrics.partials_dropped.labels(reason).inc(),
        )
        batcher.start()
        watchdogs = [asyncio.create_task(batcher.watchdog())]
        translator = None
        mt = mt_engine
        if mt is None and settings.mt_model:
            mt = await asyncio.to_thread(load_mt_engine, settings)
        if mt is not None:
            translator = build_translation(settings, mt, metrics, on_batch)
            translator.batcher.start()
            watchdogs.append(asyncio.create_task(translator.batcher.watchdog()))
        services = Services(
            settings=settings,
            vad=vad if vad is not None else await asyncio.to_thread(SileroVad),
            asr=engine,
            asr_batcher=batcher,
            tokens=TokenService(settings.jwt_secret, settings.token_ttl_s),
            keys=KeyRing(settings.api_keys, tier=settings.api_key_tier),
            backend=state,
            metrics=metrics,
            translator=translator,
        )
        services.breakers["asr"] = breaker
        if settings.redis_url:
            # around Redis: after a few failed calls, stop waiting on timeouts and apply the outage
            # policy at once; a probe every couple of seconds notices recovery
            services.breakers["state"] = CircuitBreaker(
                "state",
                failure_threshold=3,
                reset_timeout_s=2.0,
                on_change=lambda name, st: metrics.breaker_state.labels(name).set(_breaker_value(st)),
            )
        if translator is not None and translator.batcher.breaker is not None:
            services.breakers["mt"] = translator.batcher.breaker  # type: ignore[assignment]
        app[SERVICES] = services
        log.info("ready: model %s on %s, batching %s", engine.name, settings.device, settings.batching)
        try:
            yield
        finally:
            await release_all(services)
            for task in watchdogs:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await batcher.stop()
            if translator is not None:
                await translator.batcher.stop()
                if isinstance(translator.cache, RedisTranslationCache):
                    await translator.cache.aclose()
            if backend is None:
                await state.close()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(ops.drain_sessions)
    app.router.add_post("/v1/sessions", rest.create_session)
    app.router.add_post("/v1/sessions/{session_id}/resume", rest.resume_session)
    app.router.add_post("/v1/demo/session", rest.demo_session)
    app.router.add_get("/v1/models", rest.list_models)
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
    # --- admin API and CORS (session/admin.py, session/cors.py); CORS wraps routes, so it comes last
    admin.setup_admin(app)
    setup_cors(app, settings)
    return app


def _breaker_value(state: object) -> float:
    name = getattr(state, "name", str(state)).upper()
    return {"CLOSED": 0.0, "HALF_OPEN": 0.5, "OPEN": 1.0}.get(name, 0.0)
