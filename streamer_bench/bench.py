"""``streamer bench``: live sessions of real speech against a real server process, until latency breaks.

For every techniques mode (``on``: batching, length buckets, early finals; ``off``) a server runs as its own
process, so its CPU and memory are measured apart from the clients. For every start pattern (``sync``: all
sessions within 0.1 s, the worst case; ``spread``: evenly over ``--spread-s``) and every N, N sessions stream
their scripts (:mod:`streamer_bench.script`: the realistic corpus by default; ``--input
continuous|dialogue|commands`` for the kinds of :mod:`streamer_bench.speech_kinds`) in real time over protocol
v1: as PCM16, or (``--encoding webm|ogg``, a list to compare) as Opus in a container, each session's audio
encoded once and sent in 250 ms pieces as a browser's MediaRecorder does (:mod:`streamer_bench.recording`),
its finals timed by the same definition on the decoded audio. Scored per run (:mod:`streamer_bench.latency`):
finals / sentences, lost and split sentences, refusals, final latency p50/p95/max, first partial p50, WER,
warnings and errors by code, server CPU and peak RSS, the bench's own CPU; and from the server's ``/metrics``
(:mod:`streamer_bench.server_metrics`) where the model's time went and the event loop's lag. With
``--diarize`` every session asks for speaker labels and word timings in its session config, as a diarizing
client does.

Capacity, per start pattern and mode (and encoding, when not PCM16): the largest N such that it and every
smaller N of the sweep kept final p95 (per sentence; per final, from its last audio sent, for continuous
reading and dialogue, whose finals end wherever the segmenter cut) within ``--bound`` with every sentence's
final delivered (none lost, no session refused or broken off). A mode's sweep for a start pattern stops once
p95 passes 4x the bound or most sessions are refused (:func:`stop_here`).

The server runs with its own admission as shipped (refusals are part of the answer); ``--server-env
STREAMER_X=V`` changes a setting, e.g. ``STREAMER_SATURATION_LATENCY_S=1000`` to measure latency past the
point where it would refuse. ``--idle N`` measures idle sessions instead (:mod:`streamer_bench.idle`),
``--soak M`` the largest N for M minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer_bench import model_time
from streamer_bench import server_metrics as sm
from streamer_bench.cpu import cpu_info, cpu_kind, model_dir
from streamer_bench.plots import write_plots
from streamer_bench.progress import RunProgress, expected_seconds
from streamer_bench.recording import ENCODINGS, record
from streamer_bench.report import (
    SENTENCE_LATENCY,
    capacity,
    capacity_ratio,
    latency_measure,
    markdown_tables,
)
from streamer_bench.report import machine as machine  # re-exported: bench_mt reads it from here
from streamer_bench.script import (
    ESPEAK_DATA,
    STARTS,
    InputError,
    Script,
    Source,
    corpus_source,
    espeak_source,
    kind_source,
    start_offsets,
)
from streamer_bench.server import ServerError, ServerProcess, Watch, scrape_text, settle
from streamer_bench.sessions import run_sessions
from streamer_bench.speech_kinds import KINDS

DATA = ESPEAK_DATA  # the espeak clips shipped with the package (``--input espeak``)
STOP_FACTOR = 4.0


def load_speech(data: Path = DATA) -> list[tuple[bytes, str]]:
    """The espeak utterances with their reference text (16 kHz PCM16)."""
    return [(p.audio[: p.speech].tobytes(), p.text) for p in espeak_source(data).pieces]


async def measure(
    server: ServerProcess,
    mode: str,
    starts: str,
    scripts: Sequence[Script],
    offsets: Sequence[float],
    encoding: str = "pcm16",
    diarize: bool = False,
) -> dict[str, Any]:
    """One run: the sessions (in ``encoding``, diarized or not), the server watched, and its metrics before
    and after."""
    # encoded before the clock starts: a recorder's encoding is the client's cost, not the server's
    recordings = None if encoding == "pcm16" else [record(s, encoding) for s in scripts]
    await settle(server.url)
    before = await scrape_text(server.url)
    async with Watch(server.process) as watch:
        score = await run_sessions(server.url, scripts, starts, offsets, recordings, diarize)
    after = await scrape_text(server.url)
    server.check_alive()
    row: dict[str, Any] = {
        "mode": mode,
        "encoding": encoding,
        "diarize": diarize,
        "starts": starts,
        **score.summary(),
        **watch.summary(),
    }
    row["expected"] = row["sentences"]  # the name plots and older readers use
    row["rss_timeline"] = watch.timeline
    if before is not None and after is not None:
        row["work"] = sm.profile(sm.diff(sm.parse(before), sm.parse(after)), watch.wall_s)
        # what the plots read: model calls and jobs, and busy seconds by kind of work
        row["model"] = model_time.model_time(model_time.parse(before), model_time.parse(after), watch.wall_s)
    return row


# --- options and the sweep


@dataclass(frozen=True)
class Options:
    """The command line, checked once before anything starts."""

    counts: list[int]
    modes: list[str]
    starts: list[str]
    spread_s: float
    utterances: int
    bound: float
    server_env: dict[str, str]
    model: str
    device: str
    encodings: tuple[str, ...] = ("pcm16",)
    idle: int | None = None
    soak: float = 0.0
    out: str | None = None
    diarize: bool = False  # every session asks for speaker labels (``diarize``, with word timings)


def parse_options(args: argparse.Namespace) -> Options:
    """Options from ``streamer bench``'s arguments; raises :class:`InputError` saying what is wrong."""
    if args.utterances < 1 or args.spread_s < 0 or args.bound <= 0 or args.soak < 0:
        raise InputError("--utterances must be at least 1, --spread-s and --soak at least 0, --bound above 0")
    if args.idle is not None and args.idle < 1:
        raise InputError("--idle takes the number of idle sessions (at least 1)")
    encodings = tuple(parse_list(args.encoding, ENCODINGS))
    if encodings != ("pcm16",) and (args.idle is not None or args.soak):
        raise InputError("--encoding applies to the sweep; --idle and --soak stream PCM16")
    if args.diarize and (args.idle is not None or args.soak):
        raise InputError("--diarize applies to the sweep; --idle and --soak ask for no speaker labels")
    env = {}
    for item in args.server_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("STREAMER_"):
            raise InputError(f"--server-env takes STREAMER_NAME=VALUE, not {item!r}")
        env[key] = value
    return Options(
        counts=_counts(args.sessions),
        modes=parse_list(args.modes, ("on", "off")),
        starts=parse_list(args.starts, STARTS),
        spread_s=args.spread_s,
        utterances=args.utterances,
        bound=args.bound,
        server_env=env,
        model=args.model,
        device=args.device,
        encodings=encodings,
        idle=args.idle,
        soak=args.soak,
        out=args.out,
        diarize=args.diarize,
    )


def parse_list(text: str, allowed: Sequence[str]) -> list[str]:
    items = list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if not items or any(x not in allowed for x in items):
        raise InputError(f"expected a comma-separated list of {', '.join(allowed)}, not {text!r}")
    return items


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise InputError(f"--sessions takes comma-separated whole numbers, not {text!r}") from e
    if not counts or counts[0] < 1:
        raise InputError("--sessions: every count must be at least 1")
    return counts


def load_source(args: argparse.Namespace) -> Source:
    if args.input == "espeak":
        return espeak_source()
    if args.input in KINDS:
        return kind_source(args.input, args.corpus)
    return corpus_source(args.condition, args.sentences, args.corpus)


def stop_here(row: dict[str, Any], bound: float, measure: str = SENTENCE_LATENCY) -> bool:
    """Whether a larger N would only take longer to say the same: the load is far past what is served.

    Far past: p95 over 4x the bound (counting the sentences that did not wait for a later one, so that
    a merge at small N does not hide the curve), most sessions refused, or nothing delivered at all.
    """
    sessions = int(row["sessions"])
    if 2 * int(row["refused"]) > sessions:
        return True
    p95: float | None = (
        row.get("lat_p95_unmerged", row["lat_p95"]) if measure == SENTENCE_LATENCY else row.get(measure)
    )
    if p95 is None:
        return sessions > 1
    return p95 > STOP_FACTOR * bound


async def _sweep(
    server: ServerProcess, mode: str, opts: Options, source: Source, rows: list[dict[str, Any]]
) -> None:
    judged = latency_measure(source.info.get("kind"))
    """Every start pattern and N for one mode; each run's row is appended as soon as it is measured."""
    progress = RunProgress.on_terminal()  # stderr, on a terminal only
    for encoding in opts.encodings:
        # warm-up: first calls, caches (and the first container decoder)
        await measure(server, mode, "sync", [source.script(0, 1, 1)], [0.0], encoding, opts.diarize)
        for starts in opts.starts:
            for n in opts.counts:
                scripts = [source.script(i, n, opts.utterances) for i in range(n)]
                offsets = start_offsets(n, starts, opts.spread_s)
                label = f"batching {mode}, {encoding}, {starts} starts, {n} sessions"
                async with progress.running(label, expected_seconds(scripts, offsets)):
                    row = await measure(server, mode, starts, scripts, offsets, encoding, opts.diarize)
                row.pop("rss_timeline")
                rows.append(row)
                progress.clear()
                print(json.dumps(row), flush=True)
                if stop_here(row, opts.bound, judged):
                    break


def run_sweep(opts: Options, source: Source) -> int:
    report = report_header(opts, source)
    report["runs"] = []
    try:
        for mode in opts.modes:
            sessions = max(64, opts.counts[-1] + 4)
            with ServerProcess(mode, opts.model, opts.device, sessions, opts.server_env) as server:
                asyncio.run(_sweep(server, mode, opts, source, report["runs"]))
    except ServerError as e:  # report what was measured, and say why the rest is missing
        report["aborted"] = str(e)
        print(f"streamer bench: {e}", file=sys.stderr)
    report["latency_measure"] = judged = latency_measure(source.info.get("kind"))
    report["capacity"] = capacity(report["runs"], opts.bound, judged)
    report["capacity_ratio"] = capacity_ratio(report["capacity"])
    report["tables"] = markdown_tables(report)
    for table in report["tables"].values() if report["runs"] else ():
        print(table, end="\n\n")
    write(report, opts.out)
    return 1 if "aborted" in report else 0


def write(report: dict[str, Any], out: str | None) -> None:
    """The JSON at ``out``, and its plots beside it (``<stem>-*.png``)."""
    if out:
        path = Path(out)
        path.write_text(json.dumps(report, indent=2) + "\n")
        for plot in write_plots(report, path.parent, path.stem):
            print(f"plot: {plot}", file=sys.stderr)


def report_header(opts: Options, source: Source) -> dict[str, Any]:
    """What every report starts with: the machine and its CPU kind, the model, the input, the starts."""
    cpu = cpu_info(model_dir(opts.model)) if opts.device == "cpu" else cpu_info()
    return {
        "machine": machine(),
        "cpu": cpu,
        "cpu_kind": cpu_kind(cpu),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": opts.model,
        "device": opts.device,
        "bound_s": opts.bound,
        "input": source.info,
        "encodings": list(opts.encodings),
        "diarize": opts.diarize,
        "starts": opts.starts,
        "spread_s": opts.spread_s,
        "utterances": opts.utterances,
        "server_env": opts.server_env,
    }


def run_soak(opts: Options, source: Source) -> int:
    """N sessions speaking for ``--soak`` minutes (spread starts): delivery and memory over time."""
    n = opts.counts[-1]
    piece_s = sum(p.audio.size for p in source.pieces) / len(source.pieces) / source.rate
    scripts = [source.script(i, n, max(1, int(opts.soak * 60 / piece_s))) for i in range(n)]
    offsets = start_offsets(n, "spread", opts.spread_s)
    with ServerProcess("on", opts.model, opts.device, max(64, n + 4), opts.server_env) as server:
        result = asyncio.run(_soak(server, scripts, offsets))
    result["minutes"] = opts.soak
    report = {**report_header(opts, source), "starts": ["spread"], "soak": result}
    print(json.dumps(report), flush=True)
    write(report, opts.out)
    return 0 if result["lost"] == 0 and result["refused"] == 0 and result["failed"] == 0 else 1


async def _soak(server: ServerProcess, scripts: Sequence[Script], offsets: Sequence[float]) -> dict[str, Any]:
    progress = RunProgress.on_terminal()
    async with progress.running(f"soak, {len(scripts)} sessions", expected_seconds(scripts, offsets)):
        return await measure(server, "on", "spread", scripts, offsets)
