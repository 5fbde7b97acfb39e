"""The process's shared services: what the engine, the scheduler, the monitor and the API share.

:func:`open_services` opens them in order and closes them in reverse: the asyncio sidecar (when
Postgres or Redis is used), the store, the Reddit client (when Reddit is configured); the vault,
breakers, cache and metrics are plain objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from thotto.breaker import BreakerConfig, Breakers
from thotto.cache import Cache, CacheConfig
from thotto.config import Settings
from thotto.engine.aio import Sidecar, open_sidecar
from thotto.engine.clock import Clock
from thotto.engine.errors import DeferJob, PermanentJobError
from thotto.files import keep_data_private
from thotto.metrics import Metrics
from thotto.reddit.client import RedditClient, RedditConfig
from thotto.store import POSTGRES_SCHEMES, open_store, sqlite_file
from thotto.store.base import Store
from thotto.vault import Vault


def reddit_failure_counts(error: BaseException) -> bool:
    """What trips a Reddit breaker: outages (5xx, timeouts, dropped connections), not Reddit
    refusing a post (permanent) nor asking us to slow down (a deferral)."""
    return not isinstance(error, (PermanentJobError, DeferJob))


# Three outage failures in a row trip it: no more than a post's default attempts, so the
# failure that trips it (deferred, see Publisher) leaves every post with an attempt to spare.
REDDIT_BREAKER = BreakerConfig(counts=reddit_failure_counts, consecutive_failures=3,
                               open_seconds=30.0, max_open_seconds=600.0, min_calls=5)


@dataclass
class Services:
    """What the parts of one process share. See :func:`open_services`."""

    settings: Settings
    clock: Clock
    store: Store
    vault: Vault
    breakers: Breakers
    cache: Cache
    sidecar: Sidecar | None = None
    reddit: RedditClient | None = None
    metrics: Metrics = field(default_factory=Metrics)


@contextlib.asynccontextmanager
async def open_services(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    """Open the shared services; close them in reverse order on exit (also when cancelled)."""
    url = settings.resolved_database_url()
    keep_data_private(settings.data_dir, sqlite_file(url), uses_key_file=not settings.encryption_key)
    async with contextlib.AsyncExitStack() as stack:
        sidecar = None
        if url.startswith(POSTGRES_SCHEMES) or settings.redis_url:
            sidecar = await stack.enter_async_context(open_sidecar())
        metrics = Metrics()
        store = metrics.timed_store(
            await stack.enter_async_context(open_store(url, clock=clock.now, sidecar=sidecar)))
        reddit = None
        if settings.reddit_client_id:
            reddit = await stack.enter_async_context(RedditClient(RedditConfig.from_settings(settings)))
        breakers = Breakers({"reddit.*": REDDIT_BREAKER}, clock=clock, redis_url=settings.redis_url,
                            sidecar=sidecar, namespace=settings.redis_namespace)
        cache = Cache(CacheConfig.from_settings(settings), sidecar=sidecar, breakers=breakers, bus=store)
        vault = Vault.for_settings(settings.data_dir, settings.encryption_key)
        services = Services(settings, clock, store, vault, breakers, cache, sidecar, reddit, metrics)
        services.metrics.bind_services(cache, breakers)
        yield services
