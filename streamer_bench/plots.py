"""Plots of ``streamer bench`` results, written beside the JSON (``python -m streamer_bench.plots``).

From a results file (``{"runs": [...]}`` from a sweep, or ``{"soak": {...}}``):

- ``<stem>-latency.png``: final latency p50 and p95 against concurrent sessions, one colour per mode;
- ``<stem>-modes.png``: the modes (techniques on vs off) side by side: final p95 at each session count
  they share, and capacity (the most sessions within the latency bound);
- ``<stem>-model-time.png``: where the model's time went: per run, the share of wall time the model spent
  on batches of finals, of partials, of both, and idle (runs that recorded ``model``, see
  :mod:`streamer_bench.model_time`);
- ``<stem>-soak.png``: server memory over a soak.

Matplotlib (the ``bench`` extra) is used through ``Figure`` objects, without pyplot's global state.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from streamer_bench.report import column

WORK_KINDS = ("final", "partial", "mixed")
COLOURS = {"on": "tab:blue", "off": "tab:orange"}


def _title(report: dict[str, Any], what: str) -> str:
    return f"{what} — {report.get('model', '?')} on {report.get('device', '?')}"


def _footer(fig: Figure, report: dict[str, Any]) -> None:
    """The machine the numbers were measured on, above the plots (constrained layout makes room)."""
    fig.suptitle(str(report.get("machine", "")), fontsize=7, color="grey")


def _modes(runs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(column(r) for r in runs))


def latency_figure(report: dict[str, Any]) -> Figure:
    """Final latency p50 (dashed) and p95 (solid) against sessions, per mode; the bound as a line."""
    runs = report["runs"]
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, mode in enumerate(_modes(runs)):
        mine = sorted((r for r in runs if column(r) == mode and r["lat_p95"] is not None), key=_sessions)
        xs = [r["sessions"] for r in mine]
        colour = COLOURS.get(mode, f"C{i + 2}")
        ax.plot(xs, [r["lat_p95"] for r in mine], "o-", color=colour, label=f"batching {mode}: p95")
        ax.plot(
            xs, [r["lat_p50"] for r in mine], "o--", color=colour, label=f"batching {mode}: p50", alpha=0.7
        )
    if report.get("bound_s"):
        ax.axhline(report["bound_s"], color="red", linewidth=0.8, label=f"bound {report['bound_s']} s")
    ax.set_xlabel("concurrent real-time sessions")
    ax.set_ylabel("final latency (s)")
    ax.set_title(_title(report, "Final latency"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _footer(fig, report)
    return fig


def _sessions(run: dict[str, Any]) -> int:
    return int(run["sessions"])


def modes_figure(report: dict[str, Any]) -> Figure:
    """Final p95 per mode at each session count every mode ran; capacity per mode."""
    runs = report["runs"]
    modes = _modes(runs)
    p95 = {(column(r), r["sessions"]): r["lat_p95"] for r in runs if r["lat_p95"] is not None}
    shared = sorted(set.intersection(*({n for m2, n in p95 if m2 == m} for m in modes)) if modes else set())
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    bars, capacity = fig.subplots(1, 2, width_ratios=(3, 1))
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        xs = [k + i * width for k in range(len(shared))]
        bars.bar(xs, [p95[(mode, n)] for n in shared], width, label=f"batching {mode}",
                 color=COLOURS.get(mode, f"C{i + 2}"))  # fmt: skip
    bars.set_xticks([k + width * (len(modes) - 1) / 2 for k in range(len(shared))], [str(n) for n in shared])
    if report.get("bound_s"):
        bars.axhline(report["bound_s"], color="red", linewidth=0.8, label=f"bound {report['bound_s']} s")
    bars.set_xlabel("concurrent real-time sessions")
    bars.set_ylabel("final latency p95 (s)")
    bars.set_title(_title(report, "Techniques on vs off"))
    bars.legend(fontsize=8)
    caps = report.get("capacity", {})
    capacity.bar(modes, [caps.get(m, 0) for m in modes], color=[COLOURS.get(m, "grey") for m in modes])
    capacity.set_title("capacity (sessions)")
    for k, mode in enumerate(modes):
        capacity.annotate(str(caps.get(mode, 0)), (k, caps.get(mode, 0)), ha="center", va="bottom")
    _footer(fig, report)
    return fig


def model_time_figure(report: dict[str, Any]) -> Figure | None:
    """Shares of wall time: model busy on finals, partials, mixed batches, and idle (None: not recorded)."""
    runs = [r for r in report["runs"] if r.get("model") and r["model"].get("wall_s")]
    if not runs:
        return None
    fig = Figure(figsize=(max(6.0, 0.45 * len(runs) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{column(r)}\n{r['sessions']}" for r in runs]
    bottom = [0.0] * len(runs)
    # older results split batches (final, partial, mixed); newer ones split the work (see server_metrics)
    kinds = list(dict.fromkeys(k for r in runs for k in r["model"]["busy_s"]))
    batches = set(kinds) <= set(WORK_KINDS)
    for i, kind in enumerate(kinds):
        shares = [min(1.0, r["model"]["busy_s"].get(kind, 0.0) / r["model"]["wall_s"]) for r in runs]
        what = f"{kind} batches" if batches else kind.replace("_", " ")
        ax.bar(labels, shares, bottom=bottom, label=f"model: {what}", color=f"C{i}")
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.bar(labels, [max(0.0, 1 - b) for b in bottom], bottom=bottom, label="model idle", color="lightgrey")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of wall time")
    ax.set_xlabel("batching mode / sessions")
    ax.set_title(_title(report, "Where the model's time went"))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: bars reach the top
    _footer(fig, report)
    return fig


def soak_figure(report: dict[str, Any]) -> Figure | None:
    timeline = report["soak"].get("rss_timeline") or []
    if not timeline:
        return None
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([t / 60 for t, _ in timeline], [mib for _, mib in timeline], "-", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("minutes")
    ax.set_ylabel("server RSS (MiB)")
    soak = report["soak"]
    what = f"Soak: {soak['sessions']} sessions, {soak['finals']}/{soak['expected']} finals"
    ax.set_title(_title(report, what))
    ax.grid(alpha=0.3)
    _footer(fig, report)
    return fig


def write_plots(report: dict[str, Any], outdir: Path, stem: str) -> list[Path]:
    """Write every plot the report has data for as ``outdir/<stem>-<plot>.png``; the paths written."""
    outdir.mkdir(parents=True, exist_ok=True)
    starts = list(dict.fromkeys(r["starts"] for r in report.get("runs", []) if "starts" in r))
    if starts:  # a sweep per start pattern (sync, spread): one set of plots each
        written = []
        for pattern in starts:
            runs = [
                {k: v for k, v in r.items() if k != "starts"}
                for r in report["runs"]
                if r["starts"] == pattern
            ]
            caps = report.get("capacity", {}).get(pattern, {})
            sub = {k: v for k, v in report.items() if k != "soak"} | {"runs": runs, "capacity": caps}
            written += write_plots(sub, outdir, f"{stem}-{pattern}")
        return written
    figures: dict[str, Figure | None] = {}
    if report.get("runs"):
        figures["latency"] = latency_figure(report)
        figures["modes"] = modes_figure(report)
        figures["model-time"] = model_time_figure(report)
    if report.get("soak"):
        figures["soak"] = soak_figure(report)
    written = []
    for name, fig in figures.items():
        if fig is None:
            continue
        path = outdir / f"{stem}-{name}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamer_bench.plots", description="PNG plots of a streamer bench results file"
    )
    parser.add_argument("results", type=Path, help="JSON written by streamer bench --out")
    parser.add_argument("outdir", type=Path, nargs="?", help="where to write (default: beside the JSON)")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        print(f"plots: cannot read {args.results}: {e}", file=sys.stderr)
        return 2
    if not isinstance(report, dict) or not (report.get("runs") or report.get("soak")):
        print(f"plots: {args.results} holds no bench runs or soak", file=sys.stderr)
        return 2
    for path in write_plots(report, args.outdir or args.results.parent, args.results.stem):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
