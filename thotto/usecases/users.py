"""Adding a user, changing a tier or a time zone, removing a user: the store change and the invalidation that
makes it take effect in every process, in one function each (revoking a token is
:mod:`thotto.usecases.tokens`).

The API routes and the ``thotto`` admin commands call these and nothing else does these changes.
Each returns once the store has changed and the invalidation is sent: through Redis when it
works, else through the store's broadcasts (Postgres NOTIFY), which every process's cache
follows. Should an invalidation be lost (a connection re-established meanwhile), no process
keeps a token's answer in memory longer than ``TOKEN_L1_SECONDS`` (:mod:`thotto.api.auth`); so the
change holds everywhere within 1 s.

``store`` is a :class:`~thotto.store.base.Store`, ``cache`` a :class:`~thotto.cache.Cache` that
reaches the other processes (the engine's; the CLI runs one for the command).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import TYPE_CHECKING

from thotto.engine.errors import ValidationError
from thotto.engine.jobs import validated
from thotto.scheduler.records import NewUser, Tier, User, UserRemoval
from thotto.scheduler.posts import post_list_tag
from thotto.usecases.tokens import forget_user, user_tag

if TYPE_CHECKING:
    from thotto.cache import Cache
    from thotto.store.base import Store


async def add_user(store: "Store", new_user: NewUser) -> User:
    """Create a user (a name taken is Conflict). Nothing is cached of a user not yet made."""
    return await store.create_user(validated(new_user))


async def change_tier(store: "Store", cache: "Cache", user_id: int, tier: Tier) -> User:
    """Set a user's tier; what their tokens may do follows everywhere."""
    user = await store.set_tier(user_id, tier)
    await forget_user(cache, user.id)
    return user


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone this Python knows (tzdata ships them), but the legacy aliases."""
    zones = sorted(zone for zone in zoneinfo.available_timezones()
                   if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "US/")))
    return ("UTC", *zones)


def check_time_zone(name: str) -> str:
    if name not in time_zones():
        raise ValidationError(f"{name!r} is not an IANA time zone: use a name such as Europe/Berlin, "
                              "America/New_York or UTC", field="time_zone")
    return name


async def set_time_zone(store: "Store", cache: "Cache", user_id: int, zone: str) -> User:
    """Show and take the user's times in ``zone`` (an IANA name, else ValidationError); every
    process's cached answer for their tokens, which carries the zone, is dropped."""
    user = await store.set_time_zone(user_id, check_time_zone(zone))
    await forget_user(cache, user_id)
    return user


async def remove_user(store: "Store", cache: "Cache", user_id: int) -> UserRemoval:
    """Remove a user (see :meth:`Store.remove_user`: tokens revoked, scheduled posts cancelled,
    Reddit credentials erased; Conflict for the last admin); their tokens stop working and their
    cached post lists go, everywhere."""
    removal = await store.remove_user(user_id)
    await cache.invalidate_tags(user_tag(user_id), post_list_tag(user_id))
    return removal
