"""One key's crafted audio must not take the model from the other keys (issue 23, item 4).

Reversed-speech fragments failed nearly every first decode and ran the whole fallback ladder (beam 5,
then five temperatures) on each utterance: ten times the model time of real speech. Now the ladder is
paid from a budget per session and per key.
"""

from __future__ import annotations

from streamer.guards.load import FallbackBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fallback_budget_is_per_session_and_per_key_and_refills() -> None:
    clock = Clock()
    budget = FallbackBudget(clock, window_s=60.0)
    ratio = 0.5
    budget.record_speech("k", "s1", 2.0)  # 1 s of grace + 0.5 x 2 s of speech
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 1.5)
    assert budget.allows("k", "s1", ratio)
    budget.charge("k", "s1", 0.6)
    assert not budget.allows("k", "s1", ratio)  # the session spent 2.1 of its 2.0
    # another session of the key has its own budget, and the key's: 1 + 0.5 x 3 s - 2.1 = 0.4 left
    budget.record_speech("k", "s2", 1.0)
    assert budget.allows("k", "s2", ratio)
    budget.charge("k", "s2", 0.5)
    assert not budget.allows("k", "s2", ratio)  # its own 1.5 is not spent, the key's is
    assert budget.allows("other", "s3", ratio)  # another key is not charged for it
    clock.now += 61.0  # spending older than the window is forgotten
    assert budget.allows("k", "s1", ratio) and budget.allows("k", "s2", ratio)
