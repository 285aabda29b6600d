"""Machine translation with CTranslate2 conversions of NLLB-200, M2M100 and Marian (OPUS-MT) models.

The engine is synchronous and never touches asyncio: the server's batcher calls ``translate_batch`` from its
dedicated model thread, one call per (source, target) group. Languages are ISO 639-1 codes at this API;
each family's own language tokens stay inside this module.

A model directory holds ``model.bin``, the CTranslate2 vocabulary files and the SentencePiece model(s).
Marian models are one language pair each and their files do not say which, so the operator states it in a
``streamer.json`` sidecar (``{"family": "marian", "source_lang": "en", "target_langs": ["es"]}``) or names the
directory after the OPUS-MT model (``opus-mt-en-es``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import ctranslate2
import sentencepiece
from pydantic import BaseModel, ConfigDict, ValidationError

from streamer import errors
from streamer.pipeline import languages

log = logging.getLogger(__name__)

SIDECAR = "streamer.json"
_EOS = "</s>"
_SPM_NAMES = ("sentencepiece.bpe.model", "spm.128k.model", "sentencepiece.model")
_NLLB_TOKENS = frozenset(languages.NLLB_CODES.values())
_M2M100_TOKENS = frozenset(languages.M2M100_CODES.values())
_MARIAN_MARKER = re.compile(r">>([a-z]{2})<<")
_OPUS_PAIR = re.compile(r"opus-mt-(?:tc-big-)?([a-z]{2})-([a-z]{2})(?![a-z])")


class ModelFamily(StrEnum):
    """How a model names languages, which decides how its inputs and outputs are framed."""

    NLLB = "nllb"
    M2M100 = "m2m100"
    MARIAN = "marian"

    @classmethod
    def _missing_(cls, value: object) -> ModelFamily | None:
        # Operators write "NLLB" or "Marian" in streamer.json as often as the canonical lower case.
        if isinstance(value, str):
            return next((member for member in cls if member.value == value.lower()), None)
        return None


class ModelLoadError(errors.ModelNotFoundError):
    """A translation model directory that cannot be loaded; the message names the path and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"cannot load translation model {path}: {problem}")
        self.path = path


class UnsupportedLanguageError(errors.UnsupportedLanguageError):
    """The model cannot translate from or into ``language`` (an ISO 639-1 code)."""

    def __init__(self, language: str, message: str) -> None:
        super().__init__(message)
        self.language = language


@dataclass(frozen=True)
class _Target:
    """How a target language is named to the model: tokens before the source text, the target prefix."""

    source_tokens: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()


class ModelSidecar(BaseModel):
    """The optional ``streamer.json`` next to a model: what its files cannot say about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: ModelFamily | None = None
    source_lang: str | None = None
    target_langs: tuple[str, ...] = ()


class TranslationEngine(Protocol):
    """What the server needs from a translator, so tests can hand it a fake."""

    @property
    def name(self) -> str: ...

    def source_languages(self) -> frozenset[str]: ...

    def target_languages(self) -> frozenset[str]: ...

    def supports(self, source: str | None, target: str) -> bool: ...

    def translate_batch(
        self,
        texts: Sequence[str],
        source: str,
        target: str,
        beam_size: int = 1,
        max_decoding_length: int = 256,
    ) -> list[str]: ...


def read_sidecar(model_dir: Path) -> ModelSidecar:
    """Read ``streamer.json`` from ``model_dir``; an empty sidecar when there is none."""
    path = model_dir / SIDECAR
    if not path.is_file():
        return ModelSidecar()
    try:
        return ModelSidecar.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as e:
        raise ModelLoadError(model_dir, f"invalid {SIDECAR}: {e}") from e


def read_vocabulary(model_dir: Path, side: str = "source") -> list[str]:
    """The CTranslate2 vocabulary of one side (``"source"`` or ``"target"``), falling back to the shared one.

    Conversions write ``*_vocabulary.json`` (CTranslate2 >= 3) or ``*_vocabulary.txt`` (older ones).
    """
    for stem in (f"{side}_vocabulary", "shared_vocabulary"):
        json_path, txt_path = model_dir / f"{stem}.json", model_dir / f"{stem}.txt"
        try:
            if json_path.is_file():
                tokens = json.loads(json_path.read_text(encoding="utf-8"))
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ModelLoadError(model_dir, f"{json_path.name} is not a list of tokens")
                return tokens
            if txt_path.is_file():
                # One token per line; split on "\n" only, as CTranslate2 does (tokens may hold other breaks).
                return txt_path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(model_dir, f"unreadable vocabulary: {e}") from e
    raise ModelLoadError(model_dir, f"no shared_vocabulary.json/.txt or {side}_vocabulary.json/.txt")


def detect_family(model_dir: Path) -> ModelFamily:
    """Tell the model family from the files in ``model_dir`` (the sidecar's ``family`` wins)."""
    sidecar = read_sidecar(model_dir)
    if sidecar.family is not None:
        return sidecar.family
    if (model_dir / "source.spm").is_file() and (model_dir / "target.spm").is_file():
        return ModelFamily.MARIAN
    vocabulary = frozenset(read_vocabulary(model_dir, "source"))
    if vocabulary & _NLLB_TOKENS:
        return ModelFamily.NLLB
    if vocabulary & _M2M100_TOKENS:
        return ModelFamily.M2M100
    if _OPUS_PAIR.search(model_dir.name):
        return ModelFamily.MARIAN
    raise ModelLoadError(model_dir, f'cannot tell the model family; set "family" in {SIDECAR}')


class BatchTranslator(Protocol):
    """The part of ``ctranslate2.Translator`` this module calls (untyped upstream)."""

    def translate_batch(self, source: list[list[str]], **options: Any) -> Any: ...


class CT2Translator:
    """A CTranslate2 translation model and its SentencePiece tokenizer(s), addressed with ISO 639-1 codes.

    Loading is slow and blocking: construct it in a worker thread. ``translate_batch`` is meant to be
    called from one model thread; CTranslate2 parallelism is set with ``inter_threads``/``intra_threads``.
    ``translator`` replaces the ``ctranslate2.Translator`` the model directory would load (the bench passes
    one that records the calls, wrapping :attr:`translator` of an engine already loaded).
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        compute_type: str = "int8",
        inter_threads: int = 1,
        intra_threads: int = 0,
        family: ModelFamily | None = None,
        translator: BatchTranslator | None = None,
    ) -> None:
        path = Path(model_dir)
        self.path = path
        if not (path / "model.bin").is_file():
            raise ModelLoadError(path, "model.bin is missing (expected a CTranslate2 conversion)")
        self.name = path.name
        self.family = family if family is not None else detect_family(path)
        source_vocab = frozenset(read_vocabulary(path, "source"))
        target_vocab = frozenset(read_vocabulary(path, "target"))
        # ISO code -> the tokens that name the language to the model.
        self._sources: dict[str, tuple[str, ...]]
        self._targets: dict[str, _Target]
        if self.family is ModelFamily.MARIAN:
            self._source_sp = _load_spm(path, ("source.spm",))
            self._target_sp = _load_spm(path, ("target.spm",))
            self._sources, self._targets = _marian_languages(path, source_vocab)
        else:
            self._source_sp = self._target_sp = _load_spm(path, _SPM_NAMES)
            table = languages.NLLB_CODES if self.family is ModelFamily.NLLB else languages.M2M100_CODES
            self._sources = {iso: (tok,) for iso, tok in table.items() if tok in source_vocab}
            self._targets = {iso: _Target(prefix=(tok,)) for iso, tok in table.items() if tok in target_vocab}
        if translator is not None:
            self.translator: BatchTranslator = translator
            return
        try:
            self.translator = ctranslate2.Translator(
                str(path),
                device=device,
                compute_type=compute_type,
                inter_threads=inter_threads,
                intra_threads=intra_threads,
            )
        except (RuntimeError, ValueError) as e:
            raise ModelLoadError(path, f"CTranslate2 could not load it: {e}") from e
        log.info(
            "loaded translation model %s (%s) on %s/%s", self.name, self.family.value, device, compute_type
        )

    def source_languages(self) -> frozenset[str]:
        """ISO 639-1 codes this model translates from."""
        return frozenset(self._sources)

    def target_languages(self) -> frozenset[str]:
        """ISO 639-1 codes this model translates into."""
        return frozenset(self._targets)

    def supports(self, source: str | None, target: str) -> bool:
        """Whether ``source`` -> ``target`` can be translated; ``source=None`` asks about the target only."""
        if languages.normalize(target) not in self._targets:
            return False
        return source is None or languages.normalize(source) in self._sources

    def translate_batch(
        self,
        texts: Sequence[str],
        source: str,
        target: str,
        beam_size: int = 1,
        max_decoding_length: int = 256,
    ) -> list[str]:
        """Translate ``texts`` from ``source`` into ``target`` in one model call; one result per text, in
        order. Blank texts come back as ``""`` without reaching the model.

        Raises:
            UnsupportedLanguageError: the model does not have ``source`` or ``target``.
        """
        src, tgt = self._check_pair(source, target)
        results = [""] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return results
        head = [*self._targets[tgt].source_tokens, *self._sources[src]]
        prefix = list(self._targets[tgt].prefix)
        pieces: list[list[str]] = self._source_sp.encode([texts[i].strip() for i in todo], out_type=str)
        outputs = self.translator.translate_batch(
            [[*head, *text_pieces, _EOS] for text_pieces in pieces],
            target_prefix=[prefix] * len(todo) if prefix else None,
            beam_size=beam_size,
            max_decoding_length=max_decoding_length,
        )
        for i, output in zip(todo, outputs, strict=True):
            tokens: list[str] = output.hypotheses[0]
            # CTranslate2 returns the target prefix as part of the hypothesis.
            if prefix and tokens[: len(prefix)] == prefix:
                tokens = tokens[len(prefix) :]
            results[i] = str(self._target_sp.decode_pieces(tokens))
        return results

    def _check_pair(self, source: str, target: str) -> tuple[str, str]:
        src, tgt = languages.normalize(source), languages.normalize(target)
        if tgt not in self._targets:
            message = f"translation model {self.name} cannot translate into {target!r}"
            raise UnsupportedLanguageError(target, message)
        if src not in self._sources:
            message = f"translation model {self.name} cannot translate from {source!r}"
            raise UnsupportedLanguageError(source, message)
        return src, tgt


def _load_spm(model_dir: Path, names: Sequence[str]) -> Any:
    """Load the first of ``names`` found in ``model_dir`` as a SentencePiece processor."""
    file = next((model_dir / name for name in names if (model_dir / name).is_file()), None)
    if file is None:
        raise ModelLoadError(model_dir, f"no SentencePiece model (looked for {', '.join(names)})")
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(file))
    except (OSError, RuntimeError) as e:
        raise ModelLoadError(model_dir, f"{file.name} is not a SentencePiece model: {e}") from e


def _marian_languages(
    model_dir: Path, source_vocab: frozenset[str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, _Target]]:
    """A Marian model's pair: from the sidecar, else the ``opus-mt-xx-yy`` directory name, else (targets
    only) the ``>>xx<<`` markers of a multi-target model."""
    sidecar = read_sidecar(model_dir)
    pair = _OPUS_PAIR.search(model_dir.name)
    source = sidecar.source_lang or (pair.group(1) if pair else None)
    marked = sorted(m.group(1) for tok in source_vocab if (m := _MARIAN_MARKER.fullmatch(tok)))
    targets = list(sidecar.target_langs) or ([pair.group(2)] if pair else marked)
    if source is None or not targets:
        raise ModelLoadError(
            model_dir,
            f'a Marian model needs its language pair: write {SIDECAR} like {{"family": "marian", '
            f'"source_lang": "en", "target_langs": ["es"]}} or name the directory like opus-mt-en-es',
        )
    # Multi-target OPUS-MT models take the target language as a ">>es<<" token before the source text.
    markers = {code: languages.marian_code(code) for code in map(languages.normalize, targets)}
    framing = {code: _Target(source_tokens=(m,) if m in source_vocab else ()) for code, m in markers.items()}
    return {languages.normalize(source): ()}, framing
