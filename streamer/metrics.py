"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streamer.errors import StreamerError

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.active_sessions = Gauge("streamer_active_sessions", "Live WebSocket sessions", registry=r)
        self.sessions_total = Counter("streamer_sessions", "Sessions started", registry=r)
        self.audio_seconds = Counter("streamer_audio_seconds", "Audio received, in seconds", registry=r)
        self.refusals = Counter(
            "streamer_refusals", "Requests or sessions refused, by reason", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "streamer_queue_depth", "Jobs waiting in a batcher", ["batcher", "priority"], registry=r
        )
        self.batch_size = Histogram(
            "streamer_batch_size",
            "Jobs per model call",
            ["batcher"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "streamer_inference_seconds",
            "Model call duration",
            ["batcher"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "streamer_final_latency_seconds",
            "End of utterance (audio received) to transcript.final queued",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.finals = Counter("streamer_finals", "transcript.final events sent", registry=r)
        self.finals_rejected = Counter(
            "streamer_finals_rejected", "Utterances that yielded no final, by reason", ["reason"], registry=r
        )
        self.final_outcomes = Counter(
            "streamer_final_outcomes",
            "Utterances by outcome: first_try, fallback_rescued, dropped_nonspeech, unrecognized_speech",
            ["outcome"],
            registry=r,
        )
        self.decode_attempts = Counter(
            "streamer_decode_attempts",
            "Final decodes by attempt: greedy, beam, or a sampling temperature",
            ["attempt"],
            registry=r,
        )
        self.model_work = Counter(
            "streamer_model_work_seconds",
            "Speech-model time by what it was spent on: final, speculative_used, speculative_wasted, "
            "partial, fallback",
            ["kind"],
            registry=r,
        )
        self.model_window = Counter(
            "streamer_model_window_seconds",
            "Seconds of model input window by part: audio, or padding added to fill a length bucket",
            ["part"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "streamer_event_loop_lag_seconds",
            "How late the event loop woke a 100 ms timer (work on the loop delays every session)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.warnings = Counter("streamer_warnings", "warning events sent, by code", ["code"], registry=r)
        self.partials_dropped = Counter(
            "streamer_partials_dropped", "Partial results dropped, by reason", ["reason"], registry=r
        )
        self.breaker_state = Gauge(
            "streamer_breaker_open",
            "1 while a circuit breaker is open (0.5 half-open)",
            ["breaker"],
            registry=r,
        )
        self.errors = Counter("streamer_errors", "error events sent, by code", ["code"], registry=r)
        # the operator's view (deploy/grafana, deploy/prometheus): readiness and state-backend health are
        # set when /metrics is scraped, so every instance reports them whatever its traffic
        self.ready = Gauge("streamer_ready", "1 while /readyz answers ready, else 0", registry=r)
        self.state_backend_up = Gauge(
            "streamer_state_backend_up",
            "1 while the state backend (redis or memory) answers a ping, else 0",
            ["backend"],
            registry=r,
        )
        self.first_partial_latency = Histogram(
            "streamer_first_partial_latency_seconds",
            "Speech detected (VAD start) to the utterance's first transcript.partial queued",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # what admission plans with: 1.0 = the model's capacity (all its workers busy); it refuses new
        # sessions above its max_model_load. The HorizontalPodAutoscaler's signal beside the session count.
        self.admission_load = Gauge(
            "streamer_admission_load",
            "Expected ASR model load of the sessions held, as a fraction of the model's capacity",
            registry=r,
        )
        self.model_cost = Gauge(
            "streamer_model_cost_per_input_second",
            "ASR model seconds (one worker) per second of model input (padded windows)",
            registry=r,
        )
        self.speculations = Counter(
            "streamer_speculations",
            "Speculative finals (decoded at a pause) by outcome: used as the final, wasted (decoded, then"
            " speech resumed or the utterance ended elsewhere), withdrawn (cancelled before its result:"
            " out of the model's queue if still there)",
            ["outcome"],
            registry=r,
        )

    def refused(self, e: StreamerError) -> None:
        """Count a refused session or request once, at the edge that answers it: by its code, unless
        admission or the state backend counted it already under a finer reason."""
        if not e.counted:
            self.refusals.labels(e.code).inc()
