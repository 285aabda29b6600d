"""The Redis :class:`~streamer.state.backend.StateBackend`: quotas shared by every server instance.

Each check-and-update is one Lua script, so it is atomic across instances. Scripts read the clock with
Redis ``TIME``, never the caller's clock: instances whose clocks disagree still agree on when a slot
expires and which UTC day it is. Every script touches only the keys it is passed (cluster-safe).

Keys (under ``key_prefix``): ``sessions:<key_id>`` a ZSET of session id -> expiry (ms); ``audio:<key_id>``
a hash {day, used}; ``jti:<jti>`` a string with a TTL; ``key:<key_id>`` a hash per key record and
``keys`` the set of key ids; ``session:<session_id>`` a hash {state, owner} and
``session:<session_id>:messages`` a list (a session's durable state); ``instance:<id>`` an instance's
heartbeat (a string with a TTL).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from streamer.guards.keys import KeyRecord
from streamer.state import redis_scripts as scripts
from streamer.state.backend import (
    AUDIO_EPSILON,
    BackendUnavailableError,
    Claim,
    QuotaDecision,
    SessionRecord,
    check_charge,
    check_keep,
    check_limit,
    check_ttl,
)

__all__ = ["RedisBackend"]


@contextlib.contextmanager
def _unavailable_on_error(op: str) -> Iterator[None]:
    """Turn "cannot reach Redis" into BackendUnavailableError; real errors (bad script, ...) pass."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise BackendUnavailableError(f"redis {op} failed: {type(e).__name__}: {e}") from e


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def record_to_fields(rec: KeyRecord) -> dict[EncodableT, EncodableT]:
    """A key record as a flat Redis hash (None stored as the empty string)."""
    return {
        "key_id": rec.key_id,
        "key_hash": rec.key_hash,
        "name": rec.name,
        "tier": rec.tier,
        "created_at": repr(rec.created_at),
        "revoked": "1" if rec.revoked else "0",
        "max_sessions": _opt(rec.max_sessions),
        "audio_seconds_per_day": _opt(rec.audio_seconds_per_day),
    }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def record_from_fields(raw: Mapping[Any, Any]) -> KeyRecord:
    """The inverse of :func:`record_to_fields` (accepts bytes or str, as a client may return either)."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    max_sessions = fields.get("max_sessions", "")
    audio = fields.get("audio_seconds_per_day", "")
    return KeyRecord(
        key_id=fields["key_id"],
        key_hash=fields["key_hash"],
        name=fields["name"],
        tier=fields["tier"],
        created_at=float(fields["created_at"]),
        revoked=fields.get("revoked") == "1",
        max_sessions=int(max_sessions) if max_sessions else None,
        audio_seconds_per_day=float(audio) if audio else None,
    )


class RedisBackend:
    """A :class:`StateBackend` on Redis (``redis.asyncio``); see the module docstring for the layout.

    Timeouts are short and retries few so that an outage surfaces as BackendUnavailableError within about
    a second, for the edge's fail-open/fail-closed policy, instead of stalling every request.
    """

    def __init__(
        self,
        url: str,
        key_prefix: str = "streamer:",
        *,
        socket_timeout_s: float = 0.5,
        connect_timeout_s: float = 0.5,
        retries: int = 1,
    ) -> None:
        self.key_prefix = key_prefix
        self.safe_url = _redact(url)
        self._redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            # One immediate retry covers a pooled connection that a Redis restart left dead.
            retry=Retry(NoBackoff(), retries),
        )
        self._acquire = self._redis.register_script(scripts.ACQUIRE)
        self._refresh = self._redis.register_script(scripts.REFRESH)
        self._active = self._redis.register_script(scripts.ACTIVE)
        self._charge = self._redis.register_script(scripts.CHARGE)
        self._audio_used = self._redis.register_script(scripts.AUDIO_USED)
        self._revoke = self._redis.register_script(scripts.REVOKE)
        self._save_state = self._redis.register_script(scripts.SAVE_STATE)
        self._claim_state = self._redis.register_script(scripts.CLAIM_STATE)
        self._drop_state = self._redis.register_script(scripts.DROP_STATE)

    def _key(self, *parts: str) -> str:
        return self.key_prefix + ":".join(parts)

    async def ping(self) -> None:
        """Raise BackendUnavailableError unless Redis answers."""
        with _unavailable_on_error("ping"):
            await self._redis.ping()

    async def acquire_session(
        self, key_id: str, session_id: str, limit: int | None, ttl_s: float
    ) -> QuotaDecision:
        """Hold a slot for ``session_id`` if fewer than ``limit`` are held (re-acquiring refreshes)."""
        check_ttl(ttl_s)
        check_limit(limit)
        args: list[EncodableT] = [session_id, -1 if limit is None else limit, _ms(ttl_s)]
        with _unavailable_on_error("acquire_session"):
            allowed, held, reset_ms = await self._acquire(keys=[self._key("sessions", key_id)], args=args)
        remaining = None if limit is None else max(0, limit - int(held))
        return QuotaDecision(bool(allowed), limit, remaining, int(reset_ms) / 1000)

    async def refresh_session(self, key_id: str, session_id: str, ttl_s: float) -> bool:
        """Extend a held slot's life to ``ttl_s`` from now; a slot already expired stays gone (False)."""
        check_ttl(ttl_s)
        with _unavailable_on_error("refresh_session"):
            held = await self._refresh(keys=[self._key("sessions", key_id)], args=[session_id, _ms(ttl_s)])
        return bool(held)

    async def release_session(self, key_id: str, session_id: str) -> None:
        """Give a slot back (idempotent)."""
        with _unavailable_on_error("release_session"):
            await self._redis.zrem(self._key("sessions", key_id), session_id)

    async def active_sessions(self, key_id: str) -> int:
        """Slots held now."""
        with _unavailable_on_error("active_sessions"):
            return int(await self._active(keys=[self._key("sessions", key_id)]))

    async def charge_audio(self, key_id: str, seconds: float, daily_limit: float | None) -> QuotaDecision:
        """Add ``seconds`` to today's (UTC, by Redis time) usage unless that would pass ``daily_limit``."""
        check_charge(seconds, daily_limit)
        limit = -1.0 if daily_limit is None else float(daily_limit)
        args: list[EncodableT] = [repr(float(seconds)), repr(limit), repr(AUDIO_EPSILON)]
        with _unavailable_on_error("charge_audio"):
            allowed, used, reset_ms = await self._charge(keys=[self._key("audio", key_id)], args=args)
        remaining = None if daily_limit is None else max(0.0, daily_limit - float(used))
        return QuotaDecision(bool(allowed), daily_limit, remaining, int(reset_ms) / 1000)

    async def audio_used(self, key_id: str) -> float:
        """Audio seconds charged today (UTC, by Redis time)."""
        with _unavailable_on_error("audio_used"):
            return float(await self._audio_used(keys=[self._key("audio", key_id)]))

    async def consume_jti(self, jti: str, ttl_s: float) -> bool:
        """True the first time ``jti`` is seen by any instance within ``ttl_s``; False on any replay."""
        check_ttl(ttl_s)
        with _unavailable_on_error("consume_jti"):
            return bool(await self._redis.set(self._key("jti", jti), "1", nx=True, px=_ms(ttl_s)))

    async def put_key(self, rec: KeyRecord) -> None:
        """Store (or replace) a key record."""
        with _unavailable_on_error("put_key"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key("key", rec.key_id), mapping=record_to_fields(rec))
                pipe.sadd(self._key("keys"), rec.key_id)
                await pipe.execute()

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The record for ``key_id``, revoked or not; None if unknown."""
        with _unavailable_on_error("get_key"):
            fields = await self._redis.hgetall(self._key("key", key_id))
        return record_from_fields(fields) if fields else None

    async def list_keys(self) -> list[KeyRecord]:
        """All stored records, oldest first."""
        with _unavailable_on_error("list_keys"):
            key_ids = await self._redis.smembers(self._key("keys"))
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id in sorted(_text(k) for k in key_ids):
                    pipe.hgetall(self._key("key", key_id))
                rows: list[Any] = await pipe.execute()
        records = [record_from_fields(row) for row in rows if row]
        return sorted(records, key=lambda r: (r.created_at, r.key_id))

    async def revoke_key(self, key_id: str) -> bool:
        """Mark a key revoked; False if there is no such key."""
        with _unavailable_on_error("revoke_key"):
            return bool(await self._revoke(keys=[self._key("key", key_id)]))

    async def beat(self, instance_id: str, ttl_s: float) -> None:
        """This instance is alive for ``ttl_s`` more seconds (its claims on sessions hold that long)."""
        check_ttl(ttl_s)
        with _unavailable_on_error("beat"):
            await self._redis.set(self._key("instance", instance_id), "1", px=_ms(ttl_s))

    def _state_keys(self, session_id: str) -> list[str]:
        return [self._key("session", session_id), self._key("session", session_id, "messages")]

    async def save_session_state(
        self,
        session_id: str,
        owner: str,
        state: str,
        append: Sequence[str],
        keep: int,
        ttl_s: float,
        *,
        release: bool = False,
    ) -> bool:
        """Write ``state`` and append ``append`` (keeping the last ``keep`` messages) if ``owner`` holds the
        session or it does not exist yet; ``release`` leaves it parked. One round trip (a script)."""
        check_ttl(ttl_s)
        check_keep(keep)
        args: list[EncodableT] = [owner, state, _ms(ttl_s), keep, "1" if release else "0", *append]
        with _unavailable_on_error("save_session_state"):
            return bool(await self._save_state(keys=self._state_keys(session_id), args=args))

    async def claim_session_state(self, session_id: str, owner: str, ttl_s: float) -> Claim:
        """Take the session if it is parked, ``owner``'s, or held by an instance whose heartbeat lapsed."""
        check_ttl(ttl_s)
        keys = self._state_keys(session_id)
        with _unavailable_on_error("claim_session_state"):
            for _ in range(5):  # 'retry': the owner changed between our read and the script
                held = await self._redis.hget(keys[0], "owner")
                if held is None:
                    return Claim("missing")
                heartbeat = self._key("instance", _text(held) or "-")
                args: list[EncodableT] = [owner, _text(held), _ms(ttl_s)]
                reply = await self._claim_state(keys=[*keys, heartbeat], args=args)
                outcome = _text(reply[0])
                if outcome == "claimed":
                    record = SessionRecord(_text(reply[1]), [_text(m) for m in reply[2:]], owner)
                    return Claim("claimed", record)
                if outcome in ("busy", "missing"):
                    return Claim("busy" if outcome == "busy" else "missing")
        return Claim("busy")

    async def load_session_state(self, session_id: str) -> SessionRecord | None:
        """The stored record, whoever holds it; None if unknown or expired."""
        keys = self._state_keys(session_id)
        with _unavailable_on_error("load_session_state"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(keys[0])
                pipe.lrange(keys[1], 0, -1)
                fields, messages = await pipe.execute()
        if not fields or "state" not in fields:
            return None
        owner = _text(fields.get("owner", ""))
        return SessionRecord(_text(fields["state"]), [_text(m) for m in messages], owner)

    async def drop_session_state(self, session_id: str, owner: str) -> None:
        """Forget the session (it ended) unless another instance holds it now (idempotent)."""
        with _unavailable_on_error("drop_session_state"):
            await self._drop_state(keys=self._state_keys(session_id), args=[owner])

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
