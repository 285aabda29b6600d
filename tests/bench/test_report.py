"""Capacity per start pattern and mode, the sweep's stop, the tables, and the command line's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamer.cli import main
from streamer_bench import plots
from streamer_bench.bench import stop_here
from streamer_bench.cpu import (
    VECTOR_FLAGS,
    cpu_info,
    cpu_kind,
    model_dir,
    parse_cpuinfo,
    parse_ct2_log,
    vector_extensions,
)
from streamer_bench.report import capacity, capacity_ratio, machine, markdown_tables, within_bound
from streamer_bench.script import FIXTURES


def run(mode: str, starts: str, n: int, p95: float | None, **extra: Any) -> dict[str, Any]:
    row = {
        "mode": mode,
        "starts": starts,
        "sessions": n,
        "refused": 0,
        "failed": 0,
        "lost": 0,
        "sentences": 4 * n,
        "finals": 4 * n,
        "split_sentences": 0,
        "lat_p50": p95,
        "lat_p95": p95,
        "lat_max": p95,
        "first_partial_p50": 0.5,
        "wer": 0.02,
        "warnings": {},
        "cpu_percent": 150.0,
        "rss_mb": 400.0,
    }
    return row | extra


RUNS = [
    run("on", "sync", 1, 0.6),
    run("on", "sync", 8, 1.2),
    run("on", "sync", 16, 1.4, lost=1),  # within the bound, but a sentence lost
    run("on", "sync", 24, 1.3),  # a lucky run after a failure does not count
    run("on", "spread", 1, 0.6),
    run("on", "spread", 8, 1.0),
    run("on", "spread", 16, 1.3),
    run("off", "sync", 1, 0.9),
    run("off", "sync", 8, 3.0),
    run("off", "spread", 1, 0.9),
    run("off", "spread", 8, 1.4, refused=1),
]


def test_capacity_is_the_largest_n_that_held_with_every_smaller_n() -> None:
    caps = capacity(RUNS, bound=1.5)
    assert caps == {"sync": {"on": 8, "off": 1}, "spread": {"on": 16, "off": 1}}
    assert capacity_ratio(caps) == {"sync": 8.0, "spread": 16.0}


def test_nothing_within_the_bound_is_capacity_zero_and_no_ratio() -> None:
    caps = capacity([run("on", "sync", 1, 0.6), run("off", "sync", 1, 2.0)], bound=1.5)
    assert caps == {"sync": {"on": 1, "off": 0}}
    assert capacity_ratio(caps) == {"sync": None}


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ({}, True),
        ({"refused": 1}, False),
        ({"failed": 1}, False),
        ({"lost": 2}, False),
        ({"lat_p95": None}, False),
    ],
)
def test_within_bound_needs_every_final(extra: dict[str, Any], ok: bool) -> None:
    assert within_bound(run("on", "sync", 4, 1.0) | extra, 1.5) is ok


def test_a_sweep_stops_far_past_the_bound_or_when_nothing_arrives() -> None:
    assert not stop_here(run("on", "sync", 8, 5.9), 1.5)
    assert stop_here(run("on", "sync", 8, 6.1), 1.5)
    assert stop_here(run("on", "sync", 8, None), 1.5)
    assert not stop_here(run("on", "sync", 1, None), 1.5)
    # a merge at small N (a sentence that waited for the next) is segmentation, not load: go on
    assert not stop_here(run("on", "sync", 4, 7.0, lat_p95_unmerged=0.9), 1.5)
    assert stop_here(run("on", "sync", 4, 7.0, lat_p95_unmerged=6.5), 1.5)


def test_a_sweep_stops_once_most_sessions_are_refused() -> None:
    assert not stop_here(run("on", "sync", 8, 1.0, refused=4), 1.5)
    assert stop_here(run("on", "sync", 8, 1.0, refused=5), 1.5)


def test_tables_show_every_run_and_capacity() -> None:
    work = {
        "work_s": {"final": 1.0, "partial": 2.5},
        "model_busy_share": 0.35,
        "padding_share": None,
        "decode_attempts": {"greedy": 4},
        "loop_lag_p99_s": 0.0123,
    }
    report: dict[str, Any] = {"bound_s": 1.5, "runs": [*RUNS[:2], RUNS[2] | {"work": work}]}
    report["capacity"] = capacity(report["runs"], 1.5)
    tables = markdown_tables(report)
    assert len(tables["runs"].splitlines()) == 2 + 3
    assert "| on | sync | 16 | 64 / 64 | 1 |" in tables["runs"]
    assert "| on | sync | 16 | 35.0 % | 1.0 | 0.0 | 0.0 | 2.5 | 0.0 | – | greedy 4 | 12.3 |" in tables["work"]
    assert "| sync | 8 | – |" in tables["capacity"]
    assert tables["capacity"].startswith("capacity: final p95 (per sentence) <= 1.5 s")
    named = markdown_tables(report | {"cpu_kind": "AMD EPYC (AVX2, FMA; CTranslate2 ISA AVX2)"})
    assert named["capacity"].startswith("capacity on AMD EPYC (AVX2, FMA; CTranslate2 ISA AVX2): ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--server-env", "NOT_A_SETTING"],
        ["--sessions", "0,4"],
        ["--sessions", "four"],
        ["--starts", "later"],
        ["--modes", "fast"],
        ["--idle", "0"],
        ["--utterances", "0"],
        ["--corpus", str(FIXTURES), "--condition", "nonspeech_hum"],
        ["--corpus", "/nonexistent/corpus"],
    ],
)
def test_bad_options_are_refused_before_any_server_starts(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *argv]) == 2
    assert capsys.readouterr().err.startswith("streamer bench: ")


def test_plots_draw_each_start_pattern_with_its_own_capacity(tmp_path: Path) -> None:
    caps = capacity(RUNS, 1.5)
    report: dict[str, Any] = {"machine": "m", "bound_s": 1.5, "runs": RUNS, "capacity": caps}
    written = plots.write_plots(report, tmp_path, "r")
    assert sorted(p.name for p in written) == [
        "r-spread-latency.png",
        "r-spread-modes.png",
        "r-sync-latency.png",
        "r-sync-modes.png",
    ]
    sync = {
        **report,
        "runs": [r for r in RUNS if r["starts"] == "sync"],
        "capacity": caps["sync"],
    }
    _, bars = plots.modes_figure(sync).axes
    assert [p.get_height() for p in bars.patches] == [8, 1]  # type: ignore[attr-defined]


def test_a_server_that_will_not_start_ends_the_bench_with_what_was_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = ["--sessions", "1", "--modes", "on", "--starts", "sync", "--corpus", str(FIXTURES)]
    assert main(["bench", *argv, "--model", str(tmp_path / "no-model"), "--out", str(out)]) == 1
    assert "the server exited" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["runs"] == [] and "exited" in report["aborted"]
    assert report["input"]["source"] == str(FIXTURES)
    # the report names its CPU kind and its start pattern even when nothing was measured
    assert report["cpu"]["vector_extensions"] and report["cpu"]["model"] in report["cpu_kind"]
    assert report["starts"] == ["sync"]


# --- the CPU every number names (issue 20 item 5)

ZEN2_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni"  # an AVX2-only EPYC
SAPPHIRE_FLAGS = (
    "sse4_2 avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni "
    "amx_bf16 amx_tile amx_int8 avx512_fp16"
)


def cpuinfo(model: str, flags: str) -> str:
    return "".join(
        f"processor\t: {k}\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: {flags}\n\n" for k in range(2)
    )


def test_the_cpu_is_named_with_its_vector_extensions() -> None:
    model, flags = parse_cpuinfo(cpuinfo("AMD EPYC 7B12", ZEN2_FLAGS))
    assert model == "AMD EPYC 7B12"
    assert vector_extensions(flags) == "AVX2, FMA"
    _, flags = parse_cpuinfo(cpuinfo("Intel(R) Xeon(R) Platinum 8481C", SAPPHIRE_FLAGS))
    assert vector_extensions(flags) == (
        "AVX2, FMA, AVX-512 (F, CD, BW, DQ, VL, VNNI, BF16, FP16), AVX-VNNI, AMX (TILE, INT8, BF16)"
    )
    assert vector_extensions(frozenset({"sse4_2", "avx"})) == "SSE4.2, AVX"
    assert vector_extensions(frozenset()) == "none listed"


def test_machine_line_carries_the_cpu_kind(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(cpuinfo("AMD EPYC 7B12", ZEN2_FLAGS))
    assert machine(info).startswith("AMD EPYC 7B12 (AVX2, FMA), ")


def test_ctranslate2s_dispatch_is_read_from_its_log() -> None:
    log = (
        "[ctranslate2] [thread 1] [info] CPU: AuthenticAMD (SSE4.1=true, AVX=true, AVX2=true, AVX512=true)\n"
        "[ctranslate2] [thread 1] [info]  - Selected ISA: AVX2\n"
        "[ctranslate2] [thread 1] [info]  - Use Intel MKL: false\n"
        "[ctranslate2] [thread 1] [info]  - SGEMM backend: DNNL (packed: false)\n"
        "[ctranslate2] [thread 1] [info]  - GEMM_S8 backend: DNNL (packed: false, u8s8 preferred: true)\n"
        "[ctranslate2] [thread 1] [info]  - Selected compute type: int8_float32\n"
    )
    assert parse_ct2_log(log) == {
        "isa": "AVX2",
        "mkl": "false",
        "sgemm": "DNNL (packed: false)",
        "gemm_s8": "DNNL (packed: false, u8s8 preferred: true)",
        "compute_type": "int8_float32",
    }


def test_cpu_info_asks_ctranslate2_on_this_machine() -> None:
    info = cpu_info(model_dir("tiny.en"))
    ct2 = info["ctranslate2"]
    assert "int8" in ct2["compute_types"] and "error" not in ct2
    assert ct2["isa"] in {"GENERIC", "AVX", "AVX2", "AVX512", "NEON"}
    assert cpu_kind(info).endswith(f"; CTranslate2 ISA {ct2['isa']})")
    assert set(info["vector_flags"]) <= VECTOR_FLAGS
    assert cpu_info(model_dir(str(Path("/nonexistent/model"))))["ctranslate2"].get("isa") is None
