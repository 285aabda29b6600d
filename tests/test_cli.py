"""The command line: ``streamer stream`` prints the transcript; ``serve`` fails clearly without a model."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from aiohttp.test_utils import TestServer
from support import API_KEY, FIXTURES, base_url, load_transcripts, wer

pytestmark = pytest.mark.slow


async def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_stream_prints_the_transcript(server: TestServer) -> None:
    text = load_transcripts()["en_utt2.wav"]["text"]
    code, out, err = await _run(
        "stream",
        str(FIXTURES / "en_utt2.wav"),
        "--url",
        base_url(server),
        "--api-key",
        API_KEY,
        "--language",
        "en",
    )
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 1, out
    # "[   0.00-   3.52] Please open the window ..."
    assert wer(text, lines[0].split("]", 1)[1]) <= 0.2, out


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
async def test_stream_sends_g711(server: TestServer, encoding: str) -> None:
    """``--encoding`` encodes the WAV's PCM before sending; the session decodes it (any other pairing of
    what is sent and what the session expects is noise, not this sentence)."""
    text = load_transcripts()["en_utt2.wav"]["text"]
    code, out, err = await _run(
        "stream",
        str(FIXTURES / "en_utt2.wav"),
        "--url",
        base_url(server),
        "--api-key",
        API_KEY,
        "--language",
        "en",
        "--encoding",
        encoding,
    )
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and wer(text, lines[0].split("]", 1)[1]) <= 0.2, out


async def test_stream_reports_a_refused_session(server: TestServer) -> None:
    code, _, err = await _run(
        "stream", str(FIXTURES / "en_utt1.wav"), "--url", base_url(server), "--api-key", "bad"
    )
    assert code == 1
    assert "401" in err and "unauthorized" in err


async def test_serve_names_what_to_install_for_a_missing_model(tmp_path: object) -> None:
    code, _, err = await _run("serve", "--port", "0", env={"STREAMER_ASR_MODEL": "/nonexistent/model"})
    assert code == 2
    assert "pip install 'streamer[models]'" in err
