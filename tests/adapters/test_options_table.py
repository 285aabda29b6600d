"""Every option of the vendors' current reference, read from the official SDKs' own request types, is
either honoured (a test here or beside it exercises it) or refused in the vendor's error shape before
audio flows; never ignored. An option a new SDK adds fails here until it is classified."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import re
import time
import typing
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import openai
import pydantic
import pytest
from aiohttp.test_utils import TestServer
from diarize import test_deepgram_live
from fakes import FakeAsr
from language import test_deepgram_multi, test_openai_languages
from openai.types.audio.transcription_create_params import TranscriptionCreateParamsBase
from openai.types.beta.realtime import transcription_session_update as BetaUpdate
from openai.types.realtime.realtime_transcription_session_create_request import (
    RealtimeTranscriptionSessionCreateRequest,
)
from support import API_KEY, resample_pcm, to_bytes

from streamer.adapters.deepgram import query as deepgram_query
from streamer.adapters.openai import options as openai_options

from . import (
    test_deepgram,
    test_deepgram_codecs,
    test_deepgram_formatting,
    test_deepgram_keyterms,
    test_openai_realtime,
    test_semantic_vad,
    test_transcription_options,
    test_transcriptions,
)
from .conftest import Sentence, http_base, ws_base

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # deepgram-sdk imports websockets' legacy client
    from deepgram.core.api_error import ApiError
    from deepgram.listen.v1.media.raw_client import AsyncRawMediaClient
    from deepgram.listen.v1.raw_client import AsyncRawV1Client

ServerFactory = Callable[..., Awaitable[TestServer]]
DOCS = Path(__file__).resolve().parents[2] / "docs"
NOT_OPTIONS = {"self", "authorization", "request_options"}  # connect's own arguments, not the query's
DEEPGRAM_OPTIONS = sorted(set(inspect.signature(AsyncRawV1Client.connect).parameters) - NOT_OPTIONS)
# pre-recorded: transcribe_file's parameters (its body is ``request``)
DEEPGRAM_FILE_OPTIONS = sorted(
    set(inspect.signature(AsyncRawMediaClient.transcribe_file).parameters) - NOT_OPTIONS - {"request"}
)
AUDIO = {"model": "nova-3", "encoding": "linear16", "sample_rate": 16000}
OPENAI_AUTH = {"Authorization": f"Bearer {API_KEY}"}

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
    "multichannel": test_deepgram_codecs.test_stereo_multichannel_transcribes_each_channel,
    "diarize": test_deepgram_live.test_the_sdk_gets_speaker_labelled_words_on_a_live_two_speaker_stream,
    "language_hint": test_deepgram_multi.test_prerecorded_multi_detects_and_hints_restrict,
    "numerals": test_deepgram_formatting.test_live_numerals_and_redacted_numbers,
    "redact": test_deepgram_formatting.test_live_results_are_redacted_masked_and_smart_formatted,
    "profanity_filter": test_deepgram_formatting.test_live_results_are_redacted_masked_and_smart_formatted,
    "keyterm": test_deepgram_keyterms.test_prerecorded_keyterm_and_keywords_reach_the_model,
    "keywords": test_deepgram_keyterms.test_prerecorded_keyterm_and_keywords_reach_the_model,
}
DEEPGRAM_FILE_HONOURED: dict[str, Callable[..., Any]] = {
    "utterances": test_deepgram_formatting.test_prerecorded_results_and_utterances_are_formatted,
    "filler_words": test_deepgram_formatting.test_prerecorded_filler_words_true_is_refused,
}


def _doc_table(doc: str) -> dict[str, str]:
    """``option -> supported|refused`` from a docs table's rows (a row may name several options)."""
    out: dict[str, str] = {}
    for row in re.finditer(r"^\| ((?:`[^`]+`(?:, )?)+) \| (supported|refused)\b", doc, re.MULTILINE):
        for name in re.findall(r"`([^`]+)`", row.group(1)):
            out[name] = row.group(2)
    return out


def test_every_deepgram_option_is_supported_or_refused() -> None:
    supported, refused = deepgram_query.SUPPORTED, deepgram_query.REFUSED
    assert not supported & refused
    assert set(DEEPGRAM_OPTIONS) == supported | refused, "classify the SDK's new options"
    documented = _doc_table((DOCS / "api-deepgram.md").read_text())
    assert {o: documented.get(o) for o in DEEPGRAM_OPTIONS} == {
        o: "supported" if o in supported else "refused" for o in DEEPGRAM_OPTIONS
    }


def test_every_prerecorded_deepgram_option_is_supported_or_refused() -> None:
    supported = deepgram_query.SUPPORTED | deepgram_query.PRERECORDED
    refused = deepgram_query.REFUSED | deepgram_query.PRERECORDED_REFUSED
    assert not supported & refused
    assert set(DEEPGRAM_FILE_OPTIONS) <= supported | refused, "classify the SDK's new options"
    documented = _doc_table((DOCS / "api-deepgram.md").read_text())
    assert {o: documented.get(o) for o in DEEPGRAM_FILE_OPTIONS} == {
        o: "supported" if o in supported else "refused" for o in DEEPGRAM_FILE_OPTIONS
    }
    untested = set(deepgram_query.PRERECORDED) - set(DEEPGRAM_FILE_HONOURED)
    assert not untested, f"no test exercises {sorted(untested)}"
    for option, test in DEEPGRAM_FILE_HONOURED.items():
        assert re.search(rf"\b{option}\b", inspect.getsource(test)), (option, test.__name__)


@pytest.mark.parametrize("option", sorted(deepgram_query.PRERECORDED_REFUSED))
async def test_a_refused_prerecorded_option_is_a_400(make_server: ServerFactory, option: str) -> None:
    server = await make_server(asr_engine=FakeAsr())
    query = f"model=nova-3&{option}=true"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{http_base(server)}/v1/listen?{query}",
            data=bytes(3200),
            headers={"Authorization": f"Token {API_KEY}", "Content-Type": "audio/wav"},
        ) as r,
    ):
        body = await r.json()
    assert r.status == 400
    assert body["err_msg"] == f"{option} is not supported by this server (see docs/api-deepgram.md)"


def test_every_supported_deepgram_option_is_exercised() -> None:
    honoured = {**DEEPGRAM_HONOURED, "smart_format": test_smart_format_keeps_whispers_punctuation}
    untested = set(deepgram_query.SUPPORTED) - set(honoured)
    assert not untested, f"no test exercises {sorted(untested)}"
    for option, test in honoured.items():
        assert re.search(rf"\b{option}\b", inspect.getsource(test)), (option, test.__name__)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")
@pytest.mark.parametrize("option", sorted(deepgram_query.REFUSED))
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


# ---- OpenAI Realtime transcription sessions


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _sdk_paths(model: type[pydantic.BaseModel], prefix: str = "") -> set[str]:
    """Every field path of an SDK model, through its nested models (and every member of a union)."""
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        paths.add(prefix + name)
        for inner in _models_in(field.annotation):
            paths |= _sdk_paths(inner, f"{prefix}{name}.")
    return paths


GA_PATHS = sorted(_sdk_paths(RealtimeTranscriptionSessionCreateRequest))
BETA_PATHS = sorted(_sdk_paths(BetaUpdate.Session))
# a value of each refused field's type (the wire models check types before the table refuses)
SAMPLES: dict[str, Any] = {
    "include": ["item.input_audio_transcription.logprobs"],
    "noise_reduction": {"type": "near_field"},
    "input_audio_noise_reduction": {"type": "near_field"},
    "prompt": "expect technical words",
    "delay": "low",
    "keywords": ["streamer"],
    "languages": ["en"],
    "create_response": True,
    "interrupt_response": True,
    "idle_timeout_ms": 5000,
    "eagerness": "low",
}


def _refused_roots(table: dict[str, openai_options.Status], paths: list[str]) -> list[str]:
    """The refused paths whose parent is not refused too (setting the parent already refuses them)."""
    out = []
    for path in paths:
        parent = path.rpartition(".")[0]
        if openai_options.status(table, path) == "refused" and (
            not parent or openai_options.status(table, parent) != "refused"
        ):
            out.append(path)
    return out


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    here = out
    *parents, leaf = path.split(".")
    for part in parents:
        here = here.setdefault(part, {})
    here[leaf] = value
    return out


def _realtime_doc() -> dict[str, str]:
    doc = (DOCS / "api-openai.md").read_text()
    section = doc[doc.index("### Session options") : doc.index("### Client events")]
    return _doc_table(section)


@pytest.mark.parametrize(("table", "paths"), [("GA", GA_PATHS), ("BETA", BETA_PATHS)])
def test_every_realtime_session_field_is_supported_or_refused(table: str, paths: list[str]) -> None:
    entries = getattr(openai_options, table)
    unclassified = [p for p in paths if openai_options.status(entries, p) is None]
    assert not unclassified, (
        f"classify the SDK's new fields in streamer.adapters.openai.options.{table}: {unclassified}"
    )
    documented = _realtime_doc()
    for path in paths:
        parent = path.rpartition(".")[0]
        if parent and openai_options.status(entries, parent) == "refused":
            continue  # refused with its parent, whose row says so
        assert documented.get(path) == openai_options.status(entries, path), path


REFUSED_FIELDS = [("GA", p) for p in _refused_roots(openai_options.GA, GA_PATHS)] + [
    ("BETA", p) for p in _refused_roots(openai_options.BETA, BETA_PATHS)
]


@pytest.mark.parametrize(("shape", "path"), REFUSED_FIELDS)
async def test_a_refused_realtime_field_is_an_error_naming_it(
    make_server: ServerFactory, shape: str, path: str
) -> None:
    server = await make_server(asr_engine=FakeAsr())
    value = SAMPLES[path.rpartition(".")[2]]
    if shape == "GA":
        session = {"type": "transcription", **_nested(path, value)}
        event = {"type": "session.update", "session": session, "event_id": "opt"}
    else:
        event = {"type": "transcription_session.update", "session": _nested(path, value), "event_id": "opt"}
    url = f"{ws_base(server)}/v1/realtime?intent=transcription"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=OPENAI_AUTH) as ws:
        await ws.send_str(json.dumps(event))
        async with asyncio.timeout(10):
            while (reply := json.loads((await ws.receive()).data))["type"] != "error":
                assert not reply["type"].endswith("updated"), reply
    error = reply["error"]
    assert (error["code"], error["param"], error["event_id"]) == (
        "unsupported_parameter",
        f"session.{path}",
        "opt",
    )


async def _vad_session(
    server: TestServer, sentence: Sentence, turn_detection: dict[str, Any]
) -> list[dict[str, Any]]:
    """The sentence (then a commit) under ``turn_detection``: every event up to the commit's transcript."""
    audio = resample_pcm(sentence.samples, 24000)
    session = {"type": "transcription", "audio": {"input": {"turn_detection": turn_detection}}}
    url = f"{ws_base(server)}/v1/realtime?intent=transcription"
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=OPENAI_AUTH) as ws:
        await ws.send_str(json.dumps({"type": "session.update", "session": session}))
        for i in range(0, audio.size, 2400):
            chunk = base64.b64encode(to_bytes(audio[i : i + 2400])).decode()
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        async with asyncio.timeout(20):
            while True:
                seen.append(json.loads((await ws.receive()).data))
                if seen[-1]["type"] == "conversation.item.input_audio_transcription.completed":
                    return seen


async def test_turn_detection_threshold_and_prefix_padding_are_honoured(
    make_server: ServerFactory, sentence: Sentence
) -> None:
    server = await make_server(asr_engine=FakeAsr(text="Hello."))
    never_ends = {"type": "server_vad", "silence_duration_ms": 10_000}  # only the commit ends the speech
    deaf = await _vad_session(server, sentence, {**never_ends, "threshold": 1.0})
    assert "input_audio_buffer.speech_started" not in [e["type"] for e in deaf]
    assert deaf[-1]["transcript"] == ""  # nothing was speech: the commit is an empty item
    starts = {}
    for padding in (0, 400):
        events = await _vad_session(server, sentence, {**never_ends, "prefix_padding_ms": padding})
        started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
        starts[padding] = started["audio_start_ms"]
        assert events[-1]["transcript"] == "Hello."
    assert 250 <= starts[0] - starts[400] <= 450, starts


async def test_beta_client_secret_and_modalities(make_server: ServerFactory) -> None:
    server = await make_server(asr_engine=FakeAsr())
    body = {"client_secret": {"expires_at": {"anchor": "created_at", "seconds": 60}}, "modalities": ["text"]}
    url = f"{http_base(server)}/v1/realtime/transcription_sessions"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers=OPENAI_AUTH) as r:
            created = await r.json()
        async with http.post(url, json={"modalities": ["audio", "text"]}, headers=OPENAI_AUTH) as r:
            refused = await r.json()
            assert r.status == 400
    lifetime = created["client_secret"]["expires_at"] - time.time()
    assert 50 <= lifetime <= 61 and created["modalities"] == ["text"]
    assert refused["error"]["param"] == "session.modalities"


OPENAI_HONOURED: dict[str, Callable[..., Any]] = {
    name: test_openai_realtime.test_server_vad_session_transcribes_with_append_only_deltas
    for name in ("type", "audio", "input", "format", "rate", "transcription", "model", "language")
} | {
    "turn_detection": test_openai_realtime.test_server_vad_session_transcribes_with_append_only_deltas,
    "silence_duration_ms": test_openai_realtime.test_server_vad_session_transcribes_with_append_only_deltas,
    "input_audio_format": test_openai_realtime.test_the_beta_transcription_session_shape,
    "input_audio_transcription": test_openai_realtime.test_the_beta_transcription_session_shape,
    "threshold": test_turn_detection_threshold_and_prefix_padding_are_honoured,
    "prefix_padding_ms": test_turn_detection_threshold_and_prefix_padding_are_honoured,
    "languages": test_openai_languages.test_each_item_reports_its_detected_language,
    "eagerness": test_semantic_vad.test_eagerness_sets_the_silence_that_ends_a_turn,
    **dict.fromkeys(
        ("prompt", "keywords", "include"),
        test_transcription_options.test_realtime_prompt_keywords_and_logprobs,
    ),
    **dict.fromkeys(
        ("client_secret", "expires_at", "anchor", "seconds", "modalities"),
        test_beta_client_secret_and_modalities,
    ),
}


@pytest.mark.parametrize(("table", "paths"), [("GA", GA_PATHS), ("BETA", BETA_PATHS)])
def test_every_supported_realtime_field_is_exercised(table: str, paths: list[str]) -> None:
    entries = getattr(openai_options, table)
    for path in paths:
        if openai_options.status(entries, path) != "supported":
            continue
        leaf = path.rpartition(".")[2]
        test = OPENAI_HONOURED.get(leaf)
        assert test is not None, f"no test exercises {path}"
        assert re.search(rf"\b{leaf}\b", inspect.getsource(test)), (path, test.__name__)


# ---- OpenAI audio transcriptions (the form's fields; transcriptions.py is not this work's to change)

TRANSCRIPTION_FIELDS = sorted(TranscriptionCreateParamsBase.__annotations__)
TRANSCRIPTION_HONOURED: dict[str, Callable[..., Any]] = dict.fromkeys(
    ("file", "model", "language", "response_format", "timestamp_granularities"),
    test_transcriptions.test_verbose_json_has_segments_and_words_inside_the_audio,
) | {
    "languages": test_openai_languages.test_an_upload_without_a_language_reports_the_detected_ones,
    "prompt": test_transcription_options.test_prompt_and_keywords_reach_the_model,
    "keywords": test_transcription_options.test_prompt_and_keywords_reach_the_model,
    "temperature": test_transcription_options.test_temperature_and_verbose_json_decode_numbers,
    "include": test_transcription_options.test_include_logprobs,
    "chunking_strategy": (
        test_transcription_options.test_chunking_strategy_auto_is_what_the_server_does_server_vad_is_refused
    ),
}
# a value of each field's type, as the SDK sends it
FORM_SAMPLES: dict[str, Any] = {
    "known_speaker_names": ["ada"],
    "known_speaker_references": ["data:audio/wav;base64,AAAA"],
}


def _transcription_doc() -> dict[str, str]:
    doc = (DOCS / "api-openai.md").read_text()
    return _doc_table(doc[doc.index("### Form fields") :])


def test_every_transcription_field_is_supported_or_refused() -> None:
    documented = _transcription_doc()
    for name in TRANSCRIPTION_FIELDS:
        expected = "supported" if name in TRANSCRIPTION_HONOURED else "refused"
        assert documented.get(name) == expected, name
        assert name in TRANSCRIPTION_HONOURED or name in FORM_SAMPLES, f"classify the SDK's new field {name}"
    for name, test in TRANSCRIPTION_HONOURED.items():
        assert re.search(rf"\b{name}\b", inspect.getsource(test)), (name, test.__name__)


@pytest.mark.parametrize("field", sorted(FORM_SAMPLES))
async def test_a_refused_transcription_field_is_a_400(make_server: ServerFactory, field: str) -> None:
    server = await make_server(asr_engine=FakeAsr())
    wav = test_transcriptions._wav(np.zeros(1600, dtype="<i2"))
    async with test_transcriptions._client(server) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(
                model="whisper-1",
                file=("speech.wav", wav, "audio/wav"),
                **{field: FORM_SAMPLES[field]},
            )
    assert refused.value.status_code == 400
    assert refused.value.body is not None and field in str(refused.value.body)
