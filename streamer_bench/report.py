"""The bench's verdicts and tables: capacity per start pattern and mode; the markdown BENCHMARKS.md keeps."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer_bench.cpu import parse_cpuinfo, vector_extensions
from streamer_bench.server_metrics import WORK_KINDS

# The latency a bound applies to: per sentence (its last chunk sent -> its last final), or, for input
# without sentence-final pauses (continuous reading, quick dialogue), per final (its last audio sent -> it).
SENTENCE_LATENCY = "lat_p95"
FINAL_END_LATENCY = "end_lat_p95"


def latency_measure(input_kind: str | None) -> str:
    """The p95 that capacity is judged on for an input kind (``Source.info["kind"]``)."""
    return FINAL_END_LATENCY if input_kind in ("continuous", "dialogue") else SENTENCE_LATENCY


def column(run: dict[str, Any]) -> str:
    """What a run is compared under: its techniques mode, its encoding unless PCM16, and ``diarize`` when
    its sessions asked for speaker labels (``on``, ``on webm``, ``on diarize``)."""
    encoding = run.get("encoding", "pcm16")
    name = str(run["mode"]) if encoding == "pcm16" else f"{run['mode']} {encoding}"
    return f"{name} diarize" if run.get("diarize") else name


def within_bound(run: dict[str, Any], bound: float, measure: str = SENTENCE_LATENCY) -> bool:
    """``measure`` within ``bound`` and every sentence's final delivered: none lost, refused or broken off."""
    return (
        run["refused"] == 0
        and run.get("failed", 0) == 0
        and run.get("lost", 0) == 0
        and run.get(measure) is not None
        and run[measure] <= bound
    )


def capacity(
    runs: Sequence[dict[str, Any]], bound: float, measure: str = SENTENCE_LATENCY
) -> dict[str, dict[str, int]]:
    """``{starts: {mode: N}}``: the largest N that, with every smaller N of its sweep, stayed within bound
    (a mode with another encoding than PCM16 is its own: ``on webm``, see :func:`column`).

    A failure at some N ends the count there even if a larger N happened to pass: capacity is what the
    server holds on every load up to it, not its luckiest run.
    """
    out: dict[str, dict[str, int]] = {}
    for starts in dict.fromkeys(r.get("starts", "sync") for r in runs):
        out[starts] = {}
        for mode in dict.fromkeys(column(r) for r in runs):
            mine = sorted(
                (r for r in runs if column(r) == mode and r.get("starts", "sync") == starts),
                key=lambda r: int(r["sessions"]),
            )
            if not mine:
                continue
            held = 0
            for r in mine:
                if not within_bound(r, bound, measure):
                    break
                held = int(r["sessions"])
            out[starts][mode] = held
    return out


def capacity_ratio(caps: dict[str, dict[str, int]]) -> dict[str, float | None]:
    """Capacity with the techniques on over off, per start pattern (None when off held no session)."""
    return {
        starts: round(modes["on"] / modes["off"], 2) if modes.get("off") and "on" in modes else None
        for starts, modes in caps.items()
    }


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The machine in one line, its CPU kind first: model name and vector extensions (see :mod:`cpu`)."""
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, flags = "", frozenset()
    cpu = model or platform.processor() or platform.machine()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu} ({vector_extensions(flags)}), {os.cpu_count()} cores, {mem:.0f} GiB RAM, "
        f"Python {platform.python_version()}"
    )


def _v(x: Any) -> str:
    return "–" if x is None else str(x)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _counts(d: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "–"


def runs_table(runs: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| techniques | starts | sessions | finals / sentences | lost | split | merged | refused "
        "| final p50 s | final p95 s | final max s | p95 unmerged s | first partial p50 s | WER "
        "| warnings | errors | server CPU % | server RSS MiB | final-end p95 s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in runs:
        rows.append(
            f"| {column(r)} | {r.get('starts', '–')} | {r['sessions']} | {r['finals']} / {r['sentences']} "
            f"| {r['lost']} | {r['split_sentences']} | {_v(r.get('merged_sentences'))} | {r['refused']} "
            f"| {_v(r['lat_p50'])} | {_v(r['lat_p95'])} | {_v(r['lat_max'])} "
            f"| {_v(r.get('lat_p95_unmerged'))} | {_v(r['first_partial_p50'])} | {_pct(r['wer'])} "
            f"| {_counts(r.get('warnings'))} "
            f"| {_counts(r.get('errors'))} | {r['cpu_percent']} | {r['rss_mb']} "
            f"| {_v(r.get('end_lat_p95'))} |"
        )
    return "\n".join(rows)


def lag_ms(work: dict[str, Any] | None) -> str:
    """The event loop's lag p99 in ms ("≥" when it lies past the histogram's last bucket)."""
    lag = (work or {}).get("loop_lag_p99_s")
    if lag is None:
        return "–"
    return f"{'≥ ' if work and work.get('loop_lag_p99_beyond_top') else ''}{round(1000 * lag, 1)}"


def work_table(runs: Sequence[dict[str, Any]]) -> str:
    """Where the model's time went, per run: seconds by kind of work, padding, decodes, loop lag."""
    rows = [
        "| techniques | starts | sessions | model busy | "
        + " | ".join(f"{k.replace('_', ' ')} s" for k in WORK_KINDS)
        + " | padding share | decode attempts | loop lag p99 ms |",
        "|---|---|---:|---:|" + "---:|" * len(WORK_KINDS) + "---:|---|---:|",
    ]
    for r in runs:
        w = r.get("work")
        if not w:
            continue
        rows.append(
            f"| {column(r)} | {r.get('starts', '–')} | {r['sessions']} | {_pct(w['model_busy_share'])} | "
            + " | ".join(str(w["work_s"].get(k, 0.0)) for k in WORK_KINDS)
            + f" | {_pct(w['padding_share'])} | {_counts(w['decode_attempts'])} "
            f"| {lag_ms(w)} |"
        )
    return "\n".join(rows)


def capacity_table(report: dict[str, Any]) -> str:
    caps: dict[str, dict[str, int]] = report.get("capacity", {})
    ratios = report.get("capacity_ratio", {})
    modes = list(dict.fromkeys(m for per in caps.values() for m in per))
    rows = [
        f"| starts | {' | '.join(f'capacity, techniques {m}' for m in modes)} | on / off |",
        "|---|" + "---:|" * (len(modes) + 1),
    ]
    for starts, per in caps.items():
        cells = " | ".join(_v(per.get(m)) for m in modes)
        rows.append(f"| {starts} | {cells} | {_v(ratios.get(starts))} |")
    return "\n".join(rows)


def _on_cpu(report: dict[str, Any]) -> str:
    """' on <CPU kind>' when the report names it: a capacity figure holds for that kind of CPU only."""
    return f" on {report['cpu_kind']}" if report.get("cpu_kind") else ""


def _measure_name(report: dict[str, Any]) -> str:
    measure = report.get("latency_measure", SENTENCE_LATENCY)
    name = "final-end p95 (per final)" if measure == FINAL_END_LATENCY else "final p95 (per sentence)"
    return f"diarized sessions, {name}" if report.get("diarize") else name


def markdown_tables(report: dict[str, Any]) -> dict[str, str]:
    """The runs, where the model's time went, and capacity (final p95 <= ``bound_s``, every final)."""
    return {
        "runs": runs_table(report["runs"]),
        "work": work_table(report["runs"]),
        "capacity": f"capacity{_on_cpu(report)}: {_measure_name(report)} <= {report['bound_s']} s, "
        "every final delivered\n\n" + capacity_table(report),
    }
