"""Every option of the vendors' current reference, read from the official SDKs' own request types, is
either honoured (a test here or beside it exercises it) or refused in the vendor's error shape before
audio flows; never ignored. An option a new SDK adds fails here until it is classified."""

from __future__ import annotations

import inspect
import json
import re
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from support import API_KEY, to_bytes

from streamer.adapters import deepgram_options

from . import test_deepgram
from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deepgram-sdk imports websockets' legacy client
    from deepgram.core.api_error import ApiError
    from deepgram.listen.v1.raw_client import AsyncRawV1Client

ServerFactory = Callable[..., Awaitable[TestServer]]
DOCS = Path(__file__).resolve().parents[2] / "docs"
NOT_OPTIONS = {"self", "authorization", "request_options"}  # connect's own arguments, not the query's
DEEPGRAM_OPTIONS = sorted(set(inspect.signature(AsyncRawV1Client.connect).parameters) - NOT_OPTIONS)
AUDIO = {"model": "nova-3", "encoding": "linear16", "sample_rate": 16000}

# each supported option and the test that exercises it
DEEPGRAM_HONOURED: dict[str, Callable[..., Any]] = {
    "encoding": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "sample_rate": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "channels": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "model": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "language": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "interim_results": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "punctuate": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "vad_events": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "utterance_end_ms": test_deepgram.test_the_sdk_transcribes_speech_with_word_times,
    "endpointing": test_deepgram.test_without_endpointing_finalize_ends_the_utterance,
}


def _doc_table(doc: str) -> dict[str, str]:
    """``option -> supported|refused`` from a docs table's rows (a row may name several options)."""
    out: dict[str, str] = {}
    for row in re.finditer(r"^\| ((?:`[^`]+`(?:, )?)+) \| (supported|refused)\b", doc, re.MULTILINE):
        for name in re.findall(r"`([^`]+)`", row.group(1)):
            out[name] = row.group(2)
    return out


def test_every_deepgram_option_is_supported_or_refused() -> None:
    supported, refused = deepgram_options.SUPPORTED, deepgram_options.REFUSED
    assert not supported & refused
    assert set(DEEPGRAM_OPTIONS) == supported | refused, "classify the SDK's new options"
    documented = _doc_table((DOCS / "api-deepgram.md").read_text())
    assert {o: documented.get(o) for o in DEEPGRAM_OPTIONS} == {
        o: "supported" if o in supported else "refused" for o in DEEPGRAM_OPTIONS
    }


def test_every_supported_deepgram_option_is_exercised() -> None:
    honoured = {**DEEPGRAM_HONOURED, "smart_format": test_smart_format_keeps_whispers_punctuation}
    untested = set(deepgram_options.SUPPORTED) - set(honoured)
    assert not untested, f"no test exercises {sorted(untested)}"
    for option, test in honoured.items():
        assert re.search(rf"\b{option}\b", inspect.getsource(test)), (option, test.__name__)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
@pytest.mark.parametrize("option", sorted(deepgram_options.REFUSED))
async def test_a_refused_deepgram_option_is_a_400(make_server: ServerFactory, option: str) -> None:
    server = await make_server(asr_engine=FakeAsr())
    async with test_deepgram._client(server, api_key=API_KEY) as client:
        with pytest.raises(ApiError) as refused:
            async with client.listen.v1.connect(**AUDIO, **{option: "true"}):  # type: ignore[arg-type]
                pass
    assert refused.value.status_code == 400
    headers = {"Authorization": f"Token {API_KEY}", "Upgrade": "websocket", "Connection": "Upgrade"}
    headers |= {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    query = "model=nova-3&encoding=linear16&sample_rate=16000&" + f"{option}=true"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{http_base(server)}/v1/listen?{query}", headers=headers) as r,
    ):
        body = await r.json()
    assert r.status == 400 and body["err_code"] == "Bad Request"
    assert (
        r.headers["dg-error"]
        == body["err_msg"]
        == f"{option} is not supported by this server (see docs/api-deepgram.md)"
    )


@pytest.mark.parametrize("smart_format", [True, False])
async def test_smart_format_keeps_whispers_punctuation(
    make_server: ServerFactory, sentence: Sentence, smart_format: bool
) -> None:
    server = await make_server(asr_engine=FakeAsr(text="Hello, world."))
    query = f"model=nova-3&encoding=linear16&sample_rate=16000&smart_format={str(smart_format).lower()}"
    finals: list[str] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{ws_base(server)}/v1/listen?{query}", protocols=("token", API_KEY)) as ws,
    ):
        for i in range(0, sentence.samples.size, 16000):
            await ws.send_bytes(to_bytes(sentence.samples[i : i + 16000]))
        await ws.send_str('{"type": "CloseStream"}')
        async for message in ws:
            event = json.loads(message.data)
            if (
                event["type"] == "Results"
                and event["is_final"]
                and event["channel"]["alternatives"][0]["transcript"]
            ):
                finals.append(event["channel"]["alternatives"][0]["transcript"])
    assert finals == (["Hello, world."] if smart_format else ["hello world"])
