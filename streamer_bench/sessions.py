"""The bench's sessions: each connects, streams its script in real time over protocol v1, and is scored.

Synchronized starts wait at a gate until every session has connected (or been refused), then start their
audio within 0.1 s; spread starts connect and stream at their own offsets. A session streams PCM16 in
100 ms chunks, or, given its :class:`~streamer_bench.recording.Recording`, that container's 250 ms pieces
(``encoding`` ``webm`` or ``ogg``), each when its audio begins; either is scored on the same sentences.
With ``diarize`` every session asks for speaker labels (and the word timings they need) as a client would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import aiohttp

from streamer.client import ClientError, Stream, StreamerClient
from streamer_bench.latency import Score, score_session
from streamer_bench.recording import GRID_MS, Recording
from streamer_bench.script import FRAME_MS, Script
from streamer_bench.server import BENCH_KEY

CHUNK_MS = FRAME_MS
DRAIN_TIMEOUT_S = 90.0  # after session.close: the rest of the finals, then session.closed


class StartGate:
    """Synchronized starts: the audio begins once every session has connected or been refused."""

    def __init__(self, sessions: int) -> None:
        self._left = sessions
        self._open: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def arrive(self) -> None:
        self._left -= 1
        if self._left <= 0 and not self._open.done():
            self._open.set_result(time.monotonic() + 0.05)

    async def opened(self) -> float:
        return await asyncio.shield(self._open)


def new_http() -> aiohttp.ClientSession:
    """One HTTP client for every session of a run (aiohttp's default pool stops at 100 connections)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def session_config(rate: int, encoding: str = "pcm16", diarize: bool = False) -> dict[str, object]:
    """The session config a bench session sends: its audio, English, and with ``diarize`` speaker labels
    and the word timings they come on (``diarize`` implies them; a client that wants words says so)."""
    config: dict[str, object] = {"sample_rate": rate, "language": "en"}
    if encoding != "pcm16":
        config["encoding"] = encoding
    if diarize:
        config |= {"diarize": True, "word_timestamps": True}
    return config


async def connect_session(
    client: StreamerClient, rate: int, encoding: str = "pcm16", diarize: bool = False
) -> Stream | Score:
    """A live stream, or the Score of a session that never started (refused or failed)."""
    try:
        return await client.connect(session_config(rate, encoding, diarize))
    except ClientError as e:
        return Score(sessions=1, refused=1, errors=Counter([f"refused_{e.code}"]))
    except aiohttp.WSServerHandshakeError as e:  # refused at the upgrade: only the HTTP status is known
        return Score(sessions=1, refused=1, errors=Counter([f"refused_upgrade_{e.status}"]))
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return Score(sessions=1, failed=1, errors=Counter([f"connect_{type(e).__name__}"]))


async def speak(
    client: StreamerClient,
    script: Script,
    connect_at: float,
    gate: StartGate | None,
    offset: float,
    recording: Recording | None = None,
    diarize: bool = False,
) -> Score:
    """One session: connect at ``connect_at`` (with ``diarize``: asking for speaker labels), stream the
    script in real time (as PCM16, or as ``recording``'s container pieces), read every event, score."""
    await asyncio.sleep(max(0.0, connect_at - time.monotonic()))
    try:
        encoding = recording.container if recording is not None else "pcm16"
        stream = await connect_session(client, script.rate, encoding, diarize)
    finally:
        if gate is not None:
            gate.arrive()
    if isinstance(stream, Score):
        stream.sentences = len(script.lines)
        return stream
    begin = (await gate.opened()) + offset if gate is not None else time.monotonic()
    broke: str | None = None
    async with stream:
        reader = asyncio.create_task(read_all(stream))
        if recording is None:
            chunks = _pcm_chunks(script)
            starts = [k * CHUNK_MS / 1000 for k in range(len(chunks))]
        else:
            chunks, starts = list(recording.pieces), [ms / 1000 for ms in recording.starts_ms]
        times, broke = await _send(stream, chunks, starts, begin, reader)
        try:
            await asyncio.wait_for(reader, DRAIN_TIMEOUT_S)
        except TimeoutError:
            broke = broke or "bench_timeout"
    if recording is None:
        score = score_session(script.lines, times, CHUNK_MS, stream.events)
    else:  # the same definition on the decoded audio: each cell's time is when its piece went
        score = score_session(script.lines, recording.cell_times(times), float(GRID_MS), stream.events)
    if broke is None and not any(e.get("type") == "session.closed" for _, e in stream.events):
        broke = f"closed_{stream.close_code}"
    if broke is not None:
        score.failed = 1
        score.errors[broke] += 1
    return score


def _pcm_chunks(script: Script) -> list[bytes]:
    step = script.rate * CHUNK_MS // 1000 * 2
    return [script.pcm[i : i + step] for i in range(0, len(script.pcm), step)]


async def _send(
    stream: Stream, chunks: Sequence[bytes], starts: Sequence[float], begin: float, reader: asyncio.Task[None]
) -> tuple[list[float], str | None]:
    """Chunk ``k`` at ``begin + starts[k]`` (s); the times they went, and why sending stopped early (None:
    it did not)."""
    times: list[float] = []
    try:
        for chunk, at in zip(chunks, starts, strict=True):
            delay = begin + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if reader.done():
                return times, f"closed_{stream.close_code}"
            await stream.ws.send_bytes(chunk)
            times.append(time.monotonic())
        await stream.close_session()
    except (ConnectionError, aiohttp.ClientError) as e:
        return times, f"send_{type(e).__name__}"
    return times, None


async def read_all(stream: Stream) -> None:
    async for _ in stream:
        pass


async def run_sessions(
    url: str,
    scripts: Sequence[Script],
    starts: str,
    offsets: Sequence[float],
    recordings: Sequence[Recording] | None = None,
    diarize: bool = False,
) -> Score:
    """Every script as its own session, started as ``starts`` says, streamed as PCM16 or, given
    ``recordings`` (one per script), as their containers, diarized or not; the sum of their scores."""
    gate = StartGate(len(scripts)) if starts == "sync" else None
    t0 = time.monotonic() + 0.1
    async with new_http() as http, StreamerClient(url, api_key=BENCH_KEY, http=http) as client:
        scores = await asyncio.gather(
            *(
                speak(
                    client,
                    s,
                    t0 if gate else t0 + offsets[i],
                    gate,
                    offsets[i] if gate else 0.0,
                    recordings[i] if recordings is not None else None,
                    diarize,
                )
                for i, s in enumerate(scripts)
            ),
            return_exceptions=True,
        )
    total = Score()
    for score, script in zip(scores, scripts, strict=True):
        if isinstance(score, BaseException) and not isinstance(score, Exception):
            raise score  # cancellation, interrupt
        if isinstance(score, Exception):  # a bench bug must not pass for a slow server: it is named
            score = Score(
                sessions=1, failed=1, sentences=len(script.lines), errors=Counter([repr(score)[:80]])
            )
        total.add(score)
    return total
