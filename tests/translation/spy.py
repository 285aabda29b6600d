"""``SpyEngine``: the bench's recording engine (every ``translate_batch`` call kept), with test knobs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from streamer_bench.bench_mt import MtCall, RecordingEngine

__all__ = ["MtCall", "SpyEngine"]


@dataclass
class SpyEngine(RecordingEngine):
    """A real translation engine with every call recorded (see ``RecordingEngine``), and knobs.

    ``delay``: a slow model (jobs queue behind it); ``fail``: raise instead of translating.
    """

    delay: float = 0.0
    fail: bool = False

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
        return super().translate_batch(texts, source, target, beam_size, max_decoding_length)

    def translations_of(self, text: str, target: str) -> set[str]:
        """Every output the model gave for ``text`` into ``target`` (a batch's padding may change it)."""
        return {
            out
            for call in self.calls
            if call.target == target
            for t, out in zip(call.texts, call.outputs, strict=True)
            if t == text
        }
