"""The composition root: the one place that puts Thotto together.

:func:`open_app` opens the shared services (:mod:`thotto.services`: sidecar, store, Reddit client,
breakers, cache, vault, metrics), builds the job engine on the store, installs the Reddit scheduler
into it (its handlers and cron jobs), and runs the supervision tree. Nothing imports this module
but the entry points (the CLI, ``run.py``) and tests: every other part receives what it needs.

Children of the tree start in this order and stop in reverse: breakers, cache, monitor, then the
engine's sweeper, worker pool and ticker (when the process runs workers), then the HTTP API when
served. So on shutdown the API stops taking requests first, the ticker stops claiming, then the
pool finishes or hands back its jobs within the grace period, then the sweeper, monitor, cache and
breakers stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import actors
from thotto.engine.clock import Clock
from thotto.config import Settings
from thotto.monitor import Monitor
from thotto.scheduler.scheduler import Scheduler
from thotto.services import Services, open_services
from thotto.store.base import Store
from thotto.api.endpoints import ApiContext
from thotto.api.server import ApiServer
from thotto.engine.engine import Engine
from thotto.api.auth import FailureLimiter
from thotto.engine.handlers import HandlerRegistry
from thotto.api.auth import RequestLimiter
from thotto.engine.clock import SystemClock
from thotto.api.auth import TokenBuckets
from thotto.engine.tree import Tree

# Requests in flight get this long to finish when the API stops.
API_GRACE_SECONDS = 5.0


class AppTree(Tree):
    """The process's actors under one supervisor: the shared services' (breakers, cache,
    monitor), the engine's, then the API's."""

    def __init__(self, services: Services, engine: Engine, scheduler: Scheduler, *,
                 run_workers: bool | None = None, serve_api: bool = False):
        engine_actors = engine.actors(run_workers=run_workers)
        self.monitor = Monitor(services, metrics=services.metrics)
        engine_actors.pool.on_dead.append(self.monitor.job_died)
        self.api = _api_server(services, engine, scheduler, self.monitor) if serve_api else None
        shared = [
            actors.ChildSpec("breakers", services.breakers.run, wants_context=True),
            actors.ChildSpec("cache", services.cache.run, wants_context=True),
            actors.ChildSpec("monitor", self.monitor.run, wants_context=True),
        ]
        # The API starts last and stops first: no request arrives once the workers are stopping.
        api = [actors.ChildSpec("api", self.api.run, shutdown_seconds=API_GRACE_SECONDS + 1)] if self.api else []
        super().__init__([*shared, *engine_actors.specs(), *api], engine_actors, name="thotto")
        self.run_workers = engine_actors.run_workers
        if self.api is not None:
            self.api.context.supervisor = self.supervisor
        services.metrics.bind_actors(self.pool, self.sweeper, self.supervisor)


@dataclass
class App:
    """Thotto running in this process: its services, engine, scheduler and actors."""

    services: Services
    engine: Engine
    scheduler: Scheduler
    tree: AppTree

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def clock(self) -> Clock:
        return self.services.clock

    @property
    def store(self) -> Store:
        return self.services.store


@contextlib.asynccontextmanager
async def open_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    run_workers: bool | None = None,
    registry: HandlerRegistry | None = None,
    serve_api: bool = False,
) -> AsyncIterator[App]:
    """Open the services, start the engine with the scheduler installed, and the actors; on exit
    stop them gracefully and close the services (the store last).

    Handlers registered on ``registry`` beforehand are in place before the first claim, so jobs
    already due at startup find them. ``run_workers`` defaults from ``settings.role`` (``api``
    runs none). ``serve_api`` serves the HTTP API on ``settings.api_host``/``api_port``
    (``app.tree.api.url`` once started). Leaving the block stops claiming, gives running jobs
    ``settings.shutdown_grace_seconds``, then cancels them and releases their leases.
    """
    settings = settings or Settings()
    clock = clock or SystemClock()
    async with open_services(settings, clock) as services:
        engine = Engine(services.store, settings, clock, registry)
        scheduler = Scheduler(services)
        scheduler.install(engine)
        await engine.add_retention()
        await scheduler.add_crons(engine)
        tree = AppTree(services, engine, scheduler, run_workers=run_workers, serve_api=serve_api)
        async with tree.running():
            engine.tree = tree
            yield App(services, engine, scheduler, tree)


def _api_server(services: Services, engine: Engine, scheduler: Scheduler, monitor: Monitor) -> ApiServer:
    settings = services.settings
    cache = services.cache
    limiter = RequestLimiter(settings.api_requests_per_minute, settings.api_burst, cache,
                             settings.redis_namespace)
    auth_failures = FailureLimiter(TokenBuckets(
        settings.api_auth_failures_per_minute, settings.api_auth_failure_burst, cache,
        settings.redis_namespace, scope="authfail"))
    context = ApiContext(services, engine, scheduler, limiter, auth_failures, monitor=monitor)
    return ApiServer(context, settings.api_host, settings.api_port, grace_seconds=API_GRACE_SECONDS)
