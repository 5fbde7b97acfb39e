"""Unlinking a Reddit account: the store change (credentials erased, the account hidden, its
scheduled posts cancelled) and the invalidation of the user's cached post lists, for the API and
the pages alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thotto.messages import AccountUnlinked
from thotto.posts import post_list_tag

if TYPE_CHECKING:
    from thotto.cache import Cache
    from thotto.store.base import Store


async def unlink_account(store: "Store", cache: "Cache", account_id: int, user_id: int) -> AccountUnlinked:
    """Unlink one of ``user_id``'s accounts (NotFound for anyone else's: it is not revealed)."""
    unlinked = await store.unlink_account(account_id, user_id)
    await cache.invalidate_tags(post_list_tag(user_id))
    return unlinked
