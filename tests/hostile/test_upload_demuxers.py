"""Over HTTP: an upload that is an FFmpeg script is refused with the one generic 400 and never read (issue
23 item 3), and no refused upload's answer names an exception type (a prober learns nothing of why)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr

from streamer.pipeline.containers import UNDECODABLE

from .conftest import AUTH
from .test_upload_flood import one_hertz_wav

# names of exception types (Python's, PyAV's, FFmpeg's), tracebacks, module paths
LEAKS = re.compile(r"[A-Z][A-Za-z]*(Error|Exception)|Traceback|\bav\.|errno|\.py\b")

FFCONCAT = b"ffconcat version 1.0\nfile 'tests/fixtures/en_utt1.wav'\n"
REFUSED = {
    "ffconcat": FFCONCAT,
    "ffconcat_after_a_wav_header": b"RIFF\x24\x00\x00\x00WAVE" + FFCONCAT,
    "truncated_wav": b"RIFF\x00\x00\x00\x00WAVEfmt ",
    "garbage": bytes(range(256)) * 4,
    "empty": b"",
    "one_hertz": one_hertz_wav(),
}


async def _post(
    http: aiohttp.ClientSession, server: TestServer, body: bytes, stream: bool = False
) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    if stream:
        form.add_field("stream", "true")
    form.add_field("file", io.BytesIO(body), filename="speech.wav")
    async with http.post(server.make_url("/v1/audio/transcriptions"), data=form, headers=AUTH) as r:
        return r.status, await r.text()


async def test_an_ffconcat_body_is_refused_and_nothing_is_transcribed(make_server: Any) -> None:
    engine = FakeAsr(text="this must not be heard")
    server: TestServer = await make_server(asr_engine=engine)  # real Silero: the fixture is speech
    async with aiohttp.ClientSession() as http:
        status, text = await _post(http, server, FFCONCAT)
    assert status == 400, text
    error = json.loads(text)["error"]
    assert error["code"] == "invalid_audio"
    assert error["message"].startswith(UNDECODABLE)
    assert "en_utt1" not in text
    assert engine.batches == []  # the model never ran: nothing was read from the server's disk


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
async def test_refused_uploads_never_name_an_exception(make_server: Any, body: bytes, stream: bool) -> None:
    server: TestServer = await make_server(asr_engine=FakeAsr())
    async with aiohttp.ClientSession() as http:
        status, text = await _post(http, server, body, stream)
    # streamed or not, a file that does not open is refused before the first event
    assert status == 400, text
    assert json.loads(text)["error"]["code"] == "invalid_audio"
    assert not LEAKS.search(text), text
