"""The composition root unwinds what it started when a later resource fails to start."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import make_settings

from streamer.app import create_app
from streamer.pipeline.mt import ModelLoadError


def _batcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("batcher-") and t.is_alive()]


async def test_a_failed_mt_model_load_stops_the_asr_batcher_and_its_watchdog(tmp_path: Path) -> None:
    """The MT model loads after the ASR batcher started; its failure used to leave the batcher's thread
    and watchdog running (they started before the ``try:``)."""
    before_threads = _batcher_threads()
    before_tasks = asyncio.all_tasks()
    settings = make_settings(mt_model=str(tmp_path / "no-such-model"))
    server = TestServer(create_app(settings, asr_engine=FakeAsr(), vad=object()))  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError):
        await server.start_server()
    await server.close()
    assert _batcher_threads() == before_threads
    leftover = [
        t for t in asyncio.all_tasks() - before_tasks if not t.done() and t is not asyncio.current_task()
    ]
    assert not [t for t in leftover if "watchdog" in t.get_name()], leftover
