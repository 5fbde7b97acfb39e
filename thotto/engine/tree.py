"""The engine's actors under a supervisor (the ``actors`` runtime).

:class:`EngineActors` builds the engine's three actors: the sweeper, the worker pool and the ticker
(when the process runs workers). :class:`Tree` runs child specs under one supervisor: the engine's
alone (:func:`thotto.engine.open_engine`), or the engine's among a product's own (the
composition root, :mod:`thotto.app`, puts its shared services before them and its HTTP API after).

Children start in order and stop in reverse: sweeper, worker pool, ticker. So on shutdown the
ticker stops claiming first, then the pool finishes or hands back its jobs within the grace
period, then the sweeper stops.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import trio

import actors
from thotto.engine.clock import Clock
from thotto.engine.config import EngineSettings, ProcessRole
from thotto.engine.handlers import HandlerRegistry
from thotto.engine.store.base import JobStore
from thotto.engine.sweeper import Sweeper
from thotto.engine.ticker import Ticker
from thotto.engine.workers import WorkerPool

log = logging.getLogger("thotto.engine.tree")

# Leases are released by the pool's own shielded cleanup within this many seconds after grace.
RELEASE_MARGIN_SECONDS = 15.0


class EngineActors:
    """The engine's actors: a worker pool fed by a ticker, and a sweeper of expired leases. They
    claim as ``owner`` and run jobs with the handlers of ``registry``."""

    def __init__(self, store: JobStore, registry: HandlerRegistry, clock: Clock,
                 settings: EngineSettings, *, owner: str, run_workers: bool | None = None):
        self.run_workers = settings.role is not ProcessRole.API if run_workers is None else run_workers
        self.grace_seconds = settings.shutdown_grace_seconds
        self.pool = WorkerPool(
            store, registry, clock, owner=owner,
            workers=settings.workers, io_workers=settings.io_workers, lease_seconds=settings.lease_seconds,
            grace_seconds=settings.shutdown_grace_seconds, max_prefetch=settings.max_prefetch,
        )
        self.ticker = Ticker(
            store, self.pool, clock, owner=owner,
            lease_seconds=settings.lease_seconds, lookahead_seconds=settings.lookahead_ms / 1000,
        )
        self.sweeper = Sweeper(store, interval_seconds=settings.sweep_interval_seconds)

    def specs(self) -> list[actors.ChildSpec]:
        """The supervisor's children for these actors (none when the process runs no workers)."""
        if not self.run_workers:
            return []
        return [
            actors.ChildSpec("sweeper", self.sweeper.run),
            actors.ChildSpec("workers", self.pool.run, wants_context=True,
                             shutdown_seconds=self.grace_seconds + RELEASE_MARGIN_SECONDS),
            actors.ChildSpec("ticker", self.ticker.run, wants_context=True, shutdown_seconds=5.0),
        ]


class Tree:
    """Child specs under one supervisor; ``running()`` starts and stops them. ``engine_actors``
    are the engine's (a second signal cuts their grace period short)."""

    def __init__(self, specs: list[actors.ChildSpec], engine_actors: EngineActors, *, name: str):
        self.engine_actors = engine_actors
        self.pool = engine_actors.pool
        self.ticker = engine_actors.ticker
        self.sweeper = engine_actors.sweeper
        self.supervisor = actors.Supervisor(specs, name=name, on_event=_log_event)
        self._stopped = trio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Tree"]:
        """Start every child (each ready before the next); on exit stop them gracefully. An
        error from the body comes out as itself, not wrapped in an exception group."""
        with actors.unwrap_sole_exception():
            async with self._supervising() as tree:
                yield tree

    @contextlib.asynccontextmanager
    async def _supervising(self) -> AsyncIterator["Tree"]:
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
                                self.engine_actors.grace_seconds)
                    self.stop()


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
