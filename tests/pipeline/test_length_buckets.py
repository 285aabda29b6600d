"""Jobs share a model call only with jobs of their own length bucket: none is padded to another's window."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable

import numpy as np
import pytest
from support import read_pcm16

from streamer.pipeline.asr import AsrEngine, AsrRequest, AsrResult, WhisperEngine
from streamer.pipeline.batcher import MicroBatcher

KEY = ("transcribe", "en", "default")


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the batcher never reached the expected state"
        await asyncio.sleep(0.002)


async def test_batches_group_jobs_by_length_bucket() -> None:
    gate = threading.Event()
    calls: list[tuple[Hashable, list[str]]] = []

    def run(key: Hashable, payloads: list[str]) -> list[str]:
        calls.append((key, payloads))
        assert gate.wait(5)
        return payloads

    async with MicroBatcher("asr", run, max_wait_s=0.0, bucket=len) as batcher:
        first = asyncio.create_task(batcher.submit_final("0", KEY, "hold"))
        await until(lambda: bool(calls))  # the first call holds the only worker while the others queue up
        rest = [
            asyncio.create_task(batcher.submit_final(str(i), KEY, p))
            for i, p in enumerate(["aa", "b", "cc", "d"])
        ]
        await until(lambda: batcher.depth[0] == 4)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert [sorted(p) for _, p in calls[1:]] == [["aa", "cc"], ["b", "d"]]
    assert all(key == KEY for key, _ in calls)  # run_batch gets the caller's key, not the bucket


def _clip(name: str, seconds: float | None = None) -> np.ndarray:
    audio = read_pcm16(name).astype(np.float32) / 32768.0
    return audio if seconds is None else audio[: int(seconds * 16000)]


@pytest.mark.slow
async def test_short_clips_batched_with_a_long_one_decode_as_alone(tiny_engine: AsrEngine) -> None:
    assert isinstance(tiny_engine, WhisperEngine)
    engine = tiny_engine
    short = [AsrRequest(_clip("en_utt1.wav", 2.5)), AsrRequest(_clip("en_utt2.wav", 3.0))]
    long = AsrRequest(np.concatenate([_clip("en_utt3.wav"), _clip("en_utt1.wav"), _clip("en_utt2.wav")]))
    alone = [engine.transcribe_batch([r])[0] for r in short]

    def run(key: Hashable, requests: list[AsrRequest]) -> list[AsrResult]:
        return engine.transcribe_batch(requests)

    async with MicroBatcher(
        "asr", run, max_wait_s=0.05, bucket=engine.window, prepare=engine.prepare
    ) as batcher:
        together = await asyncio.gather(
            *(batcher.submit_final(str(i), KEY, r) for i, r in enumerate([*short, long]))
        )
    assert engine.window(long) > engine.window(short[0])
    for got, want in zip(together[:2], alone, strict=True):
        assert got.text == want.text and got.text
        assert got.window_s == want.window_s
