"""The window-policy tool: its policies give the windows they say, and the server's code is restored."""

from __future__ import annotations

import pytest
from support import FIXTURES

from streamer.pipeline import asr
from streamer_bench.window_loops import policy_frames, sentences, windows


def test_policies_give_the_windows_they_name() -> None:
    second = 16000
    buckets, tight, floor5 = policy_frames("buckets"), policy_frames("tight:1"), policy_frames("atleast5:1")
    assert buckets(int(1.5 * second), True) == 500  # the server's 5 s bucket
    assert tight(int(1.5 * second), True) == 300  # 1.5 s + 1 s, rounded up to 3 s
    assert tight(int(0.2 * second), True) == 200  # never under 2 s
    assert floor5(int(1.5 * second), True) == 500 and floor5(int(6.2 * second), True) == 800
    assert tight(int(40 * second), True) == asr.FULL_WINDOW_FRAMES
    assert tight(second, False) == asr.FULL_WINDOW_FRAMES  # the fallback keeps the full window
    with pytest.raises(ValueError, match="window policy"):
        policy_frames("tight")


def test_the_policy_holds_only_inside_the_block() -> None:
    original = asr.bucket_frames
    with windows("tight:0.5"):
        assert asr.bucket_frames(16000, True) == 200
    assert asr.bucket_frames is original
    with pytest.raises(RuntimeError), windows("tight:1"):
        raise RuntimeError("a decode failed")
    assert asr.bucket_frames is original


def test_sentences_are_cut_from_the_corpus_with_their_text() -> None:
    cut = sentences(FIXTURES / "corpus", {"clean"})
    assert len(cut) == 6 and cut[0][0] == "Please, keep your voice down."
    assert all(1.0 < audio.size / 16000 < 8.0 for _, audio in cut)
    assert sentences(FIXTURES / "corpus", {"tel8k"}) == []  # 8 kHz items are not decoded
