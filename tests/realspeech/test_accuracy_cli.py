"""``streamer bench --accuracy``: its options reach the accuracy bench, bad ones fail clearly and early."""

from __future__ import annotations

import pytest

from realspeech.streaming import CORPUS_DIR
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
