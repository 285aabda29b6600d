"""The demo page end to end in headless Chromium, under the server's own CSP.

The main test feeds a WAV file as the microphone (Chromium's fake capture device plays it in a loop through
getUserMedia), so the page runs its real path: AudioWorklet -> PCM16 at 16 kHz -> ``/web/streamer-client.js``
-> ``POST /v1/demo/session`` -> the WebSocket -> the real tiny.en model. It waits for the finals of both
utterances, checks that a provisional partial was shown, stops, saves screenshots under ``test-artifacts/``
and fails on any uncaught page error or console error. Two cheaper tests (a fake ASR engine) cover what a
user sees when something goes wrong: a denied microphone, a refused session, and a dropped connection.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeAsr
from playwright.async_api import Browser, Page, async_playwright
from support import base_url, in_ci, load_transcripts, make_settings, read_pcm16, silence

from streamer.edge.handshake import REGISTRY
from streamer.protocol import CloseCode

pytestmark = pytest.mark.slow

ServerFactory = Callable[..., Awaitable[TestServer]]

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "demo.png"  # after Stop: the finals
LIVE_SCREENSHOT = ARTIFACTS / "demo-live.png"  # while a partial is on screen
UTTERANCES = ["en_utt1.wav", "en_utt2.wav"]
# Content words of the fixtures' transcripts. Chromium's noise suppression and echo cancellation (on, as
# for a real microphone) sometimes blur a word ("park" -> "power", "school" -> "cool"): these are robust.
EXPECTED_WORDS = ["children", "football", "window", "fresh", "air"]
FINALS_TIMEOUT_S = 60.0
STEP_TIMEOUT_MS = 30_000


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install chromium)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_microphone_wav(path: Path) -> None:
    """The utterances with ~1 s of silence before, between and after: what the fake microphone plays."""
    parts: list[np.ndarray] = [silence(1.0)]
    for name in UTTERANCES:
        parts += [read_pcm16(name), silence(1.2)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(parts).astype("<i2").tobytes())


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@dataclass
class PageLog:
    """What a page reported that a user would never see: uncaught errors, console errors, its sockets."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    ws_urls: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        page.on("websocket", lambda ws: self.ws_urls.append(ws.url))
        return page


@asynccontextmanager
async def chromium(mic: Path | None = None, *, grant_microphone: bool = True) -> AsyncIterator[Browser]:
    """Headless Chromium with a fake microphone: ``mic`` (a WAV, looped) or Chromium's beep."""
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
    ]
    if grant_microphone:
        args.append("--use-fake-ui-for-media-stream")  # answers the permission prompt with "allow"
    if mic is not None:
        args.append(f"--use-file-for-fake-audio-capture={mic}")
    executable = chromium_path()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def open_demo(browser: Browser, url: str, log: PageLog) -> Page:
    page = log.watch(await browser.new_page(viewport={"width": 1100, "height": 820}))
    response = await page.goto(f"{url}/", wait_until="load")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in (await response.all_headers()).get("content-security-policy", "")
    # the language list comes from GET /v1/models; Start is enabled once it has loaded
    await page.wait_for_selector("#language option[value='en']", state="attached", timeout=STEP_TIMEOUT_MS)
    await page.wait_for_selector("#start:enabled", timeout=STEP_TIMEOUT_MS)
    return page


async def test_demo_page_transcribes_the_microphone(make_server: ServerFactory, tmp_path: Path) -> None:
    transcripts = load_transcripts()
    for word in EXPECTED_WORDS:  # the expectations come from the fixtures, not from the model's output
        assert any(word in words(transcripts[u]["text"]) for u in UTTERANCES), word
    mic = tmp_path / "microphone.wav"
    write_microphone_wav(mic)
    server = await make_server(make_settings(demo=True))
    url = base_url(server)
    log = PageLog()

    async with chromium(mic) as browser:
        page = await open_demo(browser, url, log)
        await page.select_option("#language", "en")
        assert await page.is_hidden("#targets-field"), "no MT model: the translation targets are hidden"
        await page.click("#start")

        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        finals, partial_style = await _wait_for_finals(page, set(EXPECTED_WORDS), FINALS_TIMEOUT_S)
        partials = int(await page.get_attribute("#partial", "data-count") or 0)

        await page.click("#stop")
        await page.wait_for_selector("#status[data-state='closed']", timeout=STEP_TIMEOUT_MS)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

        error_text = (await page.text_content("#error")) or ""
        error_hidden = await page.is_hidden("#error")
        times = await page.locator("#finals .final .final-time").all_text_contents()

    assert len(finals) >= len(UTTERANCES), finals
    assert partials > 0, "no provisional text was shown before the finals"
    assert partial_style == "italic", f"a partial must look provisional, got font-style {partial_style}"
    assert error_hidden, f"the page shows an error: {error_text}"
    assert all(re.fullmatch(r"\d\d:\d\d\.\d–\d\d:\d\d\.\d", t) for t in times), times
    ws_base = url.replace("http", "ws", 1) + "/v1/stream"
    assert log.ws_urls and all(u.startswith(ws_base) for u in log.ws_urls), log.ws_urls
    assert all("token=" not in u for u in log.ws_urls), "the token travels in the subprotocol, not the URL"
    assert not log.page_errors, log.page_errors
    assert not log.console_errors, log.console_errors


async def test_demo_page_explains_a_denied_microphone_and_a_refused_session(
    make_server: ServerFactory,
) -> None:
    demo_off = await make_server(make_settings(demo=False), asr_engine=FakeAsr())
    log = PageLog()

    async with chromium(grant_microphone=False) as browser:
        page = await open_demo(browser, base_url(demo_off), log)  # a fresh profile: permission is denied
        await page.click("#start")
        await page.wait_for_selector("#status[data-state='error']", timeout=STEP_TIMEOUT_MS)
        assert "Microphone access was denied" in (await page.text_content("#error") or "")
        assert await page.is_enabled("#start") and await page.is_disabled("#stop")

    async with chromium() as browser:
        page = await open_demo(browser, base_url(demo_off), log)
        await page.click("#start")
        await page.wait_for_selector("#status[data-state='error']", timeout=STEP_TIMEOUT_MS)
        message = await page.text_content("#error") or ""
        assert "Session refused (403)" in message and "demo mode is off" in message, message
        assert await page.is_enabled("#start")

    assert not log.page_errors, log.page_errors
    # the only console error is Chromium's own line about the refused request
    assert all("403" in m for m in log.console_errors), log.console_errors


async def test_demo_page_reconnects_after_a_drop_but_not_after_a_policy_close(
    make_server: ServerFactory,
) -> None:
    server = await make_server(make_settings(demo=True), asr_engine=FakeAsr())
    services = server.app[REGISTRY]
    log = PageLog()

    async def drop(code: CloseCode) -> None:
        (connection,) = services.connections.values()
        await connection.ws.close(code=code)

    async with chromium() as browser:
        page = await open_demo(browser, base_url(server), log)
        await page.click("#start")
        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)

        await drop(CloseCode.INTERNAL_ERROR)  # unexpected: the client starts a new session by itself
        await page.wait_for_selector("#status[data-state='reconnecting']", timeout=STEP_TIMEOUT_MS)
        await page.wait_for_selector("#status[data-state='live']", timeout=STEP_TIMEOUT_MS)
        assert "Reconnected" in (await page.text_content("#notice") or "")
        assert await page.is_hidden("#error"), "a successful reconnect clears the error"
        assert len(log.ws_urls) == 2

        await drop(CloseCode.POLICY)  # retrying cannot help: the page says why and stops
        await page.wait_for_selector("#status[data-state='error']", timeout=STEP_TIMEOUT_MS)
        assert "policy" in (await page.text_content("#error") or "")
        await asyncio.sleep(1.5)  # longer than the first backoff: no new socket is opened
        assert len(log.ws_urls) == 2
        assert await page.get_attribute("#status", "data-state") == "error"

    assert not log.page_errors, log.page_errors
    assert not log.console_errors, log.console_errors


async def _wait_for_finals(page: Page, expected: set[str], timeout_s: float) -> tuple[list[str], str | None]:
    """Poll until every expected word is among the finals; fail with what was transcribed.

    Returns the final texts and the partial line's computed font-style, taken (with a screenshot) the first
    time a partial was on screen.
    """
    deadline = time.monotonic() + timeout_s
    texts: list[str] = []
    heard: set[str] = set()
    partial_style: str | None = None
    while time.monotonic() < deadline:
        if partial_style is None and await page.is_visible("#partial"):
            partial_style = await page.eval_on_selector("#partial", "el => getComputedStyle(el).fontStyle")
            await page.screenshot(path=str(LIVE_SCREENSHOT))
        texts = await page.locator("#finals .final .final-text").all_text_contents()
        heard = set().union(*(words(t) for t in texts)) if texts else set()
        if expected <= heard and partial_style is not None:
            return texts, partial_style
        if await page.get_attribute("#status", "data-state") == "error":
            pytest.fail(f"the page went into its error state: {await page.text_content('#error')}")
        await asyncio.sleep(0.1)
    if expected <= heard:
        return texts, partial_style
    pytest.fail(f"finals did not contain {sorted(expected)} within {timeout_s:.0f}s; got {texts}")
