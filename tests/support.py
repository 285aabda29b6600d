"""Helpers for tests: settings, speech fixtures, WER."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import soxr
from aiohttp.test_utils import TestServer
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from streamer.config import Settings
from streamer_bench.wer import wer as wer

# what the ``make_server`` fixture (tests/conftest.py) returns
ServerFactory = Callable[..., Awaitable[TestServer]]

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "test-key-0123456789abcdef0123456789abcdef"
JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "api_keys": (API_KEY,),
        "admin_key": "admin-0123456789abcdef0123456789abcdef",
        "jwt_secret": JWT_SECRET,
        "device": "cpu",
        "max_realtime_factor": 20.0,
        "realtime_burst_s": 30.0,
        "max_messages_per_s": 1000.0,
        "message_burst": 1000.0,
        "demo": True,
        # every test client is 127.0.0.1: tests of refusals would throttle each other (tests/hostile: on)
        "auth_failures_per_min": 0.0,
        # the model's timed cost swings tenfold on a loaded machine: tests that hold sessions at once must
        # not be refused by it (tests/guards/test_calibration.py and test_admission_load.py turn it on)
        "asr_calibrate": False,
    }
    base.update(overrides)
    return Settings(**base)


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


# --- speech fixtures


def load_transcripts() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((FIXTURES / "transcripts.json").read_text())
    return data


def read_pcm16(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / name), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def read_float(name: str) -> np.ndarray:
    """A fixture WAV as float32 samples in [-1, 1)."""
    out: np.ndarray = read_pcm16(name).astype(np.float32) / 32768
    return out


def to_bytes(samples: np.ndarray) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


def resample_pcm(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == 16000:
        return samples
    out = soxr.resample(samples.astype(np.float32) / 32768.0, 16000, rate)
    return np.clip(out * 32768.0, -32768, 32767).astype("<i2")


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype="<i2")


def skip_or_fail(what: str) -> None:
    """Skip locally, fail in CI: a CI run must not pass tests that need a service it lacks."""
    if in_ci():
        pytest.fail(f"{what}; CI must run these tests")
    pytest.skip(what)


def run_js(harness: Path) -> dict[str, Any]:
    """Run a ``tests/js`` harness under node: what it printed last, as JSON (node missing: skip or fail)."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed")
    assert node is not None
    run = subprocess.run([node, str(harness)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def require_redis(url: str) -> None:
    """Return only if a Redis answers at ``url``."""
    client = redis.Redis.from_url(
        url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (RedisError, OSError) as e:
        skip_or_fail(f"Redis at {url} is unreachable ({e})")
    finally:
        client.close()


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
