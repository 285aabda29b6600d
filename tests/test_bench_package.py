"""``streamer bench`` runs from the installed ``streamer_bench`` package; without it, says what to install."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest
from support import FIXTURES

import streamer_bench
from streamer.cli import main
from streamer_bench.bench import DATA, load_speech

ROOT = Path(__file__).resolve().parent.parent


def test_the_bench_reads_its_speech_from_its_own_package() -> None:
    package = Path(streamer_bench.__file__).resolve().parent
    assert DATA.resolve().is_relative_to(package)
    assert not DATA.resolve().is_relative_to(FIXTURES.resolve())
    speech = load_speech()
    assert len(speech) == 3
    for pcm, text in speech:
        assert len(pcm) > 16000 * 2  # over a second of 16 kHz PCM16
        assert text.endswith(".")


def test_the_bench_refuses_audio_at_another_rate(tmp_path: Path) -> None:
    for name in ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav"):
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(bytes(1600))
    (tmp_path / "transcripts.json").write_text((DATA / "transcripts.json").read_text())
    with pytest.raises(ValueError, match="16 kHz"):
        load_speech(tmp_path)


@pytest.mark.parametrize("command", ["bench", "bench-mt"])
def test_without_the_bench_package_the_cli_says_what_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes the import fail as if the package were not installed (every module the CLI
    # imports: an earlier test may have imported one, and a cached module would be found)
    for module in ("streamer_bench.entry", "streamer_bench.bench", "streamer_bench.bench_mt"):
        monkeypatch.setitem(sys.modules, module, None)
    assert main([command]) == 2
    assert "pip install 'streamer[bench]'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_built_package_carries_the_bench_data(tmp_path: Path) -> None:
    """What setuptools puts in a wheel or the image: the bench's data, and no tools in ``streamer``."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "-d",
            str(tmp_path),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    for name in ("en_utt1.wav", "en_utt2.wav", "en_utt3.wav", "transcripts.json"):
        assert (tmp_path / "streamer_bench" / "data" / name).is_file()
    assert (tmp_path / "streamer_bench" / "bench.py").is_file()
    # the server's own calibration sentence ships with the server
    assert (tmp_path / "streamer" / "assets" / "calibration_en.wav").is_file()
    product = {p.name for p in (tmp_path / "streamer").iterdir()}
    assert not product & {"bench.py", "bench_mt.py", "wer.py"}
