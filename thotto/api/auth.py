"""Authenticating requests by API token, and per-user request limits.

``Authorization: Bearer <token>`` authenticates a request (tokens are minted and revoked by
:mod:`thotto.usecases.tokens`, which says what a token is).

Who a token belongs to is cached (key ``token:<hash>``, tag ``user:<id>``, 60 s in Redis, at
most :data:`TOKEN_L1_SECONDS` in any process's memory). Invalidation: revoking a token, changing
a user's tier or removing a user invalidates the user's tag in every process (through
:mod:`thotto.usecases.tokens` and :mod:`thotto.usecases.users`, the only way to do those).
Unknown tokens are not cached (a stranger's guesses would fill the cache); they are failed
authentications, limited per client address (:class:`FailureLimiter`). Minting a token checks the caller's token in the store itself,
so a token revoked a moment ago mints nothing anywhere.

A browser signed in to the pages authenticates with its session cookie instead of a token
(:mod:`thotto.web.sessions`): the cookie is used only when no ``Authorization`` header is sent,
and every change made with it must carry the session's CSRF token (403 otherwise).
"""

from __future__ import annotations

import time

from starlette.requests import Request

from thotto.engine.errors import StoreUnavailable
from thotto.errors import Forbidden, TooManyRequests, Unauthorized
from thotto.scheduler.records import Role, User
from thotto.usecases.tokens import token_hash, token_key, user_tag
from thotto.web.sessions import has_session_cookie, session_user

TOKEN_CACHE_SECONDS = 60.0
# Revoking must take effect everywhere within 1 s even if an invalidation is lost (a connection
# being re-established): no process serves a token from memory for longer than this. One store
# or Redis read per token per process per half second costs nothing worth saving.
TOKEN_L1_SECONDS = 0.5


def known_token_key(hashed: str) -> str:
    """The last minute's answer for a token, used only while the store is unreachable. Tagged
    with the user's tag like :func:`token_key`, so every invalidation evicts it too."""
    return f"token-known:{hashed}"


async def require_user(request: Request, *, fresh: bool = False) -> User:
    """The user the request's bearer token belongs to, within their request rate; 401 or 429.
    ``fresh``: ask the store, not the cache (for requests that grant access, e.g. minting a
    token).

    An unknown or revoked token counts against the client address's failed-authentication
    bucket (429 once it is empty, without asking the store again until it refills)."""
    context = request.app.state.api
    header = request.headers.get("authorization", "")
    if not header and has_session_cookie(request):
        user = await _session_user(context, request)
    else:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Send an API token as 'Authorization: Bearer <token>' "
                               "(create one with `thotto token create --user NAME`), or sign in "
                               "to the app at /sign-in")
        user = await _user_for(context, token_hash(token.strip()), client_address(request), fresh=fresh)
    if context.limiter is not None:
        await context.limiter.check(user.id)
    return user


async def _session_user(context, request: Request) -> User:
    """The user of the request's web session (the pages' cookie; a change needs the CSRF
    token, see :mod:`thotto.web.sessions`). A cookie that is no live session counts as a failed
    authentication of the address, like an unknown token."""
    failures = context.auth_failures
    if failures is not None:
        failures.check_not_blocked(client_address(request))
    user = await session_user(request)
    if user is None:
        if failures is not None:
            await failures.failed(client_address(request))
        raise Unauthorized("Your session has ended (signed out, or unused too long); sign in "
                           "again at /sign-in")
    return user


def client_address(request: Request) -> str:
    """The peer's address (a proxy in front of Thotto shows as one client)."""
    return request.client.host if request.client is not None else "unknown"


_MISSING = object()


async def _user_for(context, hashed: str, address: str, *, fresh: bool = False) -> User:
    """The token's user: an L1 hit returns without a checkpoint (the hot path), then L2; a miss
    (or ``fresh``) asks the store and caches a found user under their tag. An unknown token is
    never cached (strangers' guesses must not fill the cache): it is a failed authentication."""
    key = token_key(hashed)
    user = _MISSING if fresh else await context.cache.get(key, _MISSING, type=User | None)
    if isinstance(user, User) and not fresh:
        return user
    failures = context.auth_failures
    if failures is not None:
        failures.check_not_blocked(address)
    try:
        user = await context.store.user_for_token(hashed)
    except StoreUnavailable:
        return await _known_while_the_store_is_down(context, hashed)
    if user is None:
        if failures is not None:
            await failures.failed(address)
        raise Unauthorized("The API token is unknown or revoked")
    tags = (user_tag(user.id),)
    await context.cache.set(key, user, ttl=TOKEN_CACHE_SECONDS, tags=tags, l1_ttl=TOKEN_L1_SECONDS)
    await context.cache.set(known_token_key(hashed), user, ttl=TOKEN_CACHE_SECONDS, tags=tags)
    return user


async def _known_while_the_store_is_down(context, hashed: str) -> User:
    """While the store is unreachable, a token seen valid in the last minute still signs in (an
    operator watches the monitoring through a database outage), unless its user's entries were
    invalidated since (a revocation, a removal, a tier change: they evict this key too). Nobody
    can revoke a token while the store is down, so this serves nothing revoked since."""
    user = await context.cache.get(known_token_key(hashed), None, type=User | None)
    if user is None:
        raise StoreUnavailable("The store is unavailable and this token was not seen in the last "
                               "minute; try again once it is back")
    return user


async def require_admin(request: Request, *, fresh: bool = False) -> User:
    user = await require_user(request, fresh=fresh)
    if user.role is not Role.ADMIN:
        raise Forbidden("This needs an admin token")
    return user


class TokenBuckets:
    """A token bucket per key: ``per_minute`` sustained, ``burst`` at once. In memory, or in
    Redis (one bucket per key shared by every process, under ``<namespace>:<scope>:<key>``)
    while the cache's Redis works; if Redis fails this process's memory decides rather than
    failing requests. The memory holds at most ``max_keys`` buckets: full ones are dropped
    first (a full bucket is the same as none), then the oldest, so strangers cannot grow it."""

    def __init__(self, per_minute: float, burst: int, cache=None, namespace: str = "thotto",
                 scope: str = "ratelimit", max_keys: int = 10_000, clock=time.monotonic):
        self.per_second = per_minute / 60.0
        self.burst = burst
        self.cache = cache
        self.namespace = namespace
        self.scope = scope
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, clock time)

    async def take(self, key: object) -> float:
        """Take one token from ``key``'s bucket: 0.0 if taken, else the seconds until one is."""
        wait = await self._take_shared(key)
        return self._take_local(key) if wait is None else wait

    async def _take_shared(self, key: object) -> float | None:
        link = self.cache.shared_redis() if self.cache is not None else None
        if link is None:
            return None
        try:
            return await link.take_token(f"{self.namespace}:{self.scope}:{key}", self.per_second, self.burst)
        except Exception as error:  # Redis down: this process decides alone until it is back
            self.cache.redis_failed(error)
            return None

    def _take_local(self, key: object) -> float:
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        taken = tokens >= 1
        self._buckets[key] = (tokens - 1 if taken else tokens, now)  # re-inserted: newest last
        if len(self._buckets) > self.max_keys:
            self._shrink(now)
        return 0.0 if taken else (1 - tokens) / self.per_second

    def _shrink(self, now: float) -> None:
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.per_second >= self.burst:
                del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]


class RequestLimiter(TokenBuckets):
    """Each user's request rate (a bucket per user id)."""

    async def check(self, user_id: int) -> None:
        """Take a token for ``user_id`` or raise TooManyRequests with the wait."""
        wait = await self.take(user_id)
        if wait > 0:
            raise TooManyRequests(f"More than {self.per_second * 60:g} requests a minute; "
                                  f"try again in {wait:.1f} s", retry_after=wait)


class FailureLimiter:
    """Failed authentications per client address (unknown API tokens now; failed password
    sign-ins may share it): each failure takes a token from the address's bucket, and an
    address whose bucket is empty is refused with 429 before any credential is looked up,
    until it refills. The "refused until" memo is this process's (bounded like the buckets)."""

    def __init__(self, buckets: TokenBuckets):
        self.buckets = buckets
        self._blocked_until: dict[str, float] = {}

    def check_not_blocked(self, address: str) -> None:
        until = self._blocked_until.get(address)
        if until is None:
            return
        wait = until - self.buckets.clock()
        if wait <= 0:
            del self._blocked_until[address]
            return
        raise self._refusal(wait)

    async def failed(self, address: str) -> None:
        """Count a failure; TooManyRequests if the address has none left."""
        wait = await self.buckets.take(address)
        if wait > 0:
            self._blocked_until.pop(address, None)
            self._blocked_until[address] = self.buckets.clock() + wait
            if len(self._blocked_until) > self.buckets.max_keys:
                del self._blocked_until[next(iter(self._blocked_until))]
            raise self._refusal(wait)

    def _refusal(self, wait: float) -> TooManyRequests:
        return TooManyRequests(
            f"Too many failed authentications from this address (more than "
            f"{self.buckets.per_second * 60:g} a minute); check the API token and try again in "
            f"{wait:.1f} s", retry_after=wait)
