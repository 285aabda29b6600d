"""Settings: typed, validated whenever made (also by .replace and .model_copy), read from STREAMER_*."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamer.config import Device, LogLevel, RedisPolicy, Settings
from streamer.config_env import load_settings
from streamer.errors import ConfigError

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_pending_finals", 0),  # every final would wait for a slot forever
        ("session_out_queue", 0),  # every partial would be dropped (and the queue unbounded)
        ("session_out_queue", 1),
        ("max_batch", 0),
        ("max_sessions", 0),
        ("message_burst", 0.0),
        ("max_realtime_factor", float("inf")),
        ("token_ttl_s", -1.0),
        ("jwt_secret", "too-short"),
        ("device", "tpu"),
        ("redis_policy", "fail_sometimes"),
        ("api_key_tier", "platinum"),
        ("log_level", "chatty"),
        ("port", 70000),
        ("pause_ms", 400),  # not shorter than end_silence_ms
        ("vad_end_threshold", 0.6),  # above the start threshold
        ("no_such_setting", 1),
    ],
)
def test_dangerous_or_invalid_values_are_refused_everywhere(
    field: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cross_field = field in ("pause_ms", "vad_end_threshold")
    with pytest.raises(ValidationError, match="END_SILENCE|VAD" if cross_field else field):
        Settings(**{field: value})
    with pytest.raises(ValidationError):
        Settings().replace(**{field: value})
    with pytest.raises(ValidationError):
        Settings().model_copy(update={field: value})
    if field != "no_such_setting":
        monkeypatch.setenv(f"STREAMER_{field.upper()}", str(value))
        with pytest.raises(ConfigError, match=f"STREAMER_{field.upper()}|PAUSE_MS|VAD"):
            load_settings()


def test_every_documented_variable_form_still_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "STREAMER_API_KEYS": "key-one-0123456789, key-two-0123456789",
        "STREAMER_ADMIN_KEY": "",
        "STREAMER_ASR_MODEL": "base",
        "STREAMER_DEVICE": "CPU",
        "STREAMER_MT_MODEL": "",
        "STREAMER_REDIS_URL": "redis://127.0.0.1:6379/0",
        "STREAMER_REDIS_POLICY": "fail_closed",
        "STREAMER_JWT_SECRET": SECRET,
        "STREAMER_BATCHING": "off",
        "STREAMER_MAX_SESSIONS": "8",
        "STREAMER_DEMO": "true",
        "STREAMER_ALLOWED_ORIGINS": "https://App.example.com/,https://b.example.com",
        "STREAMER_LOG_LEVEL": "debug",
        "STREAMER_RESUME_WINDOW_S": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings(port=9000, host=None)  # None: a CLI flag that was not given
    assert s.api_keys == ("key-one-0123456789", "key-two-0123456789")
    assert s.admin_key is None and s.mt_model is None and s.demo is True
    assert s.asr_model == "base" and s.device is Device.CPU and s.redis_policy is RedisPolicy.FAIL_CLOSED
    assert s.jwt_secret == SECRET and s.batching is False and s.max_sessions == 8
    assert s.allowed_origins == ("https://App.example.com/", "https://b.example.com")
    assert s.log_level is LogLevel.DEBUG and s.resume_window_s == 0.0
    assert s.port == 9000 and s.host == "127.0.0.1"
    assert type(s) is Settings


def test_settings_built_directly_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_MAX_SESSIONS", "3")
    assert Settings().max_sessions == 64
    assert load_settings().max_sessions == 3


def test_settings_are_frozen_and_copies_keep_the_rest() -> None:
    s = Settings(jwt_secret=SECRET, max_batch=4)
    with pytest.raises(ValidationError):
        s.max_batch = 8  # type: ignore[misc]
    copy = s.replace(max_sessions=2)
    assert (copy.max_sessions, copy.max_batch, copy.jwt_secret) == (2, 4, SECRET)
    assert s.model_copy(update={"max_sessions": 3}).max_sessions == 3
    assert s.group("state") == {"redis_url": None, "redis_policy": RedisPolicy.FAIL_OPEN}


def test_a_secret_is_never_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_JWT_SECRET", "hunter2-secret")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "STREAMER_JWT_SECRET" in e.value.message and "hunter2" not in e.value.message
