from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.guards.keys import TIERS, KeyRecord, KeyRing, generate_key, hash_key, issue_key, key_id_of

ALNUM = set(string.ascii_letters + string.digits)


def test_generated_key_shape_and_entropy() -> None:
    key_id, full = generate_key()
    prefix, kid, secret = full.split("_", 2)
    assert (prefix, kid) == ("sk", key_id)
    assert 8 <= len(key_id) <= 12
    assert set(key_id) <= ALNUM
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    assert len(raw) * 8 >= 256  # token_urlsafe(32): 256 bits of secret
    assert len(secret) >= 43


def test_generated_keys_are_unique() -> None:
    keys = [generate_key("live") for _ in range(500)]
    assert len({full for _, full in keys}) == 500
    assert len({kid for kid, _ in keys}) == 500
    assert all(full.startswith("live_") for _, full in keys)


@pytest.mark.parametrize("prefix", ["", "s_k", "sk-1", "ключ"])
def test_generate_key_rejects_ambiguous_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError):
        generate_key(prefix)


def test_key_id_parses_back_even_when_the_secret_has_underscores() -> None:
    for _ in range(200):
        key_id, full = generate_key()
        assert key_id_of(full) == key_id
    assert key_id_of("sk_abcdEFGH12_" + "_" * 10 + "x" * 40) == "abcdEFGH12"


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "sk",
        "sk_abcdefgh",
        "sk__" + "x" * 43,  # empty key id
        "sk_abc_" + "x" * 43,  # key id too short
        "sk_abcdefghijklm_" + "x" * 43,  # key id too long
        "sk_abcd-efgh_" + "x" * 43,  # key id not alphanumeric
        "_abcdefgh_" + "x" * 43,  # no prefix
        "sk_abcdefgh_short",  # secret too short
        "test-key-0123456789abcdef0123456789abcdef",  # a static key of free format
    ],
)
def test_key_id_of_rejects_malformed(presented: str) -> None:
    assert key_id_of(presented) is None


@given(st.text(max_size=120))
def test_key_id_of_never_raises(presented: str) -> None:
    result = key_id_of(presented)
    assert result is None or (8 <= len(result) <= 12 and set(result) <= ALNUM)


def test_hash_key_is_sha256_or_hmac_with_pepper() -> None:
    _, full = generate_key()
    assert hash_key(full) == hashlib.sha256(full.encode()).hexdigest()
    peppered = hash_key(full, pepper="pepper")
    assert peppered == hmac.new(b"pepper", full.encode(), hashlib.sha256).hexdigest()
    assert peppered == hash_key(full, pepper=b"pepper")
    assert peppered != hash_key(full)
    assert hash_key("\udcff") != hash_key("x")  # odd input hashes instead of raising


def test_issue_key_stores_only_the_hash() -> None:
    full, record = issue_key("ci robot", "free", now=lambda: 123.0)
    assert record.key_id == key_id_of(full)
    assert record.key_hash == hash_key(full)
    assert full not in repr(record)
    assert (record.name, record.tier, record.created_at, record.revoked) == ("ci robot", "free", 123.0, False)
    with pytest.raises(ValueError):
        issue_key("x", "platinum")


def test_record_limits_fall_back_to_the_tier() -> None:
    rec = KeyRecord("k", "h", "n", "free", 0.0)
    assert rec.session_limit == TIERS["free"].max_sessions
    assert rec.audio_limit_s == TIERS["free"].audio_seconds_per_day
    custom = KeyRecord("k", "h", "n", "free", 0.0, max_sessions=7, audio_seconds_per_day=99.0)
    assert (custom.session_limit, custom.audio_limit_s) == (7, 99.0)
    unlimited = KeyRecord("k", "h", "n", "unlimited", 0.0)
    assert (unlimited.session_limit, unlimited.audio_limit_s) == (None, None)
    unknown = KeyRecord("k", "h", "n", "retired-tier", 0.0)
    assert unknown.tier_defaults == TIERS["free"]  # never silently unlimited


def test_tiers_are_read_only() -> None:
    assert set(TIERS) == {"free", "standard", "unlimited"}
    with pytest.raises(TypeError):
        TIERS["free"] = TIERS["unlimited"]  # type: ignore[index]


STATIC = ["test-key-0123456789abcdef", "another key with spaces", "sk_abcdEFGH12_" + "y" * 43]


def test_key_ring_verifies_static_keys_of_any_format() -> None:
    ring = KeyRing([*STATIC, "  ", ""])
    assert len(ring) == 3
    for key in STATIC:
        rec = ring.verify_static(key)
        assert rec is not None
        assert rec.key_hash == hash_key(key)
        assert rec.key_id == hash_key(key)[:8]
        assert rec.tier == "standard"
        assert rec.max_sessions == TIERS["standard"].max_sessions
        assert rec.audio_seconds_per_day == TIERS["standard"].audio_seconds_per_day
    assert ring.verify_static("test-key-0123456789abcdeF") is None
    assert ring.verify_static("") is None


def test_key_ring_holds_only_hashes() -> None:
    ring = KeyRing(STATIC, tier="unlimited")
    everything = repr(vars(ring)) + repr(ring.records)
    for key in STATIC:
        assert key not in everything
    assert all(rec.tier == "unlimited" for rec in ring.records)
    with pytest.raises(ValueError):
        KeyRing(STATIC, tier="platinum")


def test_key_ring_with_pepper() -> None:
    ring = KeyRing(STATIC, pepper=b"p")
    rec = ring.verify_static(STATIC[0])
    assert rec is not None
    assert rec.key_hash == hash_key(STATIC[0], pepper=b"p")


@pytest.mark.parametrize("presented", [STATIC[0], STATIC[-1], "no such key"])
def test_verify_static_compares_every_hash_without_early_exit(
    presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(STATIC)
    calls: list[int] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    ring.verify_static(presented)
    assert len(calls) == len(STATIC)  # the same work whether the first, the last or no key matches
