"""The queue monitor: snapshots of every queue, alerts on thresholds, webhooks.

Every ``monitor_interval_seconds`` the monitor reads the store (``Store.counts`` and
``Store.queue_activity`` since its previous snapshot) and, when Redis is configured, probes it
(PING round trip, INFO memory). It keeps the last ``monitor_history`` snapshots per queue and raises
alerts when a threshold is crossed:

* ``backlog``: more than ``alert_waiting`` jobs due and unclaimed in a queue;
* ``failed_rate``: more than ``alert_failed_rate`` of a queue's finished attempts failed for a
  system's reason (an outage, a timeout, a crash, an expired lease); a creator's post that Reddit
  refused (a typo in a subreddit's name, a missing flair) is the creator's to fix, counted apart
  (``refused_recent``) and never makes the system degraded;
* ``stalled``: more than ``alert_stalled`` leases of a queue expired (their holder crashed or hung);
* ``redis_latency`` / ``redis_unreachable``.

An alert is logged (a structured warning) when it is raised and when it clears, shows in
:meth:`Monitor.status` (and so in the health endpoints), and is announced as a webhook when
raised. Webhooks also go out when a post fails for good (``post_failed``) and when that failure
left its Reddit account needing to be linked again (``account_needs_relink``): the worker pool
tells the monitor about every job it dead-letters.

Announcing a webhook stores it as a job (:mod:`thotto.scheduler.webhooks`: sent, signed and retried by the
workers). The monitor hands events to its own task through a bounded queue, so raising an alert
never blocks; a full queue drops the event (logged). Failures themselves are read from the store
(dead jobs), not kept here.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any

import msgspec
import trio

import actors
from thotto.engine.errors import NotFound, StoreError
from thotto.engine.jobs import Job, JobState
from thotto.metrics import Metrics
from thotto.scheduler import webhooks
from thotto.scheduler.posts import post_list_tag
from thotto.services import Services
from thotto.store.base import POST_QUEUE

log = logging.getLogger("thotto.monitor")

WEBHOOK_QUEUE = 100  # events waiting to be announced beyond that are dropped (and logged)
DURATION_SAMPLE = 1000  # run times read per snapshot for the average and p95


class QueueSnapshot(msgspec.Struct, kw_only=True, rename="camel"):
    """One queue at one instant. Totals are jobs in the store now; ``*_recent``, ``retries``,
    ``stalled`` and the run times cover the interval since the previous snapshot."""

    queue: str
    at: datetime
    waiting: int
    """Pending and due: waiting for a worker."""
    delayed: int
    """Pending and due later."""
    active: int
    completed: int
    dead: int
    cancelled: int
    completed_recent: int
    dead_recent: int
    failed_recent: int
    """Attempts that failed for a system's reason (retry, dead or expired)."""
    refused_recent: int = 0
    """Attempts that dead-lettered their job for its own fault (Reddit refused the post, its
    account must be linked again): the creator's to fix, not counted in ``failed_rate``."""
    retries: int
    stalled: int
    """Leases that expired."""
    failed_rate: float
    """failed_recent / (completed_recent + failed_recent + refused_recent); 0 with no finished
    attempt."""
    avg_seconds: float | None
    p95_seconds: float | None


class SystemSnapshot(msgspec.Struct, kw_only=True, rename="camel"):
    """Store and Redis at one instant."""

    at: datetime
    store_latency_ms: float | None
    store_error: str | None = None
    redis_latency_ms: float | None = None
    redis_memory_bytes: int | None = None
    redis_error: str | None = None


class Alert(msgspec.Struct, kw_only=True, rename="camel"):
    """A threshold crossed. ``queue`` is None for system alerts."""

    name: str
    queue: str | None
    message: str
    value: float
    threshold: float
    since: datetime


class Monitor:
    """The monitor actor (see the module docstring). ``run`` is its supervised entry point;
    :meth:`snapshot` takes one snapshot now (the API and tests use it too)."""

    def __init__(self, services: Services, *, metrics: Metrics | None = None):
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.clock = services.clock
        self.metrics = metrics
        self.history: dict[str, collections.deque[QueueSnapshot]] = {}
        self.system: SystemSnapshot | None = None
        self.alerts: dict[tuple[str, str | None], Alert] = {}
        self.snapshots_taken = 0
        self.webhooks_announced = 0
        self.webhooks_dropped = 0
        self._last_at: datetime | None = None
        self._relink_reported: set[int] = set()
        self._events_in, self._events = trio.open_memory_channel[tuple[str, dict]](WEBHOOK_QUEUE)
        self._deaths_in, self._deaths = trio.open_memory_channel[tuple[Job, str]](WEBHOOK_QUEUE)
        self._redis: Any = None

    # --- reading --------------------------------------------------------------------------

    def latest(self) -> dict[str, QueueSnapshot]:
        """The last snapshot of every queue."""
        return {queue: snaps[-1] for queue, snaps in sorted(self.history.items()) if snaps}

    def status(self) -> str:
        """``healthy``, or ``degraded`` while any alert is raised."""
        return "degraded" if self.alerts else "healthy"

    def refused_recent(self) -> int:
        """Posts (and jobs) refused for their own fault in the last snapshot's interval, over
        every queue: the figure that stays out of the system's health."""
        return sum(snap.refused_recent for snap in self.latest().values())

    # --- the actor --------------------------------------------------------------------------

    async def run(self, ctx: actors.ChildContext | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Snapshot every ``monitor_interval_seconds`` until cancelled or asked to stop. The
        webhook senders and the Redis probe's client live in this call's nursery and are closed
        (shielded) when it ends; events still queued then are dropped."""
        async with trio.open_nursery() as nursery:
            if self.settings.redis_url and self.services.sidecar is not None:
                from thotto.cache.redis import RedisLink

                link = RedisLink(self.settings.redis_url, self.services.sidecar, timeout_seconds=2.0)
                await link.open()
                self._redis = link
            try:
                nursery.start_soon(self._announce_events)
                nursery.start_soon(self._report_deaths)
                if ctx is not None:
                    nursery.start_soon(_cancel_when_set, ctx.stopping, nursery.cancel_scope)
                task_status.started(self)
                while True:
                    await self.snapshot()
                    await trio.sleep(self.settings.monitor_interval_seconds)
            finally:
                if self._redis is not None:
                    link, self._redis = self._redis, None
                    await link.aclose()  # shielded itself

    async def snapshot(self) -> dict[str, QueueSnapshot]:
        """Take one snapshot of every queue and of the system, update alerts and metrics; the
        new snapshots by queue. A store failure is logged and recorded, not raised."""
        now = self.clock.now()
        since = self._last_at or now - timedelta(seconds=self.settings.monitor_interval_seconds)
        system = SystemSnapshot(at=now, store_latency_ms=None)
        taken: dict[str, QueueSnapshot] = {}
        started = time.perf_counter()
        try:
            counts = await self.store.counts()
            activity = await self.store.queue_activity(since, sample=DURATION_SAMPLE)
        except StoreError as error:
            log.warning("monitor: the store did not answer: %s", error)
            system.store_error = str(error)
        else:
            system.store_latency_ms = (time.perf_counter() - started) * 1000 / 2
            self._last_at = now
            taken = self._queue_snapshots(now, counts, activity)
            if self.metrics is not None:
                self.metrics.set_queue_counts(counts)
        await self._probe_redis(system)
        self.system = system
        self.snapshots_taken += 1
        self._check(now, taken, system)
        return taken

    def _queue_snapshots(self, now: datetime, counts, activity) -> dict[str, QueueSnapshot]:
        totals: dict[str, dict[JobState, int]] = collections.defaultdict(dict)
        for count in counts:
            totals[count.queue][count.state] = count.count
        recent = {row.queue: row for row in activity}
        taken = {}
        for queue in sorted(set(totals) | set(recent)):
            state, row = totals.get(queue, {}), recent.get(queue)
            durations = sorted(row.durations) if row else []
            finished = (row.completed + row.failed_attempts + row.refused) if row else 0
            snap = QueueSnapshot(
                queue=queue, at=now,
                waiting=row.due if row else 0, delayed=row.delayed if row else 0,
                active=state.get(JobState.PROCESSING, 0), completed=state.get(JobState.COMPLETED, 0),
                dead=state.get(JobState.DEAD, 0), cancelled=state.get(JobState.CANCELLED, 0),
                completed_recent=row.completed if row else 0, dead_recent=row.dead if row else 0,
                failed_recent=row.failed_attempts if row else 0, retries=row.retried if row else 0,
                refused_recent=row.refused if row else 0,
                stalled=row.expired if row else 0,
                failed_rate=(row.failed_attempts / finished) if finished else 0.0,
                avg_seconds=sum(durations) / len(durations) if durations else None,
                p95_seconds=durations[min(len(durations) - 1, math.ceil(0.95 * len(durations)) - 1)]
                if durations else None,
            )
            if self.metrics is not None:
                self.metrics.queue_waiting.labels(queue).set(snap.waiting)
            kept = self.history.setdefault(queue, collections.deque(maxlen=self.settings.monitor_history))
            kept.append(snap)
            taken[queue] = snap
        return taken

    async def _probe_redis(self, system: SystemSnapshot) -> None:
        if self._redis is None:
            return
        try:
            with trio.fail_after(5):
                latency, memory = await self._redis.sidecar.run(_redis_probe, self._redis)
        except Exception as error:  # noqa: BLE001 - any failure is "unreachable", reported
            system.redis_error = f"{type(error).__name__}: {error}"
            return
        system.redis_latency_ms, system.redis_memory_bytes = latency * 1000, memory
        if self.metrics is not None:
            self.metrics.redis_latency.set(latency)
            self.metrics.redis_memory.set(memory)

    # --- alerts -----------------------------------------------------------------------------

    def _check(self, now: datetime, taken: dict[str, QueueSnapshot], system: SystemSnapshot) -> None:
        settings = self.settings
        raised: dict[tuple[str, str | None], tuple[str, float, float]] = {}
        for queue, snap in taken.items():
            if snap.waiting > settings.alert_waiting:
                raised["backlog", queue] = (f"{snap.waiting} jobs wait in queue {queue}",
                                            snap.waiting, settings.alert_waiting)
            if snap.failed_recent and snap.failed_rate > settings.alert_failed_rate:
                raised["failed_rate", queue] = (
                    f"{snap.failed_rate:.0%} of queue {queue}'s finished attempts failed",
                    snap.failed_rate, settings.alert_failed_rate)
            if snap.stalled > settings.alert_stalled:
                raised["stalled", queue] = (f"{snap.stalled} leases expired in queue {queue}",
                                            snap.stalled, settings.alert_stalled)
        if system.store_error is not None:
            raised["store_unreachable", None] = (f"the store did not answer: {system.store_error}", 1, 0)
        if system.redis_error is not None:
            raised["redis_unreachable", None] = (f"Redis did not answer: {system.redis_error}", 1, 0)
        elif system.redis_latency_ms is not None and system.redis_latency_ms > settings.alert_redis_latency_ms:
            raised["redis_latency", None] = (f"a Redis round trip took {system.redis_latency_ms:.1f} ms",
                                             system.redis_latency_ms, settings.alert_redis_latency_ms)
        for key in [key for key in self.alerts if key not in raised]:
            alert = self.alerts.pop(key)
            log.info("alert cleared: %s", alert.message,
                     extra={"alert": alert.name, "queue": alert.queue, "event": "alert_cleared"})
            self._gauge(alert.name)
        for key, (message, value, threshold) in raised.items():
            current = self.alerts.get(key)
            if current is not None:  # still raised: keep its start, refresh the numbers
                self.alerts[key] = msgspec.structs.replace(current, message=message, value=value)
                continue
            alert = Alert(name=key[0], queue=key[1], message=message, value=value,
                          threshold=threshold, since=now)
            self.alerts[key] = alert
            log.warning("alert: %s", message, extra={"alert": alert.name, "queue": alert.queue,
                                                      "value": value, "threshold": threshold,
                                                      "event": "alert"})
            self._gauge(alert.name)
            if alert.queue != webhooks.WEBHOOK_QUEUE:  # the webhook that fails would carry it
                self.notify("alert", msgspec.to_builtins(alert))

    def _gauge(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts_active.labels(name).set(
                sum(1 for alert in self.alerts.values() if alert.name == name))

    # --- webhooks ---------------------------------------------------------------------------

    def notify(self, event: str, details: dict) -> None:
        """Announce a webhook (no-op without ``alert_webhook_url``) from the monitor's own task.
        Never blocks: a full queue drops the event and logs it."""
        if not self.settings.alert_webhook_url:
            return
        try:
            self._events_in.send_nowait((event, details))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.webhooks_dropped += 1
            log.warning("webhook queue full: dropped %s event", event, extra={"event": event})

    async def _announce_events(self) -> None:
        async for event, details in self._events:
            await self._announce(event, details)

    async def _announce(self, event: str, details: dict) -> None:
        """Store the webhook as a job (the workers send it); a store failure is logged."""
        try:
            await webhooks.announce(self.services, event, details)
        except StoreError as error:
            log.warning("webhook %s not announced: the store failed: %s", event, error,
                        extra={"event": event})
        else:
            self.webhooks_announced += 1

    def job_died(self, job: Job, reason: str) -> None:
        """The worker pool dead-lettered ``job`` (a listener: never blocks); posts are reported
        as ``post_failed`` webhooks by the monitor's own task."""
        log.warning("job %d attempt %d (%s) failed for good: %s", job.id, job.attempt, job.kind, reason,
                    extra={"job_id": job.id, "attempt": job.attempt, "queue": job.queue,
                           "kind": job.kind, "event": "dead"})
        if job.queue != POST_QUEUE:
            return
        try:
            self._deaths_in.send_nowait((job, reason))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.webhooks_dropped += 1
            log.warning("webhook queue full: dropped post_failed for job %d", job.id,
                        extra={"job_id": job.id, "attempt": job.attempt})

    async def _report_deaths(self) -> None:
        async for job, reason in self._deaths:
            details: dict[str, Any] = {"job_id": job.id, "attempt": job.attempt, "reason": reason}
            account = None
            try:
                post = await self.store.get_post_by_job(job.id)
                # The failure is settled now, so the owner's cached post lists are stale.
                await self.services.cache.invalidate_tags(post_list_tag(post.user_id))
                account = await self.store.get_account(post.account_id)
                record = await self.store.get_job_record(job.id)
                cause = record.failure_cause.value if record.failure_cause else None
                details.update(post_id=post.id, user_id=post.user_id, subreddit=post.content.subreddit,
                               title=post.content.title, account=account.reddit_username, cause=cause)
            except (NotFound, StoreError) as error:
                log.warning("failed post of job %d: no post details: %s", job.id, error,
                            extra={"job_id": job.id, "attempt": job.attempt})
            log.warning("post failed for good", extra={**details, "event": "post_failed"})
            await self._announce("post_failed", details)
            if account is not None and account.needs_relink and account.id not in self._relink_reported:
                self._relink_reported.add(account.id)
                await self._announce("account_needs_relink", {
                    "account_id": account.id, "user_id": account.user_id,
                    "account": account.reddit_username})


async def _redis_probe(link: Any) -> tuple[float, int]:
    """On the sidecar's loop: PING round trip (seconds) and INFO used_memory (bytes)."""
    client = link._client()
    started = time.perf_counter()
    await client.ping()
    latency = time.perf_counter() - started
    info = await client.info("memory")
    return latency, int(info.get("used_memory", 0))


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
