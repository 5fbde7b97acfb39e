"""Prometheus metrics for one engine, on Thotto's own registry (never the global one).

One :class:`Metrics` per engine (see :class:`thotto.services.Services`), so several engines in one
process each expose their own numbers. Most metrics are read at scrape time from telemetry the
parts already keep, so the hot paths pay nothing for them:

* the worker pool's per-(queue, kind) outcome counters and job timings
  (:class:`~thotto.engine.workers.Timings`),
* the sweeper's expired-lease counts, the supervisor's restart counts,
* the cache's :meth:`~thotto.cache.Cache.stats` and the breakers' snapshots,
* queue depths from ``Store.counts`` (refreshed by ``/metrics`` itself and by the monitor),
* Redis latency and memory from the monitor's last probe.

Kept here: HTTP request durations (timed by the API's
:class:`~thotto.api.endpoints.MetricsMiddleware`), and store operation latency, batch sizes,
errors and jobs enqueued (:class:`TimedStore` wraps the store: one plain accumulator per call,
read at scrape time like the rest; claims and settles are batches; the store itself is left as
it is).
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    SummaryMetricFamily,
)

import actors
from thotto.breaker import Breakers
from thotto.cache import Cache
from thotto.engine.jobs import JobState
from thotto.engine.store.base import JobStore
from thotto.engine.sweeper import Sweeper
from thotto.engine.workers import Timings, WorkerPool
from thotto.store.base import POST_JOB_KIND, POST_QUEUE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
STORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# Store methods timed, and those whose size is worth a histogram (how it is measured).
TIMED_OPERATIONS = (
    "enqueue", "enqueue_many", "claim", "heartbeat", "settle", "release_expired", "get_job",
    "cancel", "reschedule", "redrive", "purge", "counts", "next_due", "attempts", "create_posts",
    "get_post_by_job", "record_publication", "arm_post", "disarm_post", "queue_activity",
)
_BATCH_OF_ARGUMENT = {"enqueue_many": 0, "settle": 1, "heartbeat": 1, "create_posts": 0}


class TimedStore:
    """A store whose calls are timed: each Store method is the wrapped store's, those named in
    :data:`TIMED_OPERATIONS` through a timer of :class:`Metrics` (latency, errors, batch sizes,
    jobs enqueued). Made by :meth:`Metrics.timed_store`; the wrapped store is ``.store``."""

    def __init__(self, store: JobStore, metrics: "Metrics"):
        self.store = store
        # Instance attributes, found by the ordinary lookup: going through __getattr__ costs a
        # failed lookup and its AttributeError on every call (~16k instructions, as much as the
        # timer itself).
        for name in TIMED_OPERATIONS:
            if hasattr(store, name):
                setattr(self, name, metrics._timed(name, getattr(store, name)))

    def __getattr__(self, name: str) -> Any:
        """What is not timed is the store's own (looked up only when no attribute matched)."""
        return getattr(self.__dict__["store"], name)

    def __repr__(self) -> str:
        return f"TimedStore({self.store!r})"


class Metrics:
    """Every metric of one engine, on :attr:`registry`. Build one per engine; :meth:`bind_actors`
    connects the actors' telemetry, :meth:`render` is the ``/metrics`` text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_duration = Histogram(
            "thotto_http_request_duration_seconds", "HTTP request duration by route and status.",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge(
            "thotto_queue_jobs", "Jobs per queue and state (store-wide: aggregate with max, "
            "not sum, across processes).", ["queue", "state"], registry=self.registry)
        self.queue_waiting = Gauge(
            "thotto_queue_waiting", "Jobs due and unclaimed per queue, at the monitor's last "
            "snapshot (store-wide).", ["queue"], registry=self.registry)
        self.redis_latency = Gauge(
            "thotto_redis_latency_seconds", "Last Redis PING round trip (the monitor's probe).",
            registry=self.registry)
        self.redis_memory = Gauge(
            "thotto_redis_memory_bytes", "Redis used_memory (INFO memory).", registry=self.registry)
        self.alerts_active = Gauge(
            "thotto_alerts_active", "Alerts raised by the last monitor snapshot.", ["alert"],
            registry=self.registry)
        self.webhooks = Counter(
            "thotto_webhooks", "Webhook deliveries by result.", ["result"], registry=self.registry)
        # The store's timers: plain accumulators on Trio's thread, read at scrape time (a
        # prometheus_client histogram and counter, each with its lock, cost ~2 µs a call: a
        # twentieth of a lone SQLite enqueue).
        self.store_operations: dict[str, StoreOperation] = {}
        self.jobs_enqueued: collections.Counter[tuple[str, str]] = collections.Counter()
        self._actors: _Actors | None = None
        self._services: _Services | None = None
        self.registry.register(_TelemetryCollector(self))

    # --- wiring ---------------------------------------------------------------------------

    def bind_services(self, cache: Cache, breakers: Breakers) -> None:
        """Read cache and breaker telemetry from these services at scrape time."""
        self._services = _Services(cache, breakers)

    def bind_actors(self, pool: WorkerPool, sweeper: Sweeper, supervisor: actors.Supervisor) -> None:
        """Read the pool, sweeper and supervisor telemetry at scrape time."""
        self._actors = _Actors(pool, sweeper, supervisor)

    def timed_store(self, store: JobStore) -> "TimedStore":
        """``store`` wrapped so that its calls are timed and enqueued jobs counted here."""
        return TimedStore(store, self)

    def _timed(self, name: str, method: Any) -> Any:
        # One timer per operation name, shared if a second store is wrapped (as the labelled
        # prometheus children were).
        operation = self.store_operations.setdefault(
            name, StoreOperation(sized=name in _BATCH_OF_ARGUMENT or name == "claim"))
        latency, batch = operation.latency, operation.batch
        position = _BATCH_OF_ARGUMENT.get(name)
        counted = self._count_enqueued if name in ("enqueue", "enqueue_many", "create_posts") else None
        perf_counter = time.perf_counter

        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = perf_counter()
            try:
                result = await method(*args, **kwargs)
            except BaseException as error:
                if isinstance(error, Exception):
                    operation.errors += 1
                raise
            finally:
                latency.observe(perf_counter() - started)
            if batch is not None:
                batch.observe(len(result) if position is None else len(args[position]))
            if counted is not None:
                counted(name, args, result)
            return result

        return timed

    def _count_enqueued(self, name: str, args: tuple, result: Any) -> None:
        if name == "create_posts":
            self.jobs_enqueued[POST_QUEUE, POST_JOB_KIND] += len(result)
        elif name == "enqueue":
            if result.created:
                self.jobs_enqueued[args[0].queue, args[0].kind] += 1
        else:
            self.jobs_enqueued.update(
                (job.queue, job.kind) for job, outcome in zip(args[0], result) if outcome.created)

    # --- reading --------------------------------------------------------------------------

    def set_queue_counts(self, counts: Iterable[Any]) -> None:
        """Replace the queue depth gauges with ``Store.counts()`` (states absent count 0)."""
        seen = {(count.queue, count.state.value): count.count for count in counts}
        for queue in {queue for queue, _ in seen} | {labels[0] for labels in self._depth_labels()}:
            for state in JobState:
                self.queue_depth.labels(queue, state.value).set(seen.get((queue, state.value), 0))

    def _depth_labels(self) -> list[tuple[str, ...]]:
        return [tuple(sample.labels.values()) for metric in self.queue_depth.collect()
                for sample in metric.samples]

    async def refresh(self, store: JobStore) -> None:
        """Update what must be read asynchronously (queue depths) before a scrape."""
        self.set_queue_counts(await store.counts())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class StoreOperation:
    """The timer of one store operation: latency (seconds), items per call for the batched
    ones, and the calls that raised."""

    __slots__ = ("latency", "batch", "errors")

    def __init__(self, *, sized: bool) -> None:
        self.latency = Timings(STORE_BUCKETS)
        self.batch = Timings(BATCH_BUCKETS) if sized else None
        self.errors = 0


class _Services(NamedTuple):
    cache: Cache
    breakers: Breakers


class _Actors(NamedTuple):
    pool: WorkerPool
    sweeper: Sweeper
    supervisor: actors.Supervisor


class _TelemetryCollector:
    """Reads the actors' own counters at scrape time (see the module docstring)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        yield from self._store()
        yield from self._jobs()
        yield from self._actors()
        yield from self._cache()
        yield from self._breakers()

    def _store(self) -> Iterable[Any]:
        latency = HistogramMetricFamily("thotto_store_operation_seconds",
                                        "Store call latency by operation.", labels=["operation"])
        batch = HistogramMetricFamily("thotto_store_batch_size", "Items per batched store call "
                                      "(claimed, settled, enqueued).", labels=["operation"])
        errors = CounterMetricFamily("thotto_store_errors", "Store calls that raised, by operation.",
                                     labels=["operation"])
        for name, operation in self.metrics.store_operations.items():
            latency.add_metric([name], operation.latency.buckets(), operation.latency.sum)
            if operation.batch is not None:
                batch.add_metric([name], operation.batch.buckets(), operation.batch.sum)
            errors.add_metric([name], operation.errors)
        enqueued = CounterMetricFamily("thotto_jobs_enqueued", "Jobs created (deduplicated "
                                       "enqueues excluded).", labels=["queue", "kind"])
        for (queue, kind), count in self.metrics.jobs_enqueued.items():
            enqueued.add_metric([queue, kind], count)
        yield from (latency, batch, errors, enqueued)

    def _jobs(self) -> Iterable[Any]:
        tree = self.metrics._actors
        finished = CounterMetricFamily("thotto_jobs", "Job attempts finished in this process, "
                                       "by queue, kind and outcome.", labels=["queue", "kind", "outcome"])
        duration = HistogramMetricFamily("thotto_job_duration_seconds", "Handler run time.",
                                         labels=["queue", "kind"])
        lateness = HistogramMetricFamily("thotto_job_lateness_seconds",
                                         "Start time minus due time.", labels=["queue", "kind"])
        expired = CounterMetricFamily("thotto_leases_expired", "Leases that expired and were "
                                      "taken back by this process's sweeper, by what happened.",
                                      labels=["result"])
        lost = CounterMetricFamily("thotto_leases_lost", "Jobs whose lease this process lost "
                                   "while running them.")
        if tree is not None:
            pool = tree.pool
            for outcome, counter in pool.finished.items():
                for (queue, kind), count in counter.items():
                    finished.add_metric([queue, kind, outcome], count)
            for (queue, kind), timing in pool.timings.items():
                duration.add_metric([queue, kind], timing.duration.buckets(), timing.duration.sum)
                lateness.add_metric([queue, kind], timing.lateness.buckets(), timing.lateness.sum)
            expired.add_metric(["pending"], tree.sweeper.released)
            expired.add_metric(["dead"], tree.sweeper.dead)
            lost.add_metric([], pool.counts["lease_lost"])
        yield from (finished, duration, lateness, expired, lost)

    def _actors(self) -> Iterable[Any]:
        restarts = CounterMetricFamily("thotto_actor_restarts", "Restarts per actor.", labels=["actor"])
        up = GaugeMetricFamily("thotto_actor_up", "1 while the actor runs.", labels=["actor"])
        tree = self.metrics._actors
        if tree is not None:
            for child in tree.supervisor.children():
                restarts.add_metric([child.name], child.restart_count)
                up.add_metric([child.name], 1.0 if child.state.value == "running" else 0.0)
        yield from (restarts, up)

    def _cache(self) -> Iterable[Any]:
        services = self.metrics._services
        if services is None:
            return
        stats = services.cache.stats()
        hits = CounterMetricFamily("thotto_cache_hits", "Cache reads answered, by tier.", labels=["tier"])
        hits.add_metric(["l1"], stats.l1_hits)
        hits.add_metric(["l2"], stats.l2_hits)
        misses = CounterMetricFamily("thotto_cache_misses", "Cache reads that found nothing.")
        misses.add_metric([], stats.misses)
        evictions = CounterMetricFamily("thotto_cache_evictions", "L1 evictions by reason.", labels=["reason"])
        for reason, count in (("lru", stats.evictions_lru), ("ttl", stats.evictions_ttl),
                              ("manual", stats.evictions_manual)):
            evictions.add_metric([reason], count)
        loads = SummaryMetricFamily("thotto_cache_load_seconds", "Time spent in cache loaders.",
                                    count_value=stats.loads, sum_value=stats.load_seconds_total)
        load_errors = CounterMetricFamily("thotto_cache_load_errors", "Loader failures.")
        load_errors.add_metric([], stats.load_errors)
        entries = GaugeMetricFamily("thotto_cache_entries", "Entries in L1.", value=stats.keys)
        size = GaugeMetricFamily("thotto_cache_bytes", "Estimated bytes held by L1.", value=stats.bytes)
        l2_up = GaugeMetricFamily("thotto_cache_l2_up", "1 when Redis (L2) is configured and healthy.",
                                  value=1.0 if stats.l2 == "ok" else 0.0)
        yield from (hits, misses, evictions, loads, load_errors, entries, size, l2_up)

    def _breakers(self) -> Iterable[Any]:
        services = self.metrics._services
        if services is None:
            return
        state = GaugeMetricFamily("thotto_breaker_state", "1 for the state each breaker is in.",
                                  labels=["breaker", "state"])
        transitions = CounterMetricFamily("thotto_breaker_transitions", "Breaker changes of state.",
                                          labels=["breaker", "transition"])
        rejected = CounterMetricFamily("thotto_breaker_rejected", "Calls refused while not closed.",
                                       labels=["breaker"])
        snapshots = dict(services.breakers.snapshot())
        redis = services.cache.breaker.snapshot()
        snapshots.setdefault(redis.name, redis)
        for name, snap in sorted(snapshots.items()):
            for candidate in ("closed", "open", "half_open"):
                state.add_metric([name, candidate], 1.0 if snap.state == candidate else 0.0)
            for change, count in snap.transitions.items():
                transitions.add_metric([name, change], count)
            rejected.add_metric([name], snap.rejected)
        yield from (state, transitions, rejected)
