"""``streamer bench --accuracy``: its options reach the accuracy bench, bad ones fail clearly and early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from realspeech.streaming import CORPUS_DIR, committed
from streamer.cli import build_parser
from streamer_bench import accuracy


def test_options_after_accuracy_belong_to_the_accuracy_bench() -> None:
    args = build_parser().parse_args(["bench", "--accuracy", "--sessions", "1", "--sentences", "6"])
    assert args.accuracy == ["--sessions", "1", "--sentences", "6"]
    plain = build_parser().parse_args(["bench"])
    assert plain.accuracy is None
    assert args.sessions == plain.sessions  # the latency bench's own option is untouched


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://127.0.0.1:9"], "--url needs --api-key"),
        (["--sessions", "0"], "sessions must be positive"),
        (["--sessions", "1", "--speed", "0"], "--speed > 0"),
        (["--corpus", "/nonexistent/corpus"], "no corpus"),
    ],
)
def test_bad_options_fail_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMER_API_KEY", raising=False)
    assert accuracy.main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_conditions_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.main(["--corpus", str(CORPUS_DIR), "--conditions", "underwater"]) == 2
    assert "underwater" in capsys.readouterr().err


def test_the_table_has_a_row_per_run_and_rates_in_percent() -> None:
    row = {"condition": "snr20", "sessions": 16, "refused": 2, "sentences": 84, "lost": 1, "merged": 0}
    row |= {"split": 3, "stray_finals": 0, "unrecognized_warnings": 1}
    row |= {"wer": 0.0826, "offline_wer": 0.07, "wer_vs_offline": None}
    clip = {"item": "nonspeech_hum", "sessions": 16, "refused": 0, "finals": 2}
    lines = accuracy.markdown_table({"runs": [row], "nonspeech": [clip]}).splitlines()
    assert lines[2] == "| snr20 | 16 | 2 | 84 | 1 | 0 | 3 | 0 | 1 | 8.3 % | 7.0 % | – |"
    assert lines[-1] == "| nonspeech_hum | 16 | 0 | 2 |"


@pytest.mark.slow
def test_the_bench_streams_a_corpus_through_its_own_server(tmp_path: Path) -> None:
    out = tmp_path / "accuracy.json"
    argv = ["--corpus", str(CORPUS_DIR), "--conditions", "snr20", "--sessions", "1", "--speed", "8"]
    rc = accuracy.main([*argv, "--no-offline", "--out", str(out)])
    report = json.loads(out.read_text())
    [run] = report["runs"]
    assert (run["condition"], run["sessions"], run["refused"], run["sentences"]) == ("snr20", 1, 0, 3)
    assert run["finals"] >= 1 and run["wer"] is not None and run["offline_wer"] is None
    assert [d["text"] for d in run["detail"]] == [s.text for s in committed().item("snr20").sentences]
    assert sorted(r["item"] for r in report["nonspeech"]) == [
        f"nonspeech_{k}" for k in ("breaths", "hum", "music")
    ]
    failed = run["lost"] + sum(r["finals"] for r in report["nonspeech"])
    assert rc == (1 if failed else 0)


def test_the_detail_counts_what_each_session_heard() -> None:
    item = committed().item("snr20")

    def heard(texts: list[str]) -> list[dict[str, object]]:
        return [
            {"type": "transcript.final", "text": t, "audio_start_ms": s.start_ms, "audio_end_ms": s.end_ms}
            for t, s in zip(texts, item.sentences, strict=True)
        ]

    right = [s.text for s in item.sentences]
    wrong = [right[0], "something else", right[2]]
    rows = accuracy.detail([heard(right), heard(wrong), heard(right)], item, None)
    assert [r["finals"] for r in rows] == [[t] for t in right]  # the first session's
    assert rows[0]["variants"] == {right[0]: 3}
    assert rows[1]["variants"] == {right[1]: 2, "something else": 1}
    # one session: no variants to count
    assert "variants" not in accuracy.detail([heard(right)], item, None)[0]


def test_the_short_commands_are_an_input_of_the_accuracy_bench(capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.build_parser().parse_args(["--input", "commands"]).input == "commands"
    assert accuracy.build_parser().parse_args([]).input == "corpus"
    with pytest.raises(SystemExit):
        accuracy.build_parser().parse_args(["--input", "podcasts"])
    assert "podcasts" in capsys.readouterr().err
