"""What a flood of tiny frames costs the server, to set the message-rate limit from a measurement.

``python -m streamer_bench.flood [--messages N] [--bytes B]``: ``streamer serve`` in a child process with
the message-rate limit off; one client sends ``N`` binary frames of ``B`` bytes (one 16-bit sample by
default) as fast as it can and then a ping, so the server's CPU time between the first frame and the pong
is the cost of reading and pushing those frames through the real reader path (socket guards, pacing,
quota, decoding, resampling, VAD). Beside it a second session streams real-time audio in 20 ms frames and
pings every 20 ms: the ping's round trip with and without the flood is what the flood does to the other
sessions on the same event loop. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import psutil

from streamer.client import Stream, StreamerClient
from streamer_bench.server import BENCH_KEY, ServerProcess

FRAME_MS = 20


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _pong(stream: Stream, ping_id: str, timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            event = await stream.receive(timeout=timeout)
            if event is None:
                raise RuntimeError(f"the socket closed before pong {ping_id} (code {stream.close_code})")
            if event.get("type") == "pong" and event.get("id") == ping_id:
                return


class Bystander:
    """A real-time session (20 ms frames of silence) that measures ping round trips while it streams."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.rtts_ms: list[float] = []
        self._sent: dict[str, float] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            event = await self.stream.receive(timeout=60)
            if event is None:
                return
            sent = self._sent.pop(str(event.get("id")), None) if event.get("type") == "pong" else None
            if sent is not None:
                self.rtts_ms.append((time.perf_counter() - sent) * 1000)

    async def run(self, seconds: float) -> list[float]:
        """Stream ``seconds`` of real time; the round trips measured meanwhile."""
        self.rtts_ms = []
        frame = bytes(16000 * FRAME_MS // 1000 * 2)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            await self.stream.ws.send_bytes(frame)
            ping_id = f"b{n}"
            self._sent[ping_id] = time.perf_counter()
            await self.stream.send_json({"type": "ping", "id": ping_id})
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - time.monotonic()))
        await asyncio.sleep(0.2)  # the last pongs
        return list(self.rtts_ms)


def _summary(rtts: list[float]) -> dict[str, float]:
    ordered = sorted(rtts)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def _measure(url: str, server: psutil.Process, messages: int, size: int) -> dict[str, Any]:
    async with StreamerClient(url, api_key=BENCH_KEY) as client:
        bystander = Bystander(await client.connect({}))
        quiet = await bystander.run(2.0)
        flood = await client.connect({})
        frame = bytes(size)
        cpu0, t0 = _cpu_s(server), time.perf_counter()
        beside = asyncio.create_task(bystander.run(3600.0))

        async def send_all() -> None:
            for _ in range(messages):
                await flood.ws.send_bytes(frame)
            await flood.send_json({"type": "ping", "id": "end"})

        await asyncio.gather(send_all(), _pong(flood, "end"))
        wall, cpu = time.perf_counter() - t0, _cpu_s(server) - cpu0
        beside.cancel()
        flooded = list(bystander.rtts_ms)
    return {
        "messages": messages,
        "frame_bytes": size,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_message": round(cpu / messages * 1e6, 1),
        "messages_per_s": round(messages / wall),
        "bystander_ping_quiet": _summary(quiet),
        "bystander_ping_flooded": _summary(flooded),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--bytes", type=int, default=2)
    args = parser.parse_args()
    env = {
        "STREAMER_MAX_MESSAGES_PER_S": "1e9",
        "STREAMER_MESSAGE_BURST": "1e9",
        # frames bigger than a sample carry audio: the pacer must not stop the measurement either
        "STREAMER_MAX_REALTIME_FACTOR": "1e6",
        "STREAMER_REALTIME_BURST_S": "1e6",
    }
    with ServerProcess("on", "tiny.en", "cpu", env=env) as server:
        result = asyncio.run(_measure(server.url, server.process, args.messages, args.bytes))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
