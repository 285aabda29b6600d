"""API keys: generation, hashing, parsing, tiers, and the static key ring from ``STREAMER_API_KEYS``.

A generated key reads ``sk_<key_id>_<secret>``: the key id is public (it names the key in logs, quotas
and the admin API), the secret carries 256 bits from :func:`secrets.token_urlsafe`. Only hashes are stored.
Key ids are alphanumeric so the id can be split off unambiguously; the secret may contain ``_``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from streamer.guards.clock import Clock

__all__ = [
    "DEMO_KEY_ID",
    "TIERS",
    "KeyRecord",
    "KeyRing",
    "Tier",
    "generate_key",
    "hash_key",
    "issue_key",
    "key_id_of",
    "static_key_pepper",
]

KEY_ID_LENGTH = 10
SECRET_BYTES = 32
_KEY_ID_ALPHABET = string.ascii_letters + string.digits
_KEY_ID_CHARS = frozenset(_KEY_ID_ALPHABET)
_SECRET_MIN_CHARS = 43  # token_urlsafe(32): 32 bytes -> 43 base64url characters


@dataclass(frozen=True)
class Tier:
    """Default limits for a class of keys; None means unlimited."""

    name: str
    max_sessions: int | None
    audio_seconds_per_day: float | None


TIERS: Mapping[str, Tier] = MappingProxyType(
    {
        "free": Tier("free", max_sessions=1, audio_seconds_per_day=600.0),
        "standard": Tier("standard", max_sessions=10, audio_seconds_per_day=8 * 3600.0),
        "unlimited": Tier("unlimited", max_sessions=None, audio_seconds_per_day=None),
    }
)
DEFAULT_TIER = "standard"
# what demo sessions (no key) are counted under: shorter than any key id, so never one of them
DEMO_KEY_ID = "demo"
# A record naming a tier this server does not know gets the most restrictive one, never "unlimited".
_FALLBACK_TIER = "free"


@dataclass(frozen=True)
class KeyRecord:
    """What the server knows about one key. ``max_sessions``/``audio_seconds_per_day`` override the tier.

    Use :attr:`session_limit` and :attr:`audio_limit_s` for the limits in force (override, else tier).
    """

    key_id: str
    key_hash: str
    name: str
    tier: str
    created_at: float
    revoked: bool = False
    max_sessions: int | None = None
    audio_seconds_per_day: float | None = None

    @property
    def tier_defaults(self) -> Tier:
        """The tier's defaults (the most restrictive tier if this server does not know the name)."""
        return TIERS.get(self.tier, TIERS[_FALLBACK_TIER])

    @property
    def session_limit(self) -> int | None:
        """Concurrent sessions allowed for this key (None: unlimited)."""
        return self.max_sessions if self.max_sessions is not None else self.tier_defaults.max_sessions

    @property
    def audio_limit_s(self) -> float | None:
        """Audio seconds allowed per UTC day for this key (None: unlimited)."""
        if self.audio_seconds_per_day is not None:
            return self.audio_seconds_per_day
        return self.tier_defaults.audio_seconds_per_day


def generate_key(prefix: str = "sk") -> tuple[str, str]:
    """A fresh key: ``(key_id, full_key)`` with ``full_key == f"{prefix}_{key_id}_{secret}"``."""
    if not prefix or not prefix.isalnum() or not prefix.isascii():
        raise ValueError(f"a key prefix must be ASCII letters and digits, not {prefix!r}")
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return key_id, f"{prefix}_{key_id}_{secret}"


def hash_key(full_key: str, pepper: bytes | str | None = None) -> str:
    """The stored form of a key: SHA-256 hex, or HMAC-SHA256 hex keyed by ``pepper`` when given.

    Keys carry 256 bits of entropy, so a fast hash is enough; a slow password hash would only cost CPU on
    every request.
    """
    data = full_key.encode("utf-8", "surrogatepass")
    if pepper is None:
        return hashlib.sha256(data).hexdigest()
    key = pepper.encode() if isinstance(pepper, str) else pepper
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def key_id_of(full_key: str) -> str | None:
    """The key id of a generated key (``prefix_keyid_secret``), or None if it is not shaped like one."""
    parts = full_key.split("_", 2)
    if len(parts) != 3:
        return None
    prefix, key_id, secret = parts
    if not prefix or not prefix.isascii() or not prefix.isalnum():
        return None
    if not 8 <= len(key_id) <= 12 or not set(key_id) <= _KEY_ID_CHARS:
        return None
    if len(secret) < _SECRET_MIN_CHARS:
        return None
    return key_id


def issue_key(
    name: str,
    tier: str = DEFAULT_TIER,
    *,
    prefix: str = "sk",
    max_sessions: int | None = None,
    audio_seconds_per_day: float | None = None,
    pepper: bytes | str | None = None,
    now: Clock = time.time,
) -> tuple[str, KeyRecord]:
    """Create a key for the admin API: returns the full key (show it once) and the record to store."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
    key_id, full_key = generate_key(prefix)
    record = KeyRecord(
        key_id=key_id,
        key_hash=hash_key(full_key, pepper),
        name=name,
        tier=tier,
        created_at=now(),
        max_sessions=max_sessions,
        audio_seconds_per_day=audio_seconds_per_day,
    )
    return full_key, record


def static_key_pepper(secret: str) -> bytes:
    """The pepper for static keys, derived from the token signing secret: instances that share the
    secret agree on key ids (quotas are kept per id), and nobody without it can relate an id to a key."""
    return hmac.new(secret.encode(), b"streamer static key ids", hashlib.sha256).digest()


class KeyRing:
    """The static keys from configuration, held only as hashes, verified in constant time.

    Static keys may have any format. Each gets ``key_id`` = the first 8 hex characters of its hash and the
    given tier; its record carries that tier's limits explicitly. The server peppers the hash with
    :func:`static_key_pepper` of its token secret: key ids appear in tokens, and an unpeppered one would
    let anyone holding a token test guesses of the key offline.
    """

    def __init__(
        self,
        keys: Iterable[str],
        *,
        tier: str = DEFAULT_TIER,
        pepper: bytes | str | None = None,
        now: Clock = time.time,
    ) -> None:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
        self._pepper = pepper
        defaults = TIERS[tier]
        created = now()
        records: dict[str, KeyRecord] = {}
        for raw in keys:
            key = raw.strip()
            if not key:
                continue
            digest = hash_key(key, pepper)
            records[digest] = KeyRecord(
                key_id=digest[:8],
                key_hash=digest,
                name=f"static-{digest[:8]}",
                tier=tier,
                created_at=created,
                max_sessions=defaults.max_sessions,
                audio_seconds_per_day=defaults.audio_seconds_per_day,
            )
        self._entries: tuple[tuple[bytes, KeyRecord], ...] = tuple(
            (digest.encode("ascii"), rec) for digest, rec in records.items()
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def records(self) -> list[KeyRecord]:
        """The static keys' records (hashes only)."""
        return [rec for _, rec in self._entries]

    def verify_static(self, presented: str) -> KeyRecord | None:
        """The record of the static key equal to ``presented``, or None.

        Compares against every stored hash with :func:`hmac.compare_digest` and never stops early, so the
        time taken does not depend on which key (if any) matched.
        """
        digest = hash_key(presented, self._pepper).encode("ascii")
        found: KeyRecord | None = None
        for stored, rec in self._entries:
            if hmac.compare_digest(stored, digest):
                found = rec
        return found
