"""Translation as the sessions see it: cached, batched across sessions, one result per target.

Jobs from all sessions go through one :class:`MicroBatcher` whose group key is the (source, target) pair,
so each model call is one ``translate_batch`` for one pair. Only finals are translated (partials would
flicker), and the cache answers repeats without touching the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence

from streamer.errors import UnsupportedLanguageError
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
        """Every target's translation of ``text``, in the order of ``targets``.

        Raises:
            UnsupportedLanguageError: the model cannot translate from ``source`` (a detected language the
                session could not be checked against) into one of ``targets``.
        """
        # Refused here, not in the model thread: there it would count as a model failure and trip the
        # breaker, so one speaker of a language the model lacks would stop translation for every session.
        unsupported = [t for t in targets if not self.supports(source, t)]
        if unsupported:
            raise UnsupportedLanguageError(
                f"translation model {self.engine.name} cannot translate {source!r} into "
                + ", ".join(repr(t) for t in unsupported)
            )
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
