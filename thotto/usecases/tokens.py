"""API tokens: mint one, revoke one. Each owns its store change and the cache invalidation that
makes it hold in every process.

A token is ``thotto_`` plus 43 random URL-safe characters (256 bits). It is shown once; the store
keeps only its SHA-256, so a leaked database leaks no usable token (a slow hash is unnecessary:
the token is random, not a password). How the API authenticates with it, and how long a
process may remember a token's user, is :mod:`thotto.api.auth`.

``store`` is a :class:`~thotto.store.base.Store`, ``cache`` a :class:`~thotto.cache.Cache` that
reaches the other processes (the engine's; the CLI runs one for the command).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from thotto.engine.errors import NotFound
from thotto.scheduler.records import ApiToken, Role, User

if TYPE_CHECKING:
    from thotto.cache import Cache
    from thotto.store.base import Store

TOKEN_PREFIX = "thotto_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_key(hashed: str) -> str:
    """The cache key of a token's user (see :mod:`thotto.api.auth`)."""
    return f"token:{hashed}"


def user_tag(user_id: int) -> str:
    """The cache tag of everything cached about who a user is and what they may do."""
    return f"user:{user_id}"


async def forget_user(cache: "Cache", user_id: int) -> None:
    """Drop every cached token lookup of the user, in every process (after a revocation, a tier
    change or a removal)."""
    await cache.invalidate_tags(user_tag(user_id))


async def mint(store: "Store", cache: "Cache | None", user_id: int, name: str) -> tuple[ApiToken, str]:
    """Store a new token's hash for the user; returns the record and the token (shown once).
    Any cached answer for the new token is dropped everywhere (earlier versions cached unknown
    tokens, and a Redis shared with one may still hold such an answer). ``cache`` is None only
    where no process can have cached anything yet (``thotto init`` on a new data directory)."""
    token = new_token()
    record = await store.create_token(user_id, name, token_hash(token))
    if cache is not None:
        await cache.delete(token_key(token_hash(token)))
    return record, token


async def revoke(store: "Store", cache: "Cache", token_id: int, *, by: User | None = None) -> ApiToken:
    """Revoke a token (idempotent); it stops working in every process. ``by``: the user asking;
    unless an admin, only their own tokens (another's is NotFound, not revealing it exists).
    None: the operator (CLI)."""
    if by is not None and by.role is not Role.ADMIN:
        if not any(token.id == token_id for token in await store.list_tokens(by.id)):
            raise NotFound(f"No API token {token_id} of yours; `GET /api/tokens` lists them")
    token = await store.revoke_token(token_id)
    await forget_user(cache, token.user_id)
    return token
