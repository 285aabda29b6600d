"""Settings: one frozen, typed object, read from the environment once.

Every field can be set with an environment variable named ``STREAMER_<FIELD>`` (upper case). CLI flags
override the environment. Durations are seconds unless the name says ``_ms``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from streamer.errors import ConfigError

PREFIX = "STREAMER_"


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. Defaults are the embedded single-instance setup."""

    host: str = "127.0.0.1"
    port: int = 8080
    # --- auth
    api_keys: tuple[str, ...] = ()
    api_key_tier: str = "unlimited"  # tier of the keys in STREAMER_API_KEYS (operator-trusted keys)
    admin_key: str | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token_ttl_s: float = 60.0
    public_url: str | None = None
    # --- models
    asr_model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "int8"
    model_cache_dir: str | None = None
    mt_model: str | None = None
    beam_size: int = 1
    asr_threads: int = 0  # CTranslate2 threads for the ASR model; 0 = one per core
    # --- state
    redis_url: str | None = None
    redis_policy: str = "fail_open"  # or "fail_closed": what limits do while Redis is down
    # --- audio and segmentation
    max_frame_ms: int = 1000
    min_frame_ms: int = 10
    vad_start_threshold: float = 0.5
    vad_end_threshold: float = 0.35
    min_speech_ms: int = 200
    pre_roll_ms: int = 300
    end_silence_ms: int = 400
    pause_ms: int = 160
    max_utterance_s: float = 15.0
    partial_interval_ms: int = 500
    # --- batching and backpressure
    batching: bool = True
    max_batch: int = 16
    batch_wait_ms: int = 10
    max_pending_finals: int = 256
    model_timeout_s: float = 30.0  # a model call running longer fails its jobs and counts as a failure
    breaker_threshold: int = 3
    breaker_reset_s: float = 10.0
    max_sessions: int = 64
    saturation_latency_s: float = 1.2
    session_out_queue: int = 256
    send_timeout_s: float = 10.0
    # --- limits
    max_session_s: float = 3600.0
    max_realtime_factor: float = 3.0
    realtime_burst_s: float = 10.0
    max_messages_per_s: float = 50.0
    message_burst: float = 100.0
    session_rate_per_key_per_min: float = 120.0
    # --- demo and origins
    demo: bool | None = None  # None = on when bound to loopback
    allowed_origins: tuple[str, ...] = ()
    # --- operations
    drain_timeout_s: float = 20.0
    resume_window_s: float = 30.0
    web_root: str | None = None  # the demo page's files; default: web/ beside the package source
    log_json: bool = False
    log_level: str = "INFO"

    @property
    def demo_enabled(self) -> bool:
        """Demo mode is on by default only for a server bound to a loopback interface."""
        if self.demo is not None:
            return self.demo
        return self.host in ("127.0.0.1", "localhost", "::1")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated like the environment)."""
        return dataclasses.replace(self, **changes)


def _parse(name: str, kind: Any, raw: str) -> Any:
    text = raw.strip()
    if kind is bool or kind == (bool | None):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        if kind is not bool and text.lower() in ("", "auto", "none"):
            return None
        raise ConfigError(f"{PREFIX}{name.upper()} must be a boolean, got {raw!r}")
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == (str | None):
        return text or None
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError as e:
        raise ConfigError(f"{PREFIX}{name.upper()} must be a number, got {raw!r}") from e
    return text


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read ``STREAMER_*`` variables (and explicit overrides, e.g. CLI flags) into Settings."""
    env = os.environ if env is None else env
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _parse(f.name, hints[f.name], raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"STREAMER_DEVICE must be cpu, cuda or auto, got {s.device!r}")
    if s.redis_policy not in ("fail_open", "fail_closed"):
        raise ConfigError("STREAMER_REDIS_POLICY must be fail_open or fail_closed")
    if not 0 < s.vad_end_threshold <= s.vad_start_threshold < 1:
        raise ConfigError("VAD thresholds must satisfy 0 < end <= start < 1")
    if s.pause_ms >= s.end_silence_ms:
        raise ConfigError("STREAMER_PAUSE_MS must be shorter than STREAMER_END_SILENCE_MS")
    if s.max_batch < 1 or s.max_sessions < 1:
        raise ConfigError("STREAMER_MAX_BATCH and STREAMER_MAX_SESSIONS must be at least 1")
