"""The container image, built from the repository and run: it serves speech and drains on SIGTERM.

Built with deploy/docker/build-offline.sh (a debootstrap base and a host-side wheelhouse, both reused
between runs), so it needs neither Docker Hub nor the package index from inside the build. Skipped only
where Docker cannot run; in CI (CI=true) that is a failure.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from faults.streams import events_until_closed, next_event, of_type
from support import API_KEY, load_transcripts, read_pcm16, silence, skip_or_fail, to_bytes, wer

from streamer.client import Stream, StreamerClient

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TAG = "streamer:test"
BUILD_TIMEOUT_S = 1200  # cold: debootstrap, wheels, image; warm (cached base, wheels, layers): about a minute
DRAIN_TIMEOUT_S = 10


def _docker_runs() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    why = _docker_runs()
    if why is not None:
        skip_or_fail(why)
    base = subprocess.run(["docker", "image", "inspect", "streamer-base:bookworm"], capture_output=True)
    if base.returncode != 0 and shutil.which("debootstrap") is None:
        skip_or_fail("no streamer-base:bookworm image and no debootstrap to build one")
    started = time.monotonic()
    build = subprocess.run(
        [str(ROOT / "deploy" / "docker" / "build-offline.sh"), TAG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    output = (build.stdout + build.stderr)[-4000:]
    assert build.returncode == 0, f"image build failed:\n{output}"
    print(f"\nimage {TAG} built in {time.monotonic() - started:.0f}s")
    return TAG


async def _docker(*args: str, timeout: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace").strip()
    assert proc.returncode == 0, f"docker {' '.join(args)}: {text}"
    return text


@pytest.fixture
async def container(image: str) -> AsyncIterator[tuple[str, str]]:
    """The image running read-only, published on a loopback port: (container name, base URL)."""
    name = f"streamer-test-{secrets.token_hex(4)}"
    settings = {
        "STREAMER_API_KEYS": API_KEY,
        "STREAMER_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
        "STREAMER_MAX_REALTIME_FACTOR": "20",
        "STREAMER_REALTIME_BURST_S": "30",
    }
    env = [arg for k, v in settings.items() for arg in ("-e", f"{k}={v}")]
    await _docker(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::8080", *env, image
    )
    try:
        address = (await _docker("port", name, "8080/tcp")).splitlines()[0]
        yield name, f"http://{address}"
    finally:
        try:
            print(f"\n--- container log:\n{(await _docker('logs', name))[-3000:]}")
        finally:
            await _docker("rm", "-f", name)


async def _wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"{url}/readyz not ready after {timeout}s"
            await asyncio.sleep(0.5)


async def _send(stream: Stream, pcm: bytes) -> None:
    for i in range(0, len(pcm), 3200):
        await stream.ws.send_bytes(pcm[i : i + 3200])
        await asyncio.sleep(0.02)  # 5x real time


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
async def test_image_serves_speech_and_drains_on_sigterm(container: tuple[str, str]) -> None:
    name, url = container
    assert await _docker("inspect", "--format", "{{.Config.User}}", name) == "10001"  # not root
    await _wait_ready(url)
    texts = load_transcripts()
    async with StreamerClient(url, api_key=API_KEY) as client:
        stream = await client.connect({"language": "en"})
        async with stream:
            await _send(stream, to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt1.wav")))
            await _send(stream, to_bytes(silence(1.0)))
            first = await next_event(stream, "transcript.final", timeout=30)
            assert wer(texts["en_utt1.wav"]["text"], first["text"]) <= 0.2, first["text"]

            # a second sentence, still open (no silence after it) when the container is stopped
            await _send(stream, to_bytes(silence(0.3)) + to_bytes(read_pcm16("en_utt2.wav")))
            await next_event(stream, "speech.started", timeout=10)
            await _docker("kill", "--signal", "TERM", name)
            after = await events_until_closed(stream, timeout=DRAIN_TIMEOUT_S + 10)
            close_code = stream.close_code

    exit_code = await _docker("wait", name, timeout=DRAIN_TIMEOUT_S + 10)
    finals = of_type(after, "transcript.final")
    assert [f["seq"] for f in finals] == [2], after
    assert wer(texts["en_utt2.wav"]["text"], finals[0]["text"]) <= 0.2, finals[0]["text"]
    assert after[-1]["type"] == "session.closed" and after[-1]["reason"] == "server_shutdown", after
    assert close_code == 1001
    assert exit_code == "0"
