"""The engine: ``async with open_engine(settings, store) as engine:``.

An :class:`Engine` schedules jobs (one and many), reads, cancels and reschedules them, pauses
and resumes queues, and runs them through registered handlers; cron jobs run on five-field
schedules in an IANA time zone. Its actors (ticker, worker pool, sweeper) are in
:mod:`thotto.engine.tree`. The engine knows nothing of what its jobs do: a product (the Reddit
scheduler, :mod:`thotto.scheduler`) installs its handlers and cron jobs into it.

Cron jobs are durable jobs too: each cron job is one job (queue ``cron``, dedupe key
``cron:<name>``) that runs at each fire time and then defers itself to the next one. So the next
run survives restarts, a run missed during downtime is caught up once (or skipped, per job), and
among several processes on one Postgres exactly one runs each occurrence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import trio

from thotto.engine.clock import Clock, SystemClock
from thotto.engine.config import EngineSettings
from thotto.engine.cron import CatchUp, CronSchedule, plan_occurrence
from thotto.engine.errors import DeferJob, ValidationError
from thotto.engine.handlers import Handler, HandlerRegistry, JobContext, RetryPolicy
from thotto.engine.jobs import (
    Attempt,
    AttemptOutcome,
    EnqueueResult,
    Job,
    JobState,
    NewJob,
    QueueCount,
    as_utc,
    validated_jobs,
)
from thotto.engine.store.base import JobStore, PausedQueue
from thotto.engine.tree import EngineActors, Tree

log = logging.getLogger("thotto.engine")

CRON_QUEUE = "cron"
CRON_KIND = "thotto.cron"
CRON_TIMEOUT_SECONDS = 3600.0
# Each run defers the job (refunding the attempt), so attempts are spent only by crashes mid-run;
# the job must survive many of those. A dead one is recreated by the next start.
CRON_MAX_ATTEMPTS = 1000
CRON_REGISTRATION_WAIT_SECONDS = 10.0

CronFunction = Callable[[], Awaitable[None]]


@dataclass
class CronStatus:
    """What the API shows of a cron job, read from the store, so it is the same in every
    process and survives restarts: each run is an entry of the cron job's attempt history."""

    name: str
    schedule: str
    timezone: str
    catch_up: str
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_duration_seconds: float | None = None
    last_error: str | None = None
    runs: int = 0


@dataclass
class CronEntry:
    name: str
    schedule: CronSchedule
    function: CronFunction
    catch_up: CatchUp
    job_id: int = 0


# How each run is written into the cron job's attempt history (the reason of its deferral):
# "ran in 0.012 s", "failed after 0.012 s: RuntimeError: ...", or SKIPPED.
RUN_RECORD = re.compile(r"^(?:ran in (?P<ok>[0-9.]+) s|failed after (?P<failed>[0-9.]+) s: (?P<error>.*))$", re.S)
SKIPPED = "skipped a missed run"


class Engine:
    """Schedule, inspect and run jobs. Get one from :func:`open_engine`."""

    def __init__(self, store: JobStore, settings: EngineSettings, clock: Clock,
                 registry: HandlerRegistry | None = None):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.registry = registry or HandlerRegistry()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._crons: dict[str, CronEntry] = {}
        self._cron_added: dict[str, trio.Event] = {}
        self.tree: Tree | None = None  # set while the actors run (open_engine, or the app's tree)
        self.registry.register(CRON_KIND, self._run_cron, timeout_seconds=CRON_TIMEOUT_SECONDS,
                               retry=RetryPolicy(max_attempts=CRON_MAX_ATTEMPTS))

    # --- handlers and cron jobs -----------------------------------------------------------

    def register_handler(
        self,
        kind: str,
        handler: Handler,
        *,
        timeout_seconds: float | None = 300.0,
        retry: RetryPolicy | None = None,
        io_bound: bool = False,
    ) -> None:
        """Run jobs of ``kind`` with ``handler``; ``retry.max_attempts`` becomes the default
        for jobs of this kind enqueued through this engine. ``io_bound=True`` for handlers that
        mostly wait on the network: they run on the ``io_workers``, many at once."""
        self.registry.register(kind, handler, timeout_seconds=timeout_seconds, retry=retry,
                               io_bound=io_bound)

    def handler(self, kind: str, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register_handler`."""

        def register(function: Handler) -> Handler:
            self.register_handler(kind, function, **options)
            return function

        return register

    async def add_cron(
        self,
        name: str,
        schedule: str,
        function: CronFunction,
        *,
        timezone: str = "UTC",
        catch_up: CatchUp = CatchUp.RUN_ONCE,
    ) -> CronStatus:
        """Run ``function()`` on a five-field cron ``schedule`` in ``timezone``.

        Creates the cron job's durable occurrence unless one exists. An existing future
        occurrence that no longer matches the schedule is moved; an overdue one (missed while
        Thotto was down) stays, to be caught up per ``catch_up``.
        """
        entry = CronEntry(name, CronSchedule(schedule, timezone), function, catch_up)
        self._crons[name] = entry
        self._cron_added.setdefault(name, trio.Event()).set()
        entry.job_id = await self._ensure_occurrence(entry)
        return await self.cron_status(name)

    async def cron_status(self, name: str) -> CronStatus:
        """The cron job's schedule, next run and last run (from the store)."""
        entry = self._crons[name]
        status = CronStatus(name, entry.schedule.expression, entry.schedule.timezone, entry.catch_up.value)
        job = await self.store.get_job(entry.job_id)
        status.next_run_at = job.run_at if job.state is JobState.PENDING else None
        runs = [(attempt, RUN_RECORD.match(attempt.error or ""))
                for attempt in await self.store.attempts(entry.job_id)
                if attempt.outcome is AttemptOutcome.DEFERRED]
        runs = [(attempt, record) for attempt, record in runs if record]
        status.runs = len(runs)
        if runs:
            attempt, record = runs[-1]
            status.last_duration_seconds = float(record["ok"] or record["failed"])
            status.last_run_at = attempt.finished_at - timedelta(seconds=status.last_duration_seconds)
            status.last_error = record["error"]
        return status

    async def cron_statuses(self) -> list[CronStatus]:
        return [await self.cron_status(name) for name in self._crons]

    def actors(self, *, run_workers: bool | None = None) -> EngineActors:
        """This engine's actors, to run under a supervisor (see :mod:`thotto.engine.tree`)."""
        return EngineActors(self.store, self.registry, self.clock, self.settings, owner=self.owner,
                            run_workers=run_workers)

    async def add_retention(self) -> None:
        """The daily ``retention`` cron job (03:00 UTC): purge finished jobs older than
        ``retention_days`` (with what the store keeps of them), then database upkeep."""

        async def retention() -> None:
            cutoff = self.clock.now() - timedelta(days=self.settings.retention_days)
            purged = await self.store.purge(cutoff)
            log.info("retention: purged %d finished jobs older than %s", purged, cutoff.isoformat())
            await self.store.tidy()

        await self.add_cron("retention", "0 3 * * *", retention)

    async def _ensure_occurrence(self, entry: CronEntry) -> int:
        """Make sure the cron job's durable job exists and follows the schedule; its id."""
        now = self.clock.now()
        wanted = entry.schedule.next_after(now)
        result = await self.store.enqueue(
            NewJob(queue=CRON_QUEUE, kind=CRON_KIND, payload=msgspec.json.encode({"name": entry.name}),
                   run_at=wanted, max_attempts=CRON_MAX_ATTEMPTS, dedupe_key=f"cron:{entry.name}")
        )
        if not result.created and now < result.run_at != wanted:
            job = await self.store.get_job(result.job_id)
            if job.state is JobState.PENDING:  # a schedule change: move the future occurrence
                await self.store.reschedule(job.id, wanted)
        return result.job_id

    async def _run_cron(self, ctx: JobContext) -> None:
        name = ctx.payload(dict)["name"]
        entry = await self._cron_entry(name)
        if entry is None:
            raise DeferJob(f"cron job {name!r} is not registered in this process",
                           until=self.clock.now() + timedelta(seconds=60))
        plan = plan_occurrence(entry.schedule, entry.catch_up, ctx.job.run_at, self.clock.now())
        if plan.missed:
            log.warning("cron %s: %d runs missed while down", name, plan.missed)
        outcome = await self._call_cron(entry) if plan.run else SKIPPED
        # The cron job lives on: deferring spends no attempt, keeps its dedupe key live, and
        # writes this run into its history (the outcome is the deferral's reason).
        raise DeferJob(outcome, until=plan.next_at)

    async def _cron_entry(self, name: str) -> CronEntry | None:
        """The registered cron job, waiting a little for it: an overdue occurrence is claimed
        as soon as the engine starts, usually just before the program calls ``add_cron``.
        Deferring at once would move the occurrence and lose the fact that a run was missed."""
        if name not in self._crons:
            with trio.move_on_after(CRON_REGISTRATION_WAIT_SECONDS):
                await self._cron_added.setdefault(name, trio.Event()).wait()
        return self._crons.get(name)

    async def _call_cron(self, entry: CronEntry) -> str:
        """Run the function; describe the run for the history (see RUN_RECORD)."""
        started = trio.current_time()
        try:
            await entry.function()
        except Exception as error:  # a failed run is reported; the next run is still scheduled
            log.exception("cron %s failed", entry.name)
            took = trio.current_time() - started
            return f"failed after {took:.6f} s: {type(error).__name__}: {error}"[:4000]
        return f"ran in {trio.current_time() - started:.6f} s"

    # --- scheduling -----------------------------------------------------------------------

    def new_job(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str = "default",
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        dedupe_key: str | None = None,
    ) -> NewJob:
        """Build a job; ``payload`` is any msgspec-encodable value, stored as JSON."""
        if max_attempts is None:
            spec = self.registry.get(kind)
            max_attempts = spec.retry.max_attempts if spec else 3
        try:
            encoded = msgspec.json.encode(payload)
        except TypeError as exc:
            raise ValidationError(f"payload cannot be encoded as JSON: {exc}", field="payload") from exc
        return NewJob(queue=queue, kind=kind, payload=encoded, priority=priority, run_at=run_at,
                      max_attempts=max_attempts, dedupe_key=dedupe_key)

    async def enqueue(self, kind: str, payload: Any = None, **options: Any) -> EnqueueResult:
        """Enqueue one job to run now, or at ``run_at=`` (see :meth:`new_job` for options)."""
        # Not validated here: every Store.enqueue validates its job (and caches the check by
        # the job's shape, which a full check here, ~10 µs, would not).
        return await self.store.enqueue(self.new_job(kind, payload, **options))

    async def schedule(self, kind: str, run_at: datetime, payload: Any = None, **options: Any) -> EnqueueResult:
        """Enqueue one job to run at ``run_at`` (an aware datetime)."""
        return await self.enqueue(kind, payload, run_at=as_utc(run_at), **options)

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Enqueue many jobs (build them with :meth:`new_job`) in one transaction."""
        return await self.store.enqueue_many(validated_jobs(jobs))

    async def get(self, job_id: int) -> Job:
        return await self.store.get_job(job_id)

    async def attempts(self, job_id: int) -> list[Attempt]:
        return await self.store.attempts(job_id)

    async def cancel(self, job_id: int) -> Job:
        return await self.store.cancel(job_id)

    async def reschedule(self, job_id: int, run_at: datetime) -> Job:
        return await self.store.reschedule(job_id, as_utc(run_at))

    async def counts(self) -> list[QueueCount]:
        return await self.store.counts()

    async def pause_queue(self, queue: str) -> PausedQueue:
        """Stop every process from claiming ``queue``'s jobs until :meth:`resume_queue`
        (durable; jobs already running finish)."""
        return await self.store.pause_queue(queue)

    async def resume_queue(self, queue: str) -> bool:
        """Let ``queue``'s jobs run again, in every process; whether it was paused."""
        return await self.store.resume_queue(queue)

    async def paused_queues(self) -> list[PausedQueue]:
        return await self.store.paused_queues()




@contextlib.asynccontextmanager
async def open_engine(
    settings: EngineSettings,
    store: JobStore,
    *,
    clock: Clock | None = None,
    run_workers: bool | None = None,
    registry: HandlerRegistry | None = None,
) -> AsyncIterator[Engine]:
    """Run an engine on ``store`` (opened and closed by the caller); on exit stop its actors
    gracefully.

    Handlers registered on ``registry`` beforehand are in place before the first claim, so jobs
    already due at startup find them (``engine.register_handler`` inside the block works too, but
    a job claimed before its handler exists is deferred 30 s). ``run_workers`` defaults from
    ``settings.role`` (``api`` runs none). Leaving the block stops claiming, gives running jobs
    ``settings.shutdown_grace_seconds``, then cancels them and releases their leases.
    """
    engine = Engine(store, settings, clock or SystemClock(), registry)
    await engine.add_retention()
    workers = engine.actors(run_workers=run_workers)
    tree = Tree(workers.specs(), workers, name="thotto.engine")
    async with tree.running():
        engine.tree = tree
        yield engine
