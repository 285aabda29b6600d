"""Bench plots from a small synthetic results file: what is drawn is what the JSON says, and the PNGs
are written beside it (``python -m streamer_bench.plots results.json [outdir]``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from streamer_bench import bench, plots
from streamer_bench.model_time import model_time, parse


def _run(mode: str, n: int, p50: float | None, p95: float | None, **extra: Any) -> dict[str, Any]:
    return {"mode": mode, "sessions": n, "refused": 0, "lat_p50": p50, "lat_p95": p95, **extra}


def _model(wall: float, final: float, partial: float, mixed: float) -> dict[str, Any]:
    return {"wall_s": wall, "busy_s": {"final": final, "partial": partial, "mixed": mixed}, "calls": 10}


REPORT: dict[str, Any] = {
    "machine": "test machine, 2 cores",
    "model": "tiny.en",
    "device": "cpu",
    "bound_s": 1.5,
    "capacity": {"on": 4, "off": 1},
    "runs": [
        _run("on", 4, 0.5, 0.9, model=_model(20.0, 8.0, 2.0, 4.0)),
        _run("on", 1, 0.3, 0.4, model=_model(20.0, 2.0, 1.0, 0.0)),
        _run("on", 8, 0.9, 2.0),  # recorded before model time existed: left out of that plot
        _run("off", 1, 0.7, 0.9, model=_model(10.0, 9.0, 3.0, 0.0)),  # busier than the wall: capped
        _run("off", 4, 1.9, 3.1),
        _run("off", 8, None, None),  # every session refused
    ],
}


def test_latency_plot_draws_each_modes_percentiles_by_sessions() -> None:
    ax = plots.latency_figure(REPORT).axes[0]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines["batching on: p95"] == ([1, 4, 8], [0.4, 0.9, 2.0])
    assert lines["batching on: p50"] == ([1, 4, 8], [0.3, 0.5, 0.9])
    assert lines["batching off: p95"] == ([1, 4], [0.9, 3.1])
    assert lines["bound 1.5 s"][1] == [1.5, 1.5]


def test_modes_plot_compares_p95_where_both_ran_and_capacity() -> None:
    bars, capacity = plots.modes_figure(REPORT).axes
    heights = {
        c.get_label(): [p.get_height() for p in c.patches]
        for c in bars.containers  # type: ignore[attr-defined]
    }
    assert heights == {"batching on": [0.4, 0.9], "batching off": [0.9, 3.1]}  # 1 and 4 sessions
    assert [t.get_text() for t in bars.get_xticklabels()] == ["1", "4"]
    assert [p.get_height() for p in capacity.patches] == [4, 1]


def test_model_time_plot_stacks_shares_of_wall_time() -> None:
    fig = plots.model_time_figure(REPORT)
    assert fig is not None
    ax = fig.axes[0]
    shares = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}  # type: ignore[attr-defined]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["on\n4", "on\n1", "off\n1"]
    assert shares["model: final batches"] == pytest.approx([0.4, 0.1, 0.9])
    assert shares["model: partial batches"] == pytest.approx([0.1, 0.05, 0.3])
    assert shares["model: mixed batches"] == pytest.approx([0.2, 0.0, 0.0])
    assert shares["model idle"] == pytest.approx([0.3, 0.85, 0.0])
    without = {**REPORT, "runs": [r for r in REPORT["runs"] if "model" not in r]}
    assert plots.model_time_figure(without) is None


def test_the_command_writes_pngs_beside_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "cpu-tiny.json"
    results.write_text(json.dumps(REPORT))
    assert plots.main([str(results)]) == 0
    names = ["cpu-tiny-latency.png", "cpu-tiny-modes.png", "cpu-tiny-model-time.png"]
    assert capsys.readouterr().out.split() == [str(tmp_path / n) for n in names]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = imread(tmp_path / name).shape
        assert width > 500 and height > 300

    soak = tmp_path / "soak.json"
    timeline = [[0.5, 180.0], [60.0, 320.0], [120.0, 330.0]]
    soak.write_text(
        json.dumps({"soak": {"sessions": 2, "finals": 4, "expected": 4, "rss_timeline": timeline}})
    )
    assert plots.main([str(soak), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "soak-soak.png").is_file()


@pytest.mark.parametrize("content", ["not json", "[]", '{"runs": []}'])
def test_the_command_refuses_what_is_not_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    results = tmp_path / "r.json"
    results.write_text(content)
    assert plots.main([str(results)]) == 2
    assert "plots:" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


EXPOSITION_BEFORE = """\
# TYPE streamer_batch_size histogram
streamer_batch_size_count{batcher="asr"} 10.0
streamer_batch_size_sum{batcher="asr"} 25.0
streamer_batch_size_count{batcher="mt"} 99.0
# TYPE streamer_model_work_seconds counter
streamer_model_work_seconds_total{kind="final"} 1.5
streamer_model_work_seconds_total{kind="partial"} 0.5
"""
EXPOSITION_AFTER = (
    EXPOSITION_BEFORE.replace("10.0", "30.0").replace("25.0", "85.0").replace(" 1.5", " 4.0")
    + 'streamer_model_work_seconds_total{kind="fallback"} 0.25\n'
)


def test_model_time_is_the_difference_of_two_scrapes() -> None:
    assert model_time(parse(EXPOSITION_BEFORE), parse(EXPOSITION_AFTER), wall_s=12.0) == {
        "wall_s": 12.0,
        "busy_s": {"final": 2.5, "partial": 0.0, "fallback": 0.25},
        "calls": 20,
        "jobs": 60,
        "mean_batch": 3.0,
    }


def test_the_bench_writes_its_plots_beside_its_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep.json"
    bench.write(REPORT, str(out))
    assert json.loads(out.read_text()) == REPORT
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == ["sweep-latency.png", "sweep-model-time.png", "sweep-modes.png"]
    assert capsys.readouterr().err.count("plot: ") == 3
