"""Revoking a token, changing a tier, removing a user: the store change and the invalidation
that makes it take effect in every process, in one function each.

The API routes and the ``thotto`` admin commands call these and nothing else does these changes.
Each returns once the store has changed and the invalidation is sent: through Redis when it
works, else through the store's broadcasts (Postgres NOTIFY), which every process's cache
follows. Should an invalidation be lost (a connection re-established meanwhile), no process
keeps a token's answer in memory longer than :data:`thotto.api.auth.TOKEN_L1_SECONDS`; so the
change holds everywhere within 1 s.

``store`` is a :class:`~thotto.store.base.Store`, ``cache`` a :class:`~thotto.cache.Cache` that
reaches the other processes (the engine's; the CLI runs one for the command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thotto.api.auth import forget_user, user_tag
from thotto.engine.errors import NotFound
from thotto.scheduler.posts import post_list_tag
from thotto.scheduler.records import ApiToken, Role, Tier, User, UserRemoval

if TYPE_CHECKING:
    from thotto.cache import Cache
    from thotto.store.base import Store


async def revoke_token(store: "Store", cache: "Cache", token_id: int, *,
                       by: User | None = None) -> ApiToken:
    """Revoke a token (idempotent). ``by``: the user asking; unless an admin, only their own
    tokens (another's is NotFound, not revealing it exists). None: the operator (CLI)."""
    if by is not None and by.role is not Role.ADMIN:
        if not any(token.id == token_id for token in await store.list_tokens(by.id)):
            raise NotFound(f"No API token {token_id} of yours; `GET /api/tokens` lists them")
    token = await store.revoke_token(token_id)
    await forget_user(cache, token.user_id)
    return token


async def change_tier(store: "Store", cache: "Cache", user_id: int, tier: Tier) -> User:
    """Set a user's tier; what their tokens may do follows everywhere."""
    user = await store.set_tier(user_id, tier)
    await forget_user(cache, user.id)
    return user


async def remove_user(store: "Store", cache: "Cache", user_id: int) -> UserRemoval:
    """Remove a user (see :meth:`Store.remove_user`: tokens revoked, scheduled posts cancelled,
    Reddit credentials erased; Conflict for the last admin); their tokens stop working and their
    cached post lists go, everywhere."""
    removal = await store.remove_user(user_id)
    await cache.invalidate_tags(user_tag(user_id), post_list_tag(user_id))
    return removal
