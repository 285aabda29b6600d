"""Translation as the sessions see it: cached, batched across sessions, one result per target.

Jobs from all sessions go through one :class:`MicroBatcher` whose group key is the (source, target) pair,
so each model call is one ``translate_batch`` for one pair. Only finals are translated (partials would
flicker), and the cache answers repeats without touching the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence

from streamer.pipeline.batcher import MicroBatcher
from streamer.pipeline.languages import normalize
from streamer.pipeline.mt import TranslationEngine
from streamer.pipeline.mt_cache import TranslationCache, cache_key


def run_mt_batch(engine: TranslationEngine, key: Hashable, texts: list[str]) -> list[str]:
    """The batcher's model call: one ``translate_batch`` for one (source, target) pair."""
    assert isinstance(key, tuple)
    source, target = key
    return engine.translate_batch(texts, source, target)


class TranslationService:
    def __init__(
        self,
        engine: TranslationEngine,
        batcher: MicroBatcher[str, str],
        cache: TranslationCache,
    ) -> None:
        self.engine = engine
        self.batcher = batcher
        self.cache = cache

    def supports(self, source: str | None, target: str) -> bool:
        if source is not None and normalize(source) == normalize(target):
            return True
        return self.engine.supports(source, target)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.engine.name,
            "sources": sorted(self.engine.source_languages()),
            "targets": sorted(self.engine.target_languages()),
        }

    async def translate(
        self, session_id: str, text: str, source: str, targets: Sequence[str]
    ) -> list[tuple[str, str]]:
        """Every target's translation of ``text``, in the order of ``targets``."""
        results = await asyncio.gather(*(self._one(session_id, text, source, t) for t in targets))
        return list(zip(targets, results, strict=True))

    async def _one(self, session_id: str, text: str, source: str, target: str) -> str:
        if normalize(source) == normalize(target) or not text.strip():
            return text
        key = cache_key(self.engine.name, source, target, text)
        cached = await self.cache.get(key)
        if cached is not None:
            return cached
        translated = await self.batcher.submit_final(session_id, (source, target), text)
        await self.cache.put(key, translated)
        return translated
