"""The generated-speech cache every corpus builder shares (``streamer_bench.corpus.in_cache``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer_bench.corpus import in_cache


def _manifest(out: Path, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(text)


def _read(root: Path) -> str:
    return (root / "manifest.json").read_text()


def test_built_once_then_read_from_the_cache(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(out: Path) -> None:
        builds.append(out)
        _manifest(out, "first")

    target = tmp_path / "cache" / "key"
    assert in_cache(target, build, _read) == "first"
    assert in_cache(target, build, _read) == "first"
    assert len(builds) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["key"]


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def build(out: Path) -> None:
        _manifest(out, "half")
        raise RuntimeError("synthesis failed")

    target = tmp_path / "key"
    with pytest.raises(RuntimeError):
        in_cache(target, build, _read)
    assert list(tmp_path.iterdir()) == []


def test_another_builder_that_finished_first_wins_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "key"

    def build(out: Path) -> None:
        _manifest(out, "mine")
        _manifest(target, "theirs")  # another process renamed its build into place meanwhile

    assert in_cache(target, build, _read) == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]
