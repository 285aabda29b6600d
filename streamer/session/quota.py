"""Charging a session's audio to its key's daily quota, in ~1 s steps (not one backend call per frame)."""

from __future__ import annotations

import logging

from streamer.errors import RateLimitedError
from streamer.guards.keys import DEMO_KEY_ID, KeyRecord
from streamer.services import Services
from streamer.state.backend import BackendUnavailableError, QuotaDecision

log = logging.getLogger(__name__)

CHARGE_STEP_S = 1.0
_UNKNOWN = KeyRecord(key_id="", key_hash="", name="", tier="", created_at=0.0)  # lookup failed open


class AudioQuota:
    def __init__(self, services: Services, key_id: str) -> None:
        self._services = services
        self._key_id = key_id
        self._uncharged = 0.0
        self._limit: float | None = None
        self._limit_known = False

    async def _stored_key(self) -> KeyRecord | None:
        return await self._services.backend.get_key(self._key_id)

    async def _daily_limit(self) -> float | None:
        if self._key_id == DEMO_KEY_ID:  # all demo visitors together
            return self._services.settings.demo_audio_s_per_day
        if not self._limit_known:
            static = [r for r in self._services.keys.records if r.key_id == self._key_id]
            unknown: KeyRecord | None = _UNKNOWN
            record = static[0] if static else await self._services.state.call(self._stored_key, unknown)
            if record is _UNKNOWN:
                return None  # the backend is down (failing open): look again at the next charge
            self._limit = record.audio_limit_s if record is not None else None
            self._limit_known = True
        return self._limit

    async def charge(self, seconds: float) -> None:
        """Count ``seconds`` of accepted audio; refuses once the key's daily allowance is used up."""
        self._uncharged += seconds
        if self._uncharged < CHARGE_STEP_S:
            return
        amount, self._uncharged = self._uncharged, 0.0
        limit = await self._daily_limit()
        services = self._services
        decision = await services.state.call(
            lambda: services.backend.charge_audio(self._key_id, amount, limit),
            QuotaDecision(allowed=True, limit=None, remaining=None, reset_s=0.0),
        )
        if not decision.allowed:
            self._uncharged = amount - seconds  # what came before this frame was accepted: settle() it
            raise RateLimitedError(
                "this key's daily audio quota is used up",
                code="audio_quota_exceeded",
                retry_after=decision.reset_s,
            )

    async def remaining(self) -> float | None:
        """Audio seconds left to the key today; None when it has no daily limit (failing open: as unused)."""
        limit = await self._daily_limit()
        if limit is None:
            return None
        services = self._services
        used = await services.state.call(lambda: services.backend.audio_used(self._key_id), 0.0)
        return max(0.0, limit - used - self._uncharged)

    async def settle(self) -> None:
        """The connection is over: charge the audio it sent on credit (less than one step).

        That audio was accepted already, so it is recorded even past the limit (the key's next charge is
        then refused); otherwise every session shorter than a step would be free.
        """
        amount, self._uncharged = self._uncharged, 0.0
        if amount <= 0:
            return
        try:
            await self._services.backend.charge_audio(self._key_id, amount, None)
        except BackendUnavailableError:
            log.warning("state backend unavailable; %.2fs of audio not charged", amount)
