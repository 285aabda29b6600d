"""Clients that vanish mid-utterance leave nothing behind: no tasks, no sessions, no memory.

The server runs in the test's own event loop (``make_server``), so ``asyncio.all_tasks()`` sees every
task it has: the reader's handler, the outbox writer, the final emitter, partial deliveries, slot
keep-alives. A disconnect either releases the session at once (``resume_window_s=0``) or parks it for the
resume window and releases it when the window ends.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Awaitable, Callable

import psutil
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, base_url, make_settings

from faults.streams import eventually, next_event, send_audio, utterance
from streamer.client import Stream, StreamerClient
from streamer.edge.handshake import REGISTRY, SERVICES
from streamer.edge.ws import Connection
from streamer.session.outbox import Outbox
from streamer.session.registry import SessionRegistry
from streamer.session.runtime import StreamSession

ServerFactory = Callable[..., Awaitable[TestServer]]
# half of en_utt1 (0.3 s lead + 1.6 s of speech): the utterance is open when the client goes
HALF = utterance(tail_s=0.0)[: 3200 * 19]


def _tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def _idle(registry: SessionRegistry) -> bool:
    return not (registry.sessions or registry.connections or registry.parked)


def _alive(*kinds: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))


async def _drop_mid_utterance(client: StreamerClient, *, abort: bool) -> str:
    """Connect, speak half an utterance, and go: a close frame, or (``abort``) a dead TCP connection."""
    stream: Stream = await client.connect({"language": "en"})
    await send_audio(stream, HALF, speed=20.0)
    await next_event(stream, "speech.started")
    if abort:
        transport = stream.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
    await stream.ws.close()
    return stream.info.session_id


async def _baseline(server: TestServer) -> set[asyncio.Task[object]]:
    """The server's own tasks once a first session has come and gone (lazy set-up is done)."""
    registry = server.app[REGISTRY]
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        await _drop_mid_utterance(client, abort=False)
    await eventually(lambda: _idle(registry), "the warm-up session to be released")
    await asyncio.sleep(0.1)
    return _tasks()


async def _assert_no_leaked_tasks(before: set[asyncio.Task[object]]) -> None:
    try:
        await eventually(lambda: len(_tasks()) <= len(before), "the session's tasks to end")
    except AssertionError:
        raise AssertionError(f"leaked tasks: {sorted(map(repr, _tasks() - before))}") from None


@pytest.mark.parametrize("abort", [False, True], ids=["close-frame", "tcp-abort"])
async def test_disconnect_without_resume_window_releases_everything(
    make_server: ServerFactory, abort: bool
) -> None:
    server = await make_server(make_settings(resume_window_s=0.0), asr_engine=FakeAsr())
    services, registry = server.app[SERVICES], server.app[REGISTRY]
    before = await _baseline(server)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        for _ in range(3):
            await _drop_mid_utterance(client, abort=abort)
    await eventually(lambda: _idle(registry), "the sessions to be released")
    await _assert_no_leaked_tasks(before)
    assert _alive(StreamSession, Connection) == 0
    assert services.asr_batcher.depth == (0, 0) and services.asr_batcher.finals_pending == 0


async def test_parked_sessions_are_released_when_the_window_ends(make_server: ServerFactory) -> None:
    window = 0.5
    server = await make_server(make_settings(resume_window_s=window), asr_engine=FakeAsr())
    registry = server.app[REGISTRY]
    before = await _baseline(server)
    async with StreamerClient(base_url(server), api_key=API_KEY) as client:
        session_id = await _drop_mid_utterance(client, abort=True)
    # parked, resumable, and the open utterance was finalized into its history while parked
    await eventually(lambda: session_id in registry.parked, "the session to be parked")
    await eventually(
        lambda: registry.parked[session_id].seq == 1,
        "the open utterance to be finalized while parked",
    )
    # then the window ends and it all goes
    await eventually(lambda: _idle(registry), "the parked session to be released", timeout=window + 3)
    await _assert_no_leaked_tasks(before)
    assert _alive(StreamSession, Connection) == 0


async def test_memory_stays_bounded_over_many_dropped_sessions(make_server: ServerFactory) -> None:
    """50 connect / speak / vanish cycles after a warm-up of 10.

    Bounds: no session object survives; the Python heap (tracemalloc) grows by less than 1 MiB over the
    50 cycles, under 20 KiB per dropped session, less than one second of its audio; and the process RSS
    (which also holds the VAD's and the allocator's native memory) by under 16 MiB. What the heap does
    gain (about 0.5 MiB) is bounded caches filling up: yarl's URL caches (every URL carries a new token),
    the batcher's 256-entry latency window, the single-use token ids (kept until the tokens expire).
    """
    server = await make_server(make_settings(resume_window_s=0.0), asr_engine=FakeAsr())
    registry = server.app[REGISTRY]
    process = psutil.Process()

    async def cycles(n: int) -> None:
        async with StreamerClient(base_url(server), api_key=API_KEY) as client:
            for i in range(n):
                await _drop_mid_utterance(client, abort=i % 2 == 1)
        await eventually(lambda: _idle(registry), "the sessions to be released")

    await cycles(10)
    gc.collect()
    tracemalloc.start()
    try:
        rss_before = process.memory_info().rss
        heap_before, _ = tracemalloc.get_traced_memory()
        await cycles(50)
        await asyncio.sleep(0.2)
        gc.collect()
        heap_after, _ = tracemalloc.get_traced_memory()
        rss_after = process.memory_info().rss
    finally:
        tracemalloc.stop()
    print(
        f"\nheap growth {(heap_after - heap_before) / 1024:.0f} KiB, rss {(rss_after - rss_before) >> 10} KiB"
    )
    assert _alive(StreamSession, Connection, Outbox) == 0
    assert heap_after - heap_before < 1 << 20
    assert rss_after - rss_before < 16 << 20
