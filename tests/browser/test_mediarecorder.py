"""The demo page without AudioWorklet, in headless Chromium: it captures with MediaRecorder and streams its
WebM/Opus chunks as a container session (issue 19).

``window.AudioWorkletNode`` is deleted before the page's scripts run, as in a browser that lacks it; the
fake microphone plays the fixtures' sentences (``--use-file-for-fake-audio-capture``). The page must say it
captures with MediaRecorder, open a session with ``encoding: "webm"``, send binary chunks of the
container (its first one starts with the EBML magic bytes), and show the sentences' words as finals from
the real tiny.en model, with no error.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from playwright.async_api import Page, Request, WebSocket
from support import load_transcripts, make_settings
from test_demo_browser import (
    EXPECTED_WORDS,
    STEP_TIMEOUT_MS,
    UTTERANCES,
    PageLog,
    ServerFactory,
    base_url,
    chromium,
    words,
    write_microphone_wav,
)

from streamer.edge.handshake import REGISTRY
from streamer.protocol import CloseCode

pytestmark = pytest.mark.slow

FINALS_TIMEOUT_S = 60.0
NO_WORKLET = "delete window.AudioWorkletNode;"
EBML = bytes.fromhex("1a45dfa3")


async def test_without_audioworklet_the_demo_streams_mediarecorder_webm(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    transcripts = load_transcripts()
    for word in EXPECTED_WORDS:
        assert any(word in words(transcripts[u]["text"]) for u in UTTERANCES), word
    mic = tmp_path / "microphone.wav"
    write_microphone_wav(mic)
    server: TestServer = await make_server(make_settings(demo=True))
    log = PageLog()
    first_frames: list[bytes] = []  # the first bytes of each binary message the page sent
    session_bodies: list[str] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: _sent(payload, first_frames))

    def request(r: Request) -> None:
        if r.url.endswith("/v1/demo/session"):
            session_bodies.append(r.post_data or "")

    async with chromium(mic) as browser:
        context = await browser.new_context(viewport={"width": 1100, "height": 820})
        await context.add_init_script(NO_WORKLET)
        page = await context.new_page()
        page.on("websocket", watch)
        page.on("request", request)
        page = await open_demo_in(page, base_url(server), log)
        assert await page.get_attribute("#capture", "data-kind") == "recorder"
        assert "audio/webm;codecs=opus" in (await page.text_content("#capture-detail") or "")
        await page.click("#start")
        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)
        texts = await _wait_for_words(page, set(EXPECTED_WORDS), FINALS_TIMEOUT_S)
        await page.click("#stop")
        await page.wait_for_selector("#status[data-state='closed']", timeout=STEP_TIMEOUT_MS)
        error_hidden = await page.is_hidden("#error")
        error_text = await page.text_content("#error")

    assert [json.loads(body)["encoding"] for body in session_bodies] == ["webm"], session_bodies
    assert first_frames and first_frames[0].startswith(EBML), first_frames[:1]
    assert error_hidden, error_text
    assert len(texts) >= len(UTTERANCES), texts
    assert not log.page_errors, log.page_errors
    assert not log.console_errors, log.console_errors


def _sent(payload: str | bytes, frames: list[bytes]) -> None:
    if isinstance(payload, bytes):
        frames.append(payload[:16])


async def open_demo_in(page: Page, url: str, log: PageLog) -> Page:
    """``open_demo`` for a page made in a context (its init script deletes the worklet)."""
    log.watch(page)
    response = await page.goto(f"{url}/", wait_until="load")
    assert response is not None and response.status == 200
    await page.wait_for_selector("#start:enabled", timeout=STEP_TIMEOUT_MS)
    return page


async def _wait_for_words(page: Page, expected: set[str], timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    texts: list[str] = []
    while time.monotonic() < deadline:
        texts = await page.locator("#finals .final .final-text").all_text_contents()
        heard = set().union(*(words(t) for t in texts)) if texts else set()
        if expected <= heard:
            return texts
        if await page.get_attribute("#status", "data-state") == "error":
            pytest.fail(f"the page went into its error state: {await page.text_content('#error')}")
        await page.wait_for_timeout(100)
    pytest.fail(f"finals did not contain {sorted(expected)} within {timeout_s:.0f}s; got {texts}")


async def test_after_a_reconnect_the_recorder_starts_a_new_webm_stream(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """A dropped connection (1011): the client starts a new session and the page a new recorder, whose
    first chunk is a WebM header again, and the server decodes the new stream (a fake model: the audio
    path is what is tested)."""
    mic = tmp_path / "microphone.wav"
    write_microphone_wav(mic)
    server = await make_server(make_settings(demo=True), asr_engine=FakeAsr())
    registry = server.app[REGISTRY]
    log = PageLog()
    sockets: list[list[bytes]] = []  # per socket, the first bytes of each binary message

    def watch(ws: WebSocket) -> None:
        frames: list[bytes] = []
        sockets.append(frames)
        ws.on("framesent", lambda payload: _sent(payload, frames))

    async def decoded_ms(at_least: int) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            live = list(registry.connections.values())
            if len(live) == 1 and live[0].session.audio_ms >= at_least:
                return
            await asyncio.sleep(0.05)
        pytest.fail(
            f"no {at_least} ms of decoded audio on one connection; error: {await page.text_content('#error')}"
        )

    async with chromium(mic) as browser:
        context = await browser.new_context()
        await context.add_init_script(NO_WORKLET)
        page = await context.new_page()
        page.on("websocket", watch)
        page = await open_demo_in(page, base_url(server), log)
        await page.click("#start")
        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)
        await decoded_ms(1000)
        (connection,) = registry.connections.values()
        await connection.ws.close(code=CloseCode.INTERNAL_ERROR)
        await page.wait_for_selector("#status[data-state='reconnecting']", timeout=STEP_TIMEOUT_MS)
        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)
        await decoded_ms(1000)  # the new session decodes the new recorder's stream
        assert await page.is_hidden("#error"), await page.text_content("#error")
        await page.click("#stop")
        await page.wait_for_selector("#status[data-state='closed']", timeout=STEP_TIMEOUT_MS)

    assert len(sockets) == 2 and all(frames and frames[0].startswith(EBML) for frames in sockets), sockets
    assert not log.page_errors, log.page_errors
    assert not log.console_errors, log.console_errors
