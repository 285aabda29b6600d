"""SIGTERM on a real ``streamer serve`` process with the real model: nothing accepted is lost.

The client speaks en_utt2.wav with no trailing silence, so the utterance is still open when the signal
arrives. The server must stop taking new sessions, finalize that utterance, deliver its final (the right
words), then ``session.closed`` (``server_shutdown``) and close 1001, and exit 0 within the drain timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from support import API_KEY, load_transcripts, read_pcm16, silence, to_bytes, wer

from faults.streams import CHUNK, events_until_closed, of_type
from streamer.client import ClientError, StreamerClient

pytestmark = pytest.mark.slow

DRAIN_TIMEOUT_S = 10.0
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def serve() -> AsyncIterator[tuple[asyncio.subprocess.Process, str, list[str]]]:
    """``python -m streamer serve`` on a free port; yields (process, base url, its output lines)."""
    port = _free_port()
    env = {
        **os.environ,
        "STREAMER_API_KEYS": API_KEY,
        "STREAMER_ASR_MODEL": "tiny.en",
        "STREAMER_DEVICE": "cpu",
        "STREAMER_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        "STREAMER_MAX_REALTIME_FACTOR": "20",
        "STREAMER_REALTIME_BURST_S": "30",
        "STREAMER_LOG_LEVEL": "INFO",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    ready = asyncio.Event()

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if "streamer listening" in line:
                ready.set()

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(90):
            await ready.wait()
        yield proc, f"http://127.0.0.1:{port}", lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(reader, 5)


async def _refused(url: str) -> str:
    """How a new session is refused while the server drains (a fresh connection, no keep-alive)."""
    try:
        async with StreamerClient(url, api_key=API_KEY) as client:
            await client.create_session()
    except ClientError as e:
        assert (e.status, e.code) == (503, "overloaded"), e
        return "503"
    except aiohttp.ClientConnectionError:
        return "connection refused"  # the listening socket is closed first
    raise AssertionError("a new session was created while the server was draining")


@pytest.mark.timeout(150)
async def test_sigterm_delivers_the_open_utterance_then_closes_1001(
    serve: tuple[asyncio.subprocess.Process, str, list[str]],
) -> None:
    proc, url, lines = serve
    speech = to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt2.wav"))  # no trailing silence
    async with StreamerClient(url, api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            for i in range(0, len(speech), CHUNK):
                await stream.ws.send_bytes(speech[i : i + CHUNK])
                await asyncio.sleep(0.02)  # 5x real time
            # everything before the signal: the utterance has started and has not ended
            before: list[dict[str, object]] = []
            with contextlib.suppress(TimeoutError):
                while (event := await stream.receive(timeout=0.3)) is not None:
                    before.append(event)
            assert of_type(before, "speech.started") and not of_type(before, "speech.stopped"), before

            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            refusal = await _refused(url)
            assert proc.returncode is None  # refused while draining, not because it had exited
            after = await events_until_closed(stream, timeout=DRAIN_TIMEOUT_S + 5)
            close_code = stream.close_code

    rc = await asyncio.wait_for(proc.wait(), DRAIN_TIMEOUT_S + 5)
    exited_after = time.monotonic() - signalled
    output = "\n".join(lines)
    finals = of_type(after, "transcript.final")
    expected = load_transcripts()["en_utt2.wav"]["text"]
    assert len(finals) == 1, after
    assert wer(expected, str(finals[0]["text"])) <= 0.2, finals[0]["text"]
    assert after[-1] == {
        "type": "session.closed",
        "reason": "server_shutdown",
        "audio_ms": after[-1]["audio_ms"],
        "finals": 1,
    }
    assert after.index(finals[0]) < len(after) - 1  # the final came before session.closed
    assert not of_type(after, "error"), after
    assert close_code == 1001
    assert rc == 0, output
    assert exited_after < DRAIN_TIMEOUT_S, output
    print(f"\nrefused new session: {refusal}; exited {exited_after:.2f}s after SIGTERM")
