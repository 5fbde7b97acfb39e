"""API tokens and per-user request limits.

A token is ``thotto_`` plus 43 random URL-safe characters (256 bits). It is shown once; the store
keeps only its SHA-256, so a leaked database leaks no usable token (a slow hash is unnecessary:
the token is random, not a password). ``Authorization: Bearer <token>`` authenticates a request.

Who a token belongs to is cached (key ``token:<hash>``, tag ``user:<id>``, 60 s in Redis, at
most :data:`TOKEN_L1_SECONDS` in any process's memory). Invalidation: revoking a token, changing
a user's tier or removing a user invalidates the user's tag in every process (through
:mod:`thotto.usecases.users`, the only way to do those); a token looked up before it existed is
cached as unknown, so creating one deletes its key. Minting a token checks the caller's token
in the store itself, so a token revoked a moment ago mints nothing anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from starlette.requests import Request

from thotto.errors import Forbidden, TooManyRequests, Unauthorized
from thotto.messages import ApiToken, Role, User

TOKEN_PREFIX = "thotto_"
TOKEN_CACHE_SECONDS = 60.0
# Revoking must take effect everywhere within 1 s even if an invalidation is lost (a connection
# being re-established): no process serves a token from memory for longer than this. One store
# or Redis read per token per process per half second costs nothing worth saving.
TOKEN_L1_SECONDS = 0.5


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_key(hashed: str) -> str:
    return f"token:{hashed}"


def user_tag(user_id: int) -> str:
    return f"user:{user_id}"


async def mint_token(store, user_id: int, name: str) -> tuple[ApiToken, str]:
    """Store a new token's hash for the user; returns the record and the token (shown once)."""
    token = new_token()
    return await store.create_token(user_id, name, token_hash(token)), token


async def create_token(context, user_id: int, name: str) -> tuple[ApiToken, str]:
    """:func:`mint_token`, then forget a cached "unknown token" answer for it."""
    record, token = await mint_token(context.store, user_id, name)
    await context.cache.delete(token_key(token_hash(token)))
    return record, token


async def forget_user(cache, user_id: int) -> None:
    """Drop every cached token lookup of the user, in every process (after a revocation, a tier
    change or a removal: see :mod:`thotto.usecases.users`)."""
    await cache.invalidate_tags(user_tag(user_id))


async def require_user(request: Request, *, fresh: bool = False) -> User:
    """The user the request's bearer token belongs to, within their request rate; 401 or 429.
    ``fresh``: ask the store, not the cache (for requests that grant access, e.g. minting a
    token)."""
    context = request.app.state.api
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send an API token as 'Authorization: Bearer <token>' "
                           "(create one with `thotto token create --user NAME`)")
    hashed = token_hash(token.strip())
    user = await context.store.user_for_token(hashed) if fresh else await _user_for(context, hashed)
    if user is None:
        raise Unauthorized("The API token is unknown or revoked")
    if context.limiter is not None:
        await context.limiter.check(user.id)
    return user


_MISSING = object()


async def _user_for(context, hashed: str) -> User | None:
    """The token's user: an L1 hit returns without a checkpoint (the hot path), then L2; a miss
    asks the store and caches the answer under the user's tag (an unknown token as None)."""
    key = token_key(hashed)
    user = await context.cache.get(key, _MISSING, type=User | None)
    if user is _MISSING:
        user = await context.store.user_for_token(hashed)
        tags = (user_tag(user.id),) if user is not None else ()
        await context.cache.set(key, user, ttl=TOKEN_CACHE_SECONDS, tags=tags, l1_ttl=TOKEN_L1_SECONDS)
    return user


async def require_admin(request: Request, *, fresh: bool = False) -> User:
    user = await require_user(request, fresh=fresh)
    if user.role is not Role.ADMIN:
        raise Forbidden("This needs an admin token")
    return user


class RequestLimiter:
    """A token bucket per user: ``per_minute`` sustained, ``burst`` at once. In memory, or in
    Redis (one bucket per user shared by every process) while the cache's Redis works; if Redis
    fails the limit falls back to this process's memory rather than failing requests."""

    def __init__(self, per_minute: float, burst: int, cache=None, namespace: str = "thotto"):
        self.per_second = per_minute / 60.0
        self.burst = burst
        self.cache = cache
        self.namespace = namespace
        self._buckets: dict[int, tuple[float, float]] = {}  # user id -> (tokens, monotonic time)

    async def check(self, user_id: int) -> None:
        """Take a token for ``user_id`` or raise TooManyRequests with the wait."""
        wait = await self._take_shared(user_id)
        if wait is None:
            wait = self._take_local(user_id)
        if wait > 0:
            raise TooManyRequests(f"More than {self.per_second * 60:g} requests a minute; "
                                  f"try again in {wait:.1f} s", retry_after=wait)

    async def _take_shared(self, user_id: int) -> float | None:
        link = self.cache.shared_redis() if self.cache is not None else None
        if link is None:
            return None
        try:
            return await link.take_token(f"{self.namespace}:ratelimit:{user_id}", self.per_second, self.burst)
        except Exception as error:  # Redis down: this process decides alone until it is back
            self.cache.redis_failed(error)
            return None

    def _take_local(self, user_id: int) -> float:
        now = time.monotonic()
        tokens, at = self._buckets.get(user_id, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        if tokens >= 1:
            self._buckets[user_id] = (tokens - 1, now)
            return 0.0
        self._buckets[user_id] = (tokens, now)
        return (1 - tokens) / self.per_second
