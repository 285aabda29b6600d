"""``streamer bench``: N concurrent real-time clients against a real server process, batching on vs off.

For every mode the server runs as its own process (so its CPU and RSS are measured apart from the
clients); for every N, N sessions stream the bench's speech (``streamer_bench/data``) in real time with
pauses between utterances.
Reported per run: final latency (last audio chunk of an utterance sent -> its ``transcript.final``
received) p50/p95/max, time to first partial (speech start sent -> first partial), finals delivered vs
expected, WER, server CPU and peak RSS. Capacity = the largest N whose p95 stays within the bound with
every final delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamer.client import ClientError, Stream, StreamerClient, read_wav
from streamer_bench.wer import edits, words

# shipped with the package (``streamer[bench]``), so the bench runs from an installed wheel or the image
DATA = Path(__file__).resolve().parent / "data"
SPEECH = ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav")
BENCH_KEY = "bench-key-0123456789abcdef0123456789abcdef"
GAP_S = 1.5
CHUNK_MS = 100


@dataclass
class RunResult:
    mode: str
    sessions: int
    refused: int = 0
    finals: int = 0
    expected: int = 0
    latencies: list[float] = field(default_factory=list)
    first_partials: list[float] = field(default_factory=list)
    wer: float = 0.0
    cpu_percent: float = 0.0
    rss_mb: float = 0.0
    errors: list[str] = field(default_factory=list)
    rss_timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        lat, fp = d.pop("latencies"), d.pop("first_partials")
        d["lat_p50"] = _pct(lat, 50)
        d["lat_p95"] = _pct(lat, 95)
        d["lat_max"] = round(max(lat), 3) if lat else None
        d["first_partial_p50"] = _pct(fp, 50)
        d["errors"] = d["errors"][:3]
        if len(d["rss_timeline"]) <= 2:
            d.pop("rss_timeline")
        return d


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 3)


def load_speech(data: Path = DATA) -> list[tuple[bytes, str]]:
    """The utterances every session speaks, with their reference text: 16 kHz PCM16 and a transcript.

    The one place the bench reads audio, so its input can be switched (e.g. to the realistic corpus).
    """
    refs = json.loads((data / "transcripts.json").read_text())
    out = []
    for name in SPEECH:
        pcm, rate = read_wav(str(data / name))
        if rate != 16000:
            raise ValueError(f"{name}: the bench expects 16 kHz audio, not {rate} Hz")
        out.append((pcm, refs[name]["text"]))
    return out


async def _session(
    client: StreamerClient, speech: list[tuple[bytes, str]], n_utts: int, idx: int
) -> dict[str, Any]:
    await asyncio.sleep((idx % 20) * 0.05)  # stagger starts like real users
    try:
        stream = await client.connect({"language": "en"})
    except ClientError as e:
        return {"refused": True, "error": f"{e.status} {e.code}"}
    utts = [speech[(idx + k) % len(speech)] for k in range(n_utts)]
    spans: list[tuple[float, float, float, float]] = []  # (start_ms, end_ms, wall start, wall last chunk)
    async with stream:
        reader = asyncio.create_task(_read_all(stream))
        step = 16000 * 2 * CHUNK_MS // 1000
        t0 = time.monotonic()
        sent_ms = 0.0
        for pcm, _ in utts:
            for blob, is_speech in ((pcm, True), (b"\0\0" * int(16000 * GAP_S), False)):
                begin_ms, begin_wall = sent_ms, t0 + sent_ms / 1000
                for i in range(0, len(blob), step):
                    delay = t0 + sent_ms / 1000 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await stream.ws.send_bytes(blob[i : i + step])
                    sent_ms += len(blob[i : i + step]) / 32
                if is_speech:
                    spans.append((begin_ms, sent_ms, begin_wall, time.monotonic()))
        await stream.close_session()
        await asyncio.wait_for(reader, 60)
    return _score(stream, utts, spans)


async def _read_all(stream: Stream) -> None:
    async for _ in stream:
        pass


def _score(
    stream: Stream, utts: list[tuple[bytes, str]], spans: list[tuple[float, float, float, float]]
) -> dict[str, Any]:
    finals = [(t, e) for t, e in stream.events if e["type"] == "transcript.final"]
    partials = [t for t, e in stream.events if e["type"] == "transcript.partial"]
    lat, first = [], []
    for start_ms, end_ms, wall_start, wall_end in spans:
        best = None
        for t, e in finals:
            overlap = min(e["audio_end_ms"], end_ms) - max(e["audio_start_ms"], start_ms)
            if overlap > 0 and (best is None or overlap > best[0]):
                best = (overlap, t)
        if best:
            lat.append(best[1] - wall_end)
        ps = [t for t in partials if wall_start <= t <= wall_end + 2]
        if ps:
            first.append(min(ps) - wall_start)
    ref = [w for _, text in utts for w in words(text)]
    hyp = [w for _, e in finals for w in words(e["text"])]
    errors = [f"{e['code']}" for _, e in stream.events if e["type"] in ("error", "warning")]
    return {
        "finals": len(finals),
        "expected": len(spans),
        "lat": lat,
        "first": first,
        "edits": edits(ref, hyp),
        "ref_words": len(ref),
        "errors": errors,
    }


class ServerProcess:
    def __init__(self, mode: str, model: str, device: str) -> None:
        self.mode, self.model, self.device = mode, model, device
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ)
        env.update(
            {
                "STREAMER_API_KEYS": BENCH_KEY,
                "STREAMER_ASR_MODEL": self.model,
                "STREAMER_DEVICE": self.device,
                "STREAMER_BATCHING": "true" if self.mode == "on" else "false",
                "STREAMER_MAX_SESSIONS": "256",
                "STREAMER_SATURATION_LATENCY_S": "1000",  # measure latency, do not refuse
                "STREAMER_LOG_LEVEL": "WARNING",
            }
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "serve", "--port", str(self.port)], env=env
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _run_n(
    server: ServerProcess, mode: str, n: int, n_utts: int, speech: list[tuple[bytes, str]]
) -> RunResult:
    import psutil

    proc = psutil.Process(server.proc.pid if server.proc else os.getpid())
    proc.cpu_percent(None)
    peak = [proc.memory_info().rss]
    timeline: list[tuple[float, float]] = []
    t0 = time.monotonic()

    async def sample() -> None:
        last = -1e9
        while True:
            await asyncio.sleep(0.5)
            rss = proc.memory_info().rss
            peak[0] = max(peak[0], rss)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                timeline.append((round(last - t0, 1), round(rss / 2**20, 1)))

    sampler = asyncio.create_task(sample())
    async with StreamerClient(server.url, api_key=BENCH_KEY) as client:
        results = await asyncio.gather(
            *(_session(client, speech, n_utts, i) for i in range(n)), return_exceptions=True
        )
    sampler.cancel()
    res = RunResult(
        mode=mode, sessions=n, cpu_percent=round(proc.cpu_percent(None), 1), rss_mb=round(peak[0] / 2**20, 1)
    )
    edits = words = 0
    for r in results:
        if isinstance(r, BaseException):
            res.errors.append(repr(r)[:120])
            res.expected += n_utts
            continue
        if r.get("refused"):
            res.refused += 1
            res.expected += n_utts
            res.errors.append(r["error"])
            continue
        res.finals += r["finals"]
        res.expected += r["expected"]
        res.latencies += r["lat"]
        res.first_partials += r["first"]
        res.errors += r["errors"]
        edits += r["edits"]
        words += r["ref_words"]
    res.wer = round(edits / max(1, words), 4)
    res.rss_timeline = timeline
    return res


def within_bound(r: dict[str, Any], bound: float) -> bool:
    return (
        r["refused"] == 0
        and r["finals"] == r["expected"]
        and r["lat_p95"] is not None
        and r["lat_p95"] <= bound
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def markdown_table(report: dict[str, Any]) -> str:
    """The sweep as the table BENCHMARKS.md keeps."""
    rows = [
        "| batching | sessions | finals / expected | refused | final p50 s | final p95 s | final max s "
        "| first partial p50 s | WER | server CPU % | server RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        rows.append(
            f"| {r['mode']} | {r['sessions']} | {r['finals']} / {r['expected']} | {r['refused']} "
            f"| {r['lat_p50']} | {r['lat_p95']} | {r['lat_max']} | {r['first_partial_p50']} | {r['wer']} "
            f"| {r['cpu_percent']} | {r['rss_mb']} |"
        )
    return "\n".join(rows)


def run_soak(args: argparse.Namespace) -> int:
    """N sessions streaming without pause for ``--soak`` minutes: delivery and memory over time."""
    speech = load_speech()
    n = max(int(x) for x in args.sessions.split(",") if x)
    per_utterance_s = sum(len(p) / 32000 for p, _ in speech) / len(speech) + GAP_S
    utterances = max(1, int(args.soak * 60 / per_utterance_s))
    with ServerProcess("on", args.model, args.device) as server:
        result = asyncio.run(_run_n(server, "on", n, utterances, speech)).summary()
    result["minutes"] = args.soak
    report = {"machine": machine(), "model": args.model, "device": args.device, "soak": result}
    print(json.dumps(report), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if result["finals"] == result["expected"] else 1


def run_bench(args: argparse.Namespace) -> int:
    if args.soak:
        return run_soak(args)
    speech = load_speech()
    counts = [int(x) for x in args.sessions.split(",") if x]
    report: dict[str, Any] = {"machine": machine(), "model": args.model, "device": args.device, "runs": []}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        with ServerProcess(mode, args.model, args.device) as server:
            asyncio.run(_run_n(server, mode, 1, 1, speech))  # warm-up
            for n in counts:
                r = asyncio.run(_run_n(server, mode, n, args.utterances, speech)).summary()
                report["runs"].append(r)
                print(json.dumps(r), flush=True)
                if r["lat_p95"] is not None and r["lat_p95"] > 4 * args.bound:
                    break  # far past the bound: larger N only takes longer to say the same
    capacity = {}
    for mode in {r["mode"] for r in report["runs"]}:
        ok = [r["sessions"] for r in report["runs"] if r["mode"] == mode and within_bound(r, args.bound)]
        capacity[mode] = max(ok) if ok else 0
    report["capacity"] = capacity
    report["bound_s"] = args.bound
    if capacity.get("off"):
        report["capacity_ratio"] = round(capacity.get("on", 0) / capacity["off"], 2)
    print(json.dumps({"capacity": capacity, "ratio": report.get("capacity_ratio")}))
    print(markdown_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0
