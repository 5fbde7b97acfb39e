"""The embedding API: ``async with thotto.open_engine(settings) as engine:``.

An :class:`Engine` schedules jobs (one and many), reads, cancels and reschedules them, and runs
them through registered handlers; cron jobs run on five-field schedules in an IANA time zone. The
supervision tree behind it (ticker, poster pool, sweeper) is built in :mod:`thotto.app`.

Cron jobs are durable jobs too: each cron job is one job (queue ``cron``, dedupe key
``cron:<name>``) that runs at each fire time and then defers itself to the next one. So the next
run survives restarts, a run missed during downtime is caught up once (or skipped, per job), and
among several processes on one Postgres exactly one runs each occurrence.
"""

from __future__ import annotations

import contextlib
import logging
import re
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import trio

from thotto.clock import Clock, SystemClock
from thotto.config import Settings
from thotto.cron import CatchUp, CronSchedule, plan_occurrence
from thotto.community import fetch_rules
from thotto import analytics, webhooks
from thotto.errors import (
    DeferJob,
    JobError,
    StoreUnavailable,
    ThottoError,
    ValidationError,
)
from thotto.handlers import Handler, HandlerRegistry, JobContext, RetryPolicy
from thotto.media import purge_unused_media
from thotto.messages import (
    Account,
    Attempt,
    AttemptOutcome,
    EnqueueResult,
    Job,
    JobState,
    NewJob,
    NewPost,
    OptimalTimes,
    Post,
    QueueCount,
    SubredditRules,
    as_utc,
    validated,
    validated_jobs,
)
from thotto.app import EngineTree, Services, open_services
from thotto.posts import PostScheduler, post_list_tag
from thotto.publishing import Publisher
from thotto.recurrence import schedule_next_occurrence
from thotto.store.base import POST_JOB_KIND, PausedQueue


log = logging.getLogger("thotto.engine")

CRON_QUEUE = "cron"
CRON_KIND = "thotto.cron"
CRON_TIMEOUT_SECONDS = 3600.0
# Each run defers the job (refunding the attempt), so attempts are spent only by crashes mid-run;
# the job must survive many of those. A dead one is recreated by the next start.
CRON_MAX_ATTEMPTS = 1000
CRON_REGISTRATION_WAIT_SECONDS = 10.0
PUBLISH_TIMEOUT_SECONDS = 120.0

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

    def __init__(self, services: Services, registry: HandlerRegistry | None = None):
        self.services = services
        self.store = services.store
        self.clock = services.clock
        self.settings = services.settings
        self.registry = registry or HandlerRegistry()
        self.posts = PostScheduler(self.store, self.clock.now,
                                   self._fetch_rules if services.reddit else None, services.cache)
        self.publisher: Publisher | None = None
        if services.reddit is not None:
            self.publisher = Publisher(self.store, services.reddit, services.vault,
                                       services.breakers, self.clock.now)
            self.publisher.reconcile_settle_seconds = self.settings.reddit_reconcile_settle_seconds
            self.registry.register(POST_JOB_KIND, self.publisher.handle,
                                   timeout_seconds=PUBLISH_TIMEOUT_SECONDS, io_bound=True)
            self.publisher.on_published = self._after_publication
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._crons: dict[str, CronEntry] = {}
        self._cron_added: dict[str, trio.Event] = {}
        self.tree: EngineTree | None = None  # set by open_engine while the actors run
        self.registry.register(CRON_KIND, self._run_cron, timeout_seconds=CRON_TIMEOUT_SECONDS,
                               retry=RetryPolicy(max_attempts=CRON_MAX_ATTEMPTS))
        sender = webhooks.Sender(self.settings, services.metrics)
        self.registry.register(webhooks.WEBHOOK_KIND, sender.handle,
                               timeout_seconds=webhooks.TIMEOUT_SECONDS * 2,
                               retry=webhooks.retry_policy(self.settings), io_bound=True)

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

    # --- Reddit accounts and posts ----------------------------------------------------------

    async def schedule_posts(self, posts: Sequence[NewPost]) -> list[Post]:
        """Check and store posts to publish at their ``scheduled_for`` (see PostScheduler)."""
        return await self.posts.schedule(posts)

    async def sync_communities(self) -> int:
        """Refresh the stored rules of every known subreddit through a working linked account;
        returns how many were refreshed. A subreddit that fails to refresh keeps its old rules."""
        account = await self._any_working_account()
        if account is None:
            log.info("community sync: no linked Reddit account to read rules with")
            return 0
        refreshed = 0
        for known in await self.store.list_subreddit_rules():
            try:
                rules = await self._fetch_rules(account.id, known.display_name)
            except JobError as error:
                log.warning("community sync: r/%s not refreshed: %s", known.display_name, error)
                continue
            await self.posts.save_rules(rules)
            refreshed += 1
        return refreshed

    async def _after_publication(self, post: Post) -> None:
        """Schedule a published recurring post's next occurrence, exactly once (see
        :func:`thotto.recurrence.schedule_next_occurrence`; the Publisher calls this again on
        every later run of the post's job, so a crash in between loses nothing)."""
        await self.services.cache.invalidate_tags(post_list_tag(post.user_id))
        try:
            if await schedule_next_occurrence(self.store, post, self.clock.now()) is not None:
                # A list read since the invalidation above may lack the next occurrence.
                await self.services.cache.invalidate_tags(post_list_tag(post.user_id))
            await self._announce_publication(post)
        except StoreUnavailable as error:
            # The post is out; try again when storage is back, without spending an attempt.
            raise DeferJob(f"post {post.id} is published; its next occurrence waits for the store",
                           until=self.clock.now() + timedelta(seconds=30)) from error
        except ThottoError:  # e.g. the account is gone: the series ends, the post stays published
            log.exception("post %d is published, but its next occurrence could not be scheduled",
                          post.id)

    async def _announce_publication(self, post: Post) -> None:
        """The ``post_published`` webhook (one live delivery per post, however often this runs:
        it runs again on every later run of the post's job)."""
        if not self.settings.alert_webhook_url:
            return
        recorded = post if post.reddit_url else await self.store.get_post(post.id)
        user = await self.store.get_user(post.user_id)
        await webhooks.announce(self.services, "post_published", {
            "post_id": post.id, "user_id": post.user_id, "user": user.name,
            "subreddit": post.content.subreddit, "title": post.content.title,
            "reddit_id": recorded.reddit_id, "reddit_url": recorded.reddit_url,
            "scheduled_for": post.scheduled_for.isoformat()}, dedupe_key=f"post_published:{post.id}")

    async def refresh_engagement(self) -> int:
        """Read published posts' scores and comments from Reddit and store them, then drop
        cached optimal times (the hourly ``analytics`` cron job; see
        :func:`thotto.analytics.refresh_engagement`). Returns how many posts were updated."""
        assert self.publisher is not None
        return await analytics.refresh_engagement(self.store, self.publisher.reddit_account,
                                                  self.services.cache, self.clock.now)

    async def optimal_times(self, subreddit: str) -> OptimalTimes:
        """The best hours of the week (UTC) to post in ``subreddit``: from our published posts'
        engagement once there are enough of them, else a generic prior; cached for an hour and
        invalidated by every analytics run (see :func:`thotto.analytics.optimal_times`)."""
        return await analytics.optimal_times(self.store, self.services.cache, subreddit,
                                             self.clock.now)

    async def _any_working_account(self) -> Account | None:
        for user in await self.store.list_users():
            for account in await self.store.list_accounts(user.id):
                if not account.needs_relink:
                    return account
        return None

    async def _fetch_rules(self, account_id: int, subreddit: str) -> SubredditRules:
        assert self.publisher is not None
        account = await self.store.get_account(account_id)
        return await fetch_rules(self.publisher.reddit_account(account), subreddit, self.clock.now)

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
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    run_workers: bool | None = None,
    registry: HandlerRegistry | None = None,
    serve_api: bool = False,
) -> AsyncIterator[Engine]:
    """Open the store and start the engine's actors; on exit stop them gracefully.

    Handlers registered on ``registry`` beforehand are in place before the first claim, so jobs
    already due at startup find them (``engine.register_handler`` inside the block works too, but
    a job claimed before its handler exists is deferred 30 s). ``run_workers`` defaults from
    ``settings.role`` (``api`` runs none). ``serve_api`` serves the HTTP API on
    ``settings.api_host``/``api_port`` (``engine.tree.api.url`` once started). Leaving the block stops
    claiming, gives running jobs ``settings.shutdown_grace_seconds``, then cancels them and
    releases their leases; the store is closed last.
    """

    settings = settings or Settings()
    clock = clock or SystemClock()
    async with open_services(settings, clock) as services:
        engine = Engine(services, registry)
        await _add_builtin_crons(engine)
        async with EngineTree(engine, run_workers=run_workers, serve_api=serve_api).running() as tree:
            engine.tree = tree
            yield engine


async def _add_builtin_crons(engine: Engine) -> None:
    """Retention (purge finished jobs and posts older than ``retention_days``, then database
    upkeep) runs daily at 03:00 UTC, and media retention (media no post uses, once
    ``media_retention_days`` old: :func:`thotto.media.purge_unused_media`) at 03:30; with
    Reddit configured, the community sync runs weekly on Monday 02:00 UTC and the analytics job (published posts' engagement, see
    :meth:`Engine.refresh_engagement`) hourly at minute 17, off the hour's rush of posts."""
    settings = engine.settings

    async def retention() -> None:
        cutoff = engine.clock.now() - timedelta(days=settings.retention_days)
        purged = await engine.store.purge(cutoff)
        log.info("retention: purged %d finished jobs older than %s", purged, cutoff.isoformat())
        await engine.store.tidy()

    async def media_retention() -> None:
        purged = await purge_unused_media(engine.store, settings, engine.clock.now())
        log.info("media retention: deleted %d media no post uses", purged)

    await engine.add_cron("retention", "0 3 * * *", retention)
    await engine.add_cron("media-retention", "30 3 * * *", media_retention)
    if engine.publisher is not None:
        await engine.add_cron("community-sync", "0 2 * * 1", engine.sync_communities)
        await engine.add_cron("analytics", "17 * * * *", engine.refresh_engagement)
