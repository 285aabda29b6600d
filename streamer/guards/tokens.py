"""Session tokens: short-lived, single-use JWTs bound to one session.

The algorithm is pinned (HS256) on both sides, so ``alg: none`` or a token signed for another algorithm is
refused; ``exp``, ``aud``, ``iss``, ``sub`` (the session id) and ``jti`` are required. The session config
travels inside the token, so any instance that shares the signing secret and the state backend (which
enforces single use of ``jti``) can accept the WebSocket.
"""

from __future__ import annotations

import heapq
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from streamer.errors import AuthError
from streamer.protocol import SessionConfig

ALGORITHM = "HS256"
# One audience per surface: a credential minted for one surface opens no session on another.
AUDIENCE = "streamer.stream"  # /v1/stream session tokens
DEEPGRAM_AUDIENCE = "streamer.deepgram"  # /v1/auth/grant temporary tokens, for /v1/listen
OPENAI_AUDIENCE = "streamer.openai"  # /v1/realtime client secrets (ek_...), for /v1/realtime
ISSUER = "streamer"


@dataclass(frozen=True)
class SessionGrant:
    """What a verified token grants: one session, for one key, with one config."""

    session_id: str
    key_id: str
    config: SessionConfig
    jti: str
    expires_at: float
    resume: bool = False
    # what a surface with its own session shape carried in the token (an OpenAI client secret's session)
    extra: Mapping[str, Any] = field(default_factory=dict)


class TokenService:
    def __init__(self, secret: str, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret must be at least 32 characters")
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        # token ids redeemed here, until their mark would expire: the backend's memory can be lost (a Redis
        # restart without persistence, a fail-open outage), this instance's cannot
        self._used: dict[str, float] = {}
        self._used_expiry: list[tuple[float, str]] = []

    @staticmethod
    def new_session_id() -> str:
        return "sess_" + uuid.uuid4().hex

    def issue(
        self,
        session_id: str,
        key_id: str,
        config: SessionConfig,
        *,
        resume: bool = False,
        audience: str = AUDIENCE,
        ttl_s: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, SessionGrant]:
        """A signed single-use token. ``audience`` keeps tokens for one surface (the vendor adapters'
        temporary credentials) from opening sessions on another; ``ttl_s`` overrides the default TTL."""
        now = self._clock()
        grant = SessionGrant(
            session_id=session_id,
            key_id=key_id,
            config=config,
            jti=secrets.token_urlsafe(16),
            expires_at=now + (self.ttl_s if ttl_s is None else ttl_s),
            resume=resume,
            extra=dict(extra or {}),
        )
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "sub": session_id,
            "kid": key_id,
            "jti": grant.jti,
            "iat": int(now),
            "exp": int(grant.expires_at),
            "cfg": config.model_dump(),
            "resume": resume,
        }
        if extra:
            claims["ext"] = dict(extra)
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), grant

    def decode(self, token: str, *, audience: str = AUDIENCE) -> SessionGrant:
        """Verify signature and claims (not single use: the caller checks ``jti`` with the backend)."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("session token expired") from e
        except jwt.PyJWTError as e:
            raise AuthError("invalid session token") from e
        try:
            config = SessionConfig.model_validate(claims.get("cfg", {}))
        except ValueError as e:
            raise AuthError("invalid session token") from e
        return SessionGrant(
            session_id=str(claims["sub"]),
            key_id=str(claims.get("kid", "")),
            config=config,
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            resume=bool(claims.get("resume", False)),
            extra=dict(claims["ext"]) if isinstance(claims.get("ext"), dict) else {},
        )

    async def redeem(
        self,
        token: str,
        consume_jti: Callable[[str, float], Awaitable[bool]],
        *,
        audience: str = AUDIENCE,
    ) -> SessionGrant:
        """Decode and mark the token used; a second use is refused.

        The mark is kept in the state backend (for every instance) and here (for as long as the backend's
        would last), so a backend that forgot it or is failing open cannot make the token new again on
        this instance. The local mark is made before the backend is asked: a concurrent second use here
        is refused without a race.
        """
        grant = self.decode(token, audience=audience)
        now = self._clock()
        self._forget_used(now)
        if grant.jti in self._used:
            raise AuthError("session token already used")
        ttl_s = max(0.0, grant.expires_at - now) + 60  # the mark outlives the token (whatever its TTL)
        self._used[grant.jti] = now + ttl_s
        heapq.heappush(self._used_expiry, (now + ttl_s, grant.jti))
        try:
            fresh = await consume_jti(grant.jti, ttl_s)
        except BaseException:
            self._used.pop(grant.jti, None)  # not spent (the backend refused to answer): the client may retry
            raise
        if not fresh:
            raise AuthError("session token already used")
        return grant

    def _forget_used(self, now: float) -> None:
        while self._used_expiry and self._used_expiry[0][0] <= now:
            expires, jti = heapq.heappop(self._used_expiry)
            if self._used.get(jti) == expires:
                del self._used[jti]
