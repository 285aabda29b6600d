"""Where the server's time goes under N synchronized sessions: per thread, per model call, per stack.

    python -m streamer_bench.profile --sessions 12 [--input continuous] [--corpus DIR] [--py-spy OUT.txt]

One short run of the bench (real server process, real model, sessions streaming in real time), with the
server's threads' CPU and run-queue seconds read from ``/proc/<pid>/task`` before and after (so CTranslate2's
and OpenBLAS's native threads, which no Python profiler sees, are counted too), the batch sizes and
model time from ``/metrics``, and, with ``--py-spy``, ``py-spy record --native --idle`` of the server over
the run (collapsed stacks per thread; ``pip install py-spy`` first). A Python thread is named from
``py-spy dump`` (its OS thread id).

On a shared machine the seconds are not capacity figures; what it shows is the structure: which thread
works while the others wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from streamer_bench import server_metrics as sm
from streamer_bench.cpu import cpu_info, cpu_kind, model_dir
from streamer_bench.script import corpus_source, kind_source, start_offsets
from streamer_bench.server import ServerProcess, scrape_text, settle
from streamer_bench.sessions import run_sessions
from streamer_bench.speech_kinds import KINDS

Row = dict[str, Any]
Threads = dict[int, tuple[str, float, float]]  # OS thread id -> (name, CPU s, run-queue wait s)
_DUMP_THREAD = re.compile(r"^Thread (0x[0-9A-Fa-f]+|\d+) \((\w+)\): \"([^\"]*)\"", re.MULTILINE)


def thread_cpu(pid: int) -> Threads:
    """Every thread of ``pid``: its name (``comm``), CPU seconds so far, and seconds it waited for a CPU.

    From ``schedstat`` (ns on a CPU, ns runnable but waiting for one): on a shared machine the second
    tells a thread starved by other processes from one that had nothing to do.
    """
    out: Threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # the thread ended between the listing and the read
        out[int(task.name)] = (comm, int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def py_spy() -> str | None:
    """The py-spy executable (``pip install py-spy``): beside this Python, else on the PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def python_threads(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    spy = py_spy()
    if spy is None:
        return {}
    done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=False)
    return {int(tid, 0): name for tid, _, name in _DUMP_THREAD.findall(done.stdout)}


def cpu_by_thread(before: Threads, after: Threads, names: dict[int, str], wall: float) -> list[Row]:
    """The threads that used CPU between two readings, busiest first: CPU and run-queue wait, as shares."""
    rows = []
    for tid, (comm, cpu, wait) in after.items():
        _, cpu0, wait0 = before.get(tid, (comm, 0.0, 0.0))
        if cpu - cpu0 >= 0.01:
            rows.append(
                {
                    "tid": tid,
                    "name": names.get(tid, comm),
                    "cpu_s": round(cpu - cpu0, 2),
                    "busy_share": round((cpu - cpu0) / wall, 3),
                    "runnable_waiting_share": round((wait - wait0) / wall, 3),
                }
            )
    return sorted(rows, key=lambda r: -float(r["cpu_s"]))


def record(spy: str, pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """``py-spy record --native --idle`` of every thread of ``pid`` for ``seconds``, collapsed, to ``out``."""
    argv = [spy, "record", "--native", "--idle", "--threads", "-r", "50", "-d", str(seconds), "-f", "raw"]
    return subprocess.Popen(
        [*argv, "-o", str(out), "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def batch_sizes(text: str) -> dict[str, dict[str, float]]:
    """Per batcher: the cumulative ``le`` buckets of ``streamer_batch_size``, its count and sum."""
    out: dict[str, dict[str, float]] = {}
    pattern = re.compile(r"^streamer_batch_size_(bucket|count|sum)\{(.*?)\} (\S+)$", re.MULTILINE)
    for kind, labels, value in pattern.findall(text):
        batcher = re.search(r'batcher="([^"]*)"', labels)
        name = batcher.group(1) if batcher else "?"
        le = re.search(r'le="([^"]*)"', labels)
        out.setdefault(name, {})[f"le {le.group(1)}" if le else kind] = float(value)
    return out


def _minus(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {m: v - b.get(k, {}).get(m, 0.0) for m, v in d.items()} for k, d in a.items()}


async def _run(args: argparse.Namespace, server: ServerProcess) -> dict[str, Any]:
    source = kind_source(args.input, args.corpus) if args.input in KINDS else corpus_source(root=args.corpus)
    await run_sessions(server.url, [source.script(0, 1, 1)], "sync", [0.0])  # warm-up
    await settle(server.url)
    scripts = [source.script(i, args.sessions, args.utterances) for i in range(args.sessions)]
    pid = server.process.pid
    names = python_threads(pid)
    before_text = await scrape_text(server.url) or ""
    before = thread_cpu(pid)
    spy, exe = None, py_spy()
    if args.py_spy and exe is not None:
        duration = int(max(s.duration_s for s in scripts)) + 5
        spy = record(exe, pid, duration, args.py_spy)
    started = time.monotonic()
    score = await run_sessions(server.url, scripts, "sync", start_offsets(args.sessions, "sync", 0.0))
    wall = time.monotonic() - started
    after = thread_cpu(pid)
    after_text = await scrape_text(server.url) or ""
    names |= python_threads(pid)
    if spy is not None:
        await asyncio.to_thread(spy.wait, 120)
    return {
        "sessions": args.sessions,
        "wall_s": round(wall, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),  # the machine's, not the server's
        "score": score.summary(),
        "threads": cpu_by_thread(before, after, names, wall),
        "work": sm.profile(sm.diff(sm.parse(before_text), sm.parse(after_text)), wall),
        "batch_sizes": _minus(batch_sizes(after_text), batch_sizes(before_text)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--utterances", type=int, default=3)
    parser.add_argument("--input", choices=["corpus", *KINDS], default="corpus", help="what sessions say")
    parser.add_argument("--corpus", type=Path, help="a corpus directory (default: generated and cached)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--py-spy", type=Path, help="also record the server with py-spy into this file")
    parser.add_argument("--server-env", action="append", default=[], help="STREAMER_NAME=VALUE")
    args = parser.parse_args(argv)
    if args.py_spy and py_spy() is None:
        parser.error("--py-spy needs py-spy (pip install py-spy)")
    env = dict(item.partition("=")[::2] for item in args.server_env)
    cpu = cpu_info(model_dir(args.model))
    with ServerProcess("on", args.model, "cpu", max(64, args.sessions + 4), env) as server:
        result = asyncio.run(_run(args, server))
    print(json.dumps({"cpu_kind": cpu_kind(cpu), "cpu": cpu, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
