"""Progress on a terminal, silence elsewhere: the status line, and ``streamer stream`` against a server."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from typing import Any

import pytest
from fakes import FakeAsr
from support import API_KEY, FIXTURES, base_url, make_settings

from streamer import client_cli
from streamer.progress import CLEAR, StatusLine, bar
from streamer_bench import progress as bench_progress
from streamer_bench.script import Script


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar() -> None:
    assert bar(0, 10, width=10) == "[----------]   0%"
    assert bar(3.5, 10, width=10) == "[####------]  35%"
    assert bar(12, 10, width=10) == "[##########] 100%"
    assert bar(1, 0, width=4) == "[####] 100%"


def test_status_line_redraws_in_place_throttled_and_clears() -> None:
    out, now = Terminal(), [0.0]
    status = StatusLine(out, enabled=True, width=12, min_interval_s=0.1, clock=lambda: now[0])
    status.set("first")
    now[0] = 0.05
    status.set("second")  # too soon: kept, not drawn
    assert out.getvalue() == CLEAR + "first"
    status.print("a final line")  # printed above, the latest status drawn again under it
    assert out.getvalue() == CLEAR + "first" + CLEAR + "a final line\n" + CLEAR + "second"
    now[0] = 0.2
    status.set("a status longer than the terminal")
    assert out.getvalue().endswith(CLEAR + "a status lo")  # never wraps: one column spare
    status.close()
    assert out.getvalue().endswith(CLEAR)


def test_status_line_is_silent_when_disabled() -> None:
    out = Terminal()
    status = StatusLine(out, enabled=False)
    status.set("progress", force=True)
    status.print("a line")
    status.close()
    assert out.getvalue() == "a line\n"
    assert not StatusLine.for_terminal(io.StringIO()).enabled  # not a terminal
    assert not StatusLine.for_terminal(Terminal(), quiet=True).enabled  # --json


def _args(url: str, **overrides: Any) -> argparse.Namespace:
    base = {
        "file": str(FIXTURES / "en_utt1.wav"),
        "url": url,
        "api_key": API_KEY,
        "realtime": False,
        "language": "en",
        "task": "transcribe",
        "translate_to": [],
        "json": False,
        "encoding": "pcm16",
    }
    return argparse.Namespace(**{**base, **overrides})


@pytest.mark.parametrize("where", ["terminal", "pipe", "json"])
async def test_stream_shows_progress_only_on_a_terminal(
    make_server: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    server = await make_server(make_settings(), asr_engine=FakeAsr(text="hello there"))
    out = Terminal() if where != "pipe" else io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert await client_cli._run(_args(base_url(server), json=where == "json")) == 0
    text = out.getvalue()
    if where == "json":
        events = [json.loads(line) for line in text.splitlines()]
        assert "transcript.final" in [e["type"] for e in events]
        return
    finals = [line for line in text.replace(CLEAR, "\n").splitlines() if line.endswith("] hello there")]
    assert len(finals) == 1, text
    if where == "pipe":
        assert CLEAR not in text and "%" not in text
    else:
        assert "100%    3.3/3.3 s" in text  # the whole file (3.27 s) was sent
        assert text.endswith(CLEAR)  # and the status line is gone at the end


def _script(seconds: float, rate: int = 16000) -> Script:
    return Script(bytes(int(seconds * rate) * 2), rate, ())


async def test_bench_progress_shows_the_run_and_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_progress, "TICK_S", 0.01)
    out = Terminal()
    progress = bench_progress.RunProgress(StatusLine(out, enabled=True, min_interval_s=0.0))
    expected = bench_progress.expected_seconds([_script(2.0), _script(3.0, 8000)], [0.0, 1.5])
    assert expected == 4.5  # the latest start plus the longest script
    async with progress.running("batching on, sync starts, 2 sessions", expected):
        await asyncio.sleep(0.05)
    text = out.getvalue()
    assert f"{CLEAR}run 1 [" in text and "/4 s  batching on, sync starts, 2 sessio" in text  # 80 columns
    assert text.endswith(CLEAR)  # gone before the bench prints its row

    quiet = io.StringIO()  # stderr piped to a file: nothing at all
    async with bench_progress.RunProgress.on_terminal(quiet).running("x", 1.0):
        await asyncio.sleep(0.02)
    assert quiet.getvalue() == ""
