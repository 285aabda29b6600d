"""``streamer stream --encoding <container>`` sends a recording's bytes as they are (issue 19)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from encoders import encode
from support import API_KEY, FIXTURES, base_url, load_transcripts, read_pcm16, wer

pytestmark = pytest.mark.slow

SENTENCE = "en_utt2.wav"


async def _stream(path: Path, encoding: str, server: TestServer) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer",
        "stream",
        str(path),
        "--url",
        base_url(server),
        "--api-key",
        API_KEY,
        "--language",
        "en",
        "--encoding",
        encoding,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("encoding", ["webm", "container"])
async def test_stream_sends_a_webm_file_as_it_is(server: TestServer, tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "sentence.webm"
    await asyncio.to_thread(path.write_bytes, encode(read_pcm16(SENTENCE), 16000, "webm"))
    code, out, err = await _stream(path, encoding, server)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and wer(load_transcripts()[SENTENCE]["text"], lines[0].split("]", 1)[1]) <= 0.2, (
        out
    )


async def test_stream_sends_a_wav_file_as_it_is(server: TestServer) -> None:
    code, out, err = await _stream(FIXTURES / SENTENCE, "wav", server)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and wer(load_transcripts()[SENTENCE]["text"], lines[0].split("]", 1)[1]) <= 0.2, (
        out
    )


async def test_a_file_in_another_container_is_an_error(server: TestServer) -> None:
    code, out, _ = await _stream(FIXTURES / SENTENCE, "ogg", server)
    assert code == 1
    assert "error: invalid_audio: the audio could not be decoded: the stream is wav" in out, out
