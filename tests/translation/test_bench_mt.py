"""``streamer bench-mt`` runs end to end on the synthetic model and reports the three paths per N."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main


def test_bench_mt_reports_every_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench-mt", "--sessions", "1,3", "--per-session", "4", "--repeat", "1", "--out", str(out)]
    assert main(argv) == 0

    table = capsys.readouterr().out
    assert "random weights" in table  # says plainly that it measured overhead, not a real model
    runs = json.loads(out.read_text())["runs"]
    assert [(r["sessions"], r["path"]) for r in runs] == [
        (n, path) for n in (1, 3) for path in ("server", "engine", "direct")
    ]
    for r in runs:
        assert r["sentences"] == r["sessions"] * 4
        assert r["sentences_per_s"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0
    # the replays use the server path's own batches
    for n in (1, 3):
        batches = {r["path"]: r["batches"] for r in runs if r["sessions"] == n}
        assert batches["server"] == batches["engine"] == batches["direct"]


def test_bench_mt_refuses_a_pair_the_model_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench-mt", "--sessions", "1", "--per-session", "1", "--target", "fr"]) == 2
    assert "cannot translate en -> fr" in capsys.readouterr().err
