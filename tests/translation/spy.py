"""``SpyEngine``: the real translation model with every ``translate_batch`` call recorded, and knobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamer.pipeline.mt import TranslationEngine


@dataclass(frozen=True)
class MtCall:
    source: str
    target: str
    texts: list[str]
    outputs: list[str]


@dataclass
class SpyEngine:
    """A ``TranslationEngine`` that runs a real one and records every call.

    ``delay``: a slow model (jobs queue behind it); ``fail``: raise instead of translating. Calls arrive
    on the batcher's thread, hence the lock.
    """

    engine: TranslationEngine
    delay: float = 0.0
    fail: bool = False
    calls: list[MtCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.engine.name

    def source_languages(self) -> frozenset[str]:
        return self.engine.source_languages()

    def target_languages(self) -> frozenset[str]:
        return self.engine.target_languages()

    def supports(self, source: str | None, target: str) -> bool:
        return self.engine.supports(source, target)

    def translate_batch(
        self,
        texts: Sequence[str],
        source: str,
        target: str,
        beam_size: int = 1,
        max_decoding_length: int = 256,
    ) -> list[str]:
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("fake translation failure")
        outputs = self.engine.translate_batch(texts, source, target, beam_size, max_decoding_length)
        with self._lock:
            self.calls.append(MtCall(source, target, list(texts), outputs))
        return outputs

    def translations_of(self, text: str, target: str) -> set[str]:
        """Every output the model gave for ``text`` into ``target`` (a batch's padding may change it)."""
        return {
            out
            for call in self.calls
            if call.target == target
            for t, out in zip(call.texts, call.outputs, strict=True)
            if t == text
        }
