"""The wiring: the process's shared services and the supervision tree of its actors.

:func:`open_services` opens what the actors share, in order, and closes it in reverse: the
asyncio sidecar (when Postgres or Redis is used), the store, the Reddit client (when Reddit is
configured); the vault, breakers and cache are plain objects.

Children of the tree start in this order and stop in reverse: breakers, cache, sweeper, poster
pool, ticker, then the HTTP API when served. So on shutdown the API stops taking requests first,
the ticker stops claiming, then the pool finishes or hands back its jobs within the grace period,
then the sweeper, cache and breakers stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

import actors
from thotto.aio import Sidecar, open_sidecar
from thotto.breaker import BreakerConfig, Breakers
from thotto.cache import Cache, CacheConfig
from thotto.clock import Clock
from thotto.config import ProcessRole, Settings
from thotto.errors import DeferJob, PermanentJobError
from thotto.files import keep_data_private
from thotto.metrics import Metrics
from thotto.monitor import Monitor
from thotto.posters import PosterPool
from thotto.reddit.client import RedditClient, RedditConfig
from thotto.store import POSTGRES_SCHEMES, open_store
from thotto.store.base import Store
from thotto.sweeper import Sweeper
from thotto.ticker import Ticker
from thotto.vault import Vault

if TYPE_CHECKING:
    from thotto.engine import Engine

log = logging.getLogger("thotto.app")

# Requests in flight get this long to finish when the API stops.
API_GRACE_SECONDS = 5.0

# Leases are released by the pool's own shielded cleanup within this many seconds after grace.
RELEASE_MARGIN_SECONDS = 15.0


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
    """What the actors of one process share. See :func:`open_services`."""

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
    keep_data_private(settings.data_dir, url, uses_key_file=not settings.encryption_key)
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
        services.metrics.bind_services(services)
        yield services


class EngineTree:
    """The engine's actors under one supervisor; ``running()`` starts and stops them."""

    def __init__(self, engine: "Engine", *, run_workers: bool | None = None, serve_api: bool = False):
        settings = engine.settings
        self.engine = engine
        self.run_workers = settings.role is not ProcessRole.API if run_workers is None else run_workers
        self.api = _api_server(engine) if serve_api else None
        self.pool = PosterPool(
            engine.store, engine.registry, engine.clock, owner=engine.owner,
            workers=settings.workers, io_workers=settings.io_workers, lease_seconds=settings.lease_seconds,
            grace_seconds=settings.shutdown_grace_seconds, max_prefetch=settings.max_prefetch,
        )
        self.ticker = Ticker(
            engine.store, self.pool, engine.clock, owner=engine.owner,
            lease_seconds=settings.lease_seconds, lookahead_seconds=settings.lookahead_ms / 1000,
        )
        self.sweeper = Sweeper(engine.store, interval_seconds=settings.sweep_interval_seconds)
        self.monitor = Monitor(engine.services, metrics=engine.services.metrics)
        self.pool.on_dead.append(self.monitor.job_died)
        self.supervisor = actors.Supervisor(self._specs(), name="thotto", on_event=_log_event)
        engine.services.metrics.bind_tree(self)
        self._stopped = trio.Event()

    def _specs(self) -> list[actors.ChildSpec]:
        services = self.engine.services
        shared = [
            actors.ChildSpec("breakers", services.breakers.run, wants_context=True),
            actors.ChildSpec("cache", services.cache.run, wants_context=True),
            actors.ChildSpec("monitor", self.monitor.run, wants_context=True),
        ]
        workers = []
        if self.run_workers:
            grace = self.engine.settings.shutdown_grace_seconds
            workers = [
                actors.ChildSpec("sweeper", self.sweeper.run),
                actors.ChildSpec("posters", self.pool.run, wants_context=True,
                                 shutdown_seconds=grace + RELEASE_MARGIN_SECONDS),
                actors.ChildSpec("ticker", self.ticker.run, wants_context=True, shutdown_seconds=5.0),
            ]
        # The API starts last and stops first: no request arrives once the workers are stopping.
        api = [actors.ChildSpec("api", self.api.run, shutdown_seconds=API_GRACE_SECONDS + 1)] if self.api else []
        return [*shared, *workers, *api]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["EngineTree"]:
        """Start every child (each ready before the next); on exit stop them gracefully. An
        error from the body comes out as itself, not wrapped in an exception group."""
        with actors.unwrap_sole_exception():
            async with self._supervising() as tree:
                yield tree

    @contextlib.asynccontextmanager
    async def _supervising(self) -> AsyncIterator["EngineTree"]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._supervise)
            try:
                yield self
            finally:
                self.stop()
                await self._stopped.wait()

    async def _supervise(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.supervisor.run(task_status=task_status)
        finally:
            self._stopped.set()

    def stop(self) -> None:
        """Ask for a graceful stop (returns at once; see :meth:`wait_stopped`)."""
        self.supervisor.stop()

    def stop_now(self) -> None:
        """Stop without waiting out the grace period (a second signal): running jobs are
        cancelled and their leases released at once."""
        self.pool.abandon_grace()
        self.supervisor.stop()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop_on_signals(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: the first SIGINT/SIGTERM stops gracefully, the next stops now."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.supervisor.state in (actors.State.STOPPING, actors.State.STOPPED):
                    log.warning("%s again: stopping now", signal.Signals(signum).name)
                    self.stop_now()
                else:
                    log.warning("%s: stopping; running jobs get %g s to finish (signal again to "
                                "stop now)", signal.Signals(signum).name,
                                self.engine.settings.shutdown_grace_seconds)
                    self.stop()


def _api_server(engine: "Engine"):
    from thotto.api.auth import FailureLimiter, RequestLimiter, TokenBuckets
    from thotto.api.endpoints import ApiContext
    from thotto.api.server import ApiServer

    settings = engine.settings
    cache = engine.services.cache
    limiter = RequestLimiter(settings.api_requests_per_minute, settings.api_burst, cache,
                             settings.redis_namespace)
    auth_failures = FailureLimiter(TokenBuckets(
        settings.api_auth_failures_per_minute, settings.api_auth_failure_burst, cache,
        settings.redis_namespace, scope="authfail"))
    return ApiServer(ApiContext(engine, limiter, auth_failures), settings.api_host, settings.api_port,
                     grace_seconds=API_GRACE_SECONDS)


def _log_event(event: actors.SupervisorEvent) -> None:
    # A child that fails its very first start fails the whole start, and that error reaches the
    # caller (the CLI prints it as its one line): logging it here too would say it twice.
    first_start_failed = event.kind is actors.EventKind.START_FAILED and event.restart_count == 0
    if not first_start_failed and event.kind in (actors.EventKind.RESTARTED, actors.EventKind.GAVE_UP,
                                                 actors.EventKind.START_FAILED):
        log.warning("actor %s: %s (restarts %d) %s", event.child, event.kind.value,
                    event.restart_count, event.error or "")
    else:
        log.debug("actor %s: %s", event.child, event.kind.value)
