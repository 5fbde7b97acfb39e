"""The two-tier cache: memory (L1) in front of an optional Redis (L2), with stampede protection.

Reads
    ``get`` and ``get_or_load`` answer an L1 hit directly: a dict lookup in the calling task,
    no message, no checkpoint (an async call that returns at once). On an L1 miss they read L2
    (one MGET, shared by concurrent readers), then ``get_or_load`` runs the loader.
Stampedes
    Concurrent misses of one key in this process share one load (singleflight). Across
    processes, the loader first takes a short Redis lock (``SET NX PX``); a process that finds
    the lock taken polls L2 for the other's result for up to ``lock_wait_seconds``, then loads
    itself.
Writes
    ``set``, ``delete``, ``invalidate_tags`` and ``clear`` change L1 at once, then L2, and publish
    an invalidation on ``<namespace>:cache:inval``; every other process evicts the keys (or
    tags) from its L1 as the message arrives (well under 100 ms). A load that was in flight when
    an invalidation of its key arrived still answers its callers but does not fill L1 with a
    value that may be older than the write. A process whose subscription broke may have missed
    invalidations, so its L1 is emptied when the subscription is re-established.
Without Redis
    (or while it fails) on a store shared by several processes (Postgres), ``delete``,
    ``invalidate_tags`` and ``clear`` travel as store broadcasts (``bus``: LISTEN/NOTIFY), which
    every cache given the store follows, whether it has Redis or not (one that reaches Redis
    deletes the entries from L2 too, which the sender could not); when the store says
    broadcasts may have been missed (its listening connection was re-established), L1 is
    emptied. ``set`` without L2 is a fill, not announced: announcing every fill would make
    processes evict each other's fills forever.
Short-lived L1 copies
    ``set(..., l1_ttl=)`` caps how long any process keeps the entry in memory (also when it
    comes from L2), whatever its TTL in L2: for answers that must not outlive a lost
    invalidation by long (who a token belongs to).
Redis failures
    never fail a request: every L2 call is guarded by the ``redis`` breaker (with a generous
    timeout: a slow answer is not a failure); a failure or an open breaker means "L2 has
    nothing", and requests go on from L1 and the loader. While the breaker is open the actor
    probes Redis in the background and L2 use resumes by itself once a probe succeeds.
Staleness options
    ``stale_while_revalidate`` (seconds): after an entry's TTL, for that long, serve the old value
    and refresh it in the background (one load). ``serve_stale_on_error`` (seconds): keep the
    expired entry that long and answer with it if the loader fails.
Values
    anything msgspec can encode; L2 stores msgpack. A value read back from L2 is decoded as
    ``type`` when given (e.g. a ``msgspec.Struct``), else as plain msgpack types. Values are
    shared, not copied: do not mutate what you get.
TTLs
    ``ttl`` seconds, or a named ``ttl_class`` (``user_metrics`` 1 h, ``community`` 6 h,
    ``post_list`` 5 min by default; configurable), else ``default_ttl_seconds``. Each entry's TTL
    is shortened by a random share of up to ``jitter`` so that entries filled together do not all
    expire together.

Invalidation rules for the users named in issue 6 (each caches under its own key family):
optimal-times and analytics by user, tagged ``user:<id>`` and invalidated by tag when the user's
posts change; community rules by subreddit (``community`` class, tag ``sub:<name>``), invalidated
when a moderator-facing fetch sees a change; post lists tagged ``user:<id>`` and invalidated on
every enqueue, edit or cancel for that user.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import msgspec
import outcome
import trio

from thotto.breaker import Breaker, BreakerConfig, Breakers, BreakerState
from thotto.cache.local import LocalCache
from thotto.engine.clock import Clock
from thotto.errors import BreakerOpen
from thotto.engine.store.base import BROADCAST_MAX_BYTES

if TYPE_CHECKING:
    import actors
    from thotto.engine.aio import Sidecar
    from thotto.cache.redis import RedisLink
    from thotto.config import Settings
    from thotto.store.base import Store

log = logging.getLogger("thotto.cache")

DEFAULT_TTL_CLASSES: Mapping[str, float] = {
    "user_metrics": 3600.0,
    "community": 6 * 3600.0,
    "post_list": 300.0,
}

_MISSING: Any = object()
# What _on_message is told a store broadcast came on (for logs; Redis messages name their channel).
BROADCAST_CHANNEL = "store broadcast"


def _redis_breaker_config() -> BreakerConfig:
    # Redis is local and fast: a few failures in a row mean it is down; probe again soon.
    return BreakerConfig(consecutive_failures=3, failure_rate=0.5, min_calls=20, window_seconds=10.0,
                         open_seconds=0.5, backoff=2.0, max_open_seconds=10.0)


@dataclass(frozen=True)
class CacheConfig:
    """How the cache behaves. Build one from Settings with :meth:`from_settings`."""

    max_entries: int = 10_000
    """L1 holds at most this many entries (least recently used go first)."""
    max_bytes: int | None = 64 * 1024 * 1024
    """...and about this many bytes (estimated from the msgpack size); None: no limit."""
    default_ttl_seconds: float = 300.0
    ttl_classes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TTL_CLASSES))
    jitter: float = 0.1
    """Each entry's TTL is shortened by a random share in [0, jitter)."""
    stale_while_revalidate_seconds: float = 0.0
    """Default for ``get_or_load(stale_while_revalidate=)``."""
    serve_stale_on_error_seconds: float = 0.0
    """Default for ``get_or_load(serve_stale_on_error=)``."""
    redis_url: str | None = None
    """L2 and cross-process invalidation; None: memory only."""
    namespace: str = "thotto"
    """Prefix of every Redis key and channel (processes sharing a cache share it)."""
    redis_timeout_seconds: float = 2.0
    """Longest one Redis call may take before it counts as failed (and L2 is skipped). A slower
    answer within it is a success. Generous on purpose: on a loaded machine a healthy Redis
    answers in hundreds of milliseconds (our process waits for a core, and every caller queued
    behind one slow reply waits with it), and opening the breaker then would send every read to
    the database, adding load. A Redis that is down refuses connections at once, which counts
    at once; only a Redis that hangs costs this long, three times, before the breaker opens."""
    lock_seconds: float = 5.0
    """Life of the cross-process load lock (a crashed loader's lock expires after this)."""
    lock_wait_seconds: float = 2.0
    """How long a process waits for another's load (polling L2) before loading itself."""
    sweep_interval_seconds: float = 60.0
    """How often expired entries are dropped from L1 to free memory (reads never return an
    expired entry whatever this is; a rare sweep keeps an idle process idle)."""
    breaker: BreakerConfig = field(default_factory=_redis_breaker_config)
    """The ``redis`` breaker (used when the cache is not given a registry that has one)."""

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        for name, ttl in self.ttl_classes.items():
            if not ttl > 0:
                raise ValueError(f"TTL class {name!r} must be > 0 seconds, got {ttl}")

    def with_(self, **changes: Any) -> "CacheConfig":
        return replace(self, **changes)

    @classmethod
    def from_settings(cls, settings: "Settings", **overrides: Any) -> "CacheConfig":
        """The cache config the ``cache_*`` settings and ``redis_url`` describe."""
        values: dict[str, Any] = dict(
            max_entries=settings.cache_max_entries,
            max_bytes=int(settings.cache_max_mb * 1024 * 1024) if settings.cache_max_mb else None,
            redis_url=settings.redis_url,
            namespace=settings.redis_namespace,
            ttl_classes={
                **DEFAULT_TTL_CLASSES,
                "user_metrics": settings.cache_ttl_user_metrics_seconds,
                "community": settings.cache_ttl_community_seconds,
                "post_list": settings.cache_ttl_post_list_seconds,
            },
            default_ttl_seconds=settings.cache_default_ttl_seconds,
            jitter=settings.cache_ttl_jitter,
        )
        values.update(overrides)
        return cls(**values)


class CacheStats(msgspec.Struct, frozen=True):
    """The cache's counters at one instant (for metrics and health)."""

    keys: int
    bytes: int
    """Estimated memory held by L1 entries."""
    hits: int
    """Reads answered from L1 (fresh) or L2."""
    l1_hits: int
    l2_hits: int
    misses: int
    """Reads that found nothing in L1 or L2."""
    stale_hits: int
    """Stale values served while refreshing (stale-while-revalidate)."""
    stale_on_error: int
    """Stale values served because the loader failed."""
    loads: int
    load_errors: int
    load_seconds_total: float
    load_seconds_max: float
    coalesced: int
    """Callers that waited for another caller's load instead of loading (singleflight)."""
    lock_waits: int
    """Loads skipped because another process held the load lock and filled L2."""
    evictions_lru: int
    evictions_ttl: int
    evictions_manual: int
    invalidations_received: int
    """Invalidation messages from other processes."""
    l2: str
    """``off`` (no Redis configured), ``ok``, or ``degraded`` (Redis breaker not closed, or the
    invalidation subscription down)."""
    l2_breaker: str
    l2_errors: int
    l2_subscribed: bool
    bus_errors: int = 0
    """Invalidations the store could not broadcast (other processes' copies then expire)."""

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class _Envelope(msgspec.Struct, array_like=True):
    """What L2 stores under a key: absolute expiry (Unix seconds), tags, the value, and the
    longest a process may keep it in L1 (0: until it expires)."""

    expires: float
    tags: list[str]
    value: msgspec.Raw
    l1_ttl: float = 0.0


class _Flight:
    """One load in progress, shared by every caller that missed the key meanwhile."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        # Value or Error, read (never unwrapped) by each waiter; None once done means the
        # loading caller was cancelled.
        self.result: outcome.Value[Any] | outcome.Error | None = None

    def answer(self) -> Any:
        result = self.result
        if isinstance(result, outcome.Error):
            raise result.error
        assert result is not None
        return result.value


Loader = Callable[[], Awaitable[Any]]


class Cache:
    """The cache: call its methods from any Trio task; run :meth:`run` as an actor for L2.

    Without the actor running (or without ``redis_url``) the cache is memory only: every method
    works, loads are still coalesced, nothing is shared with other processes. The actor owns the
    Redis connection (on ``sidecar``, or a sidecar of its own), the invalidation listener,
    background refreshes, the Redis probe while the breaker is open, and the L1 sweep.

    ``breakers``: the registry to take the ``redis`` breaker from (so it shows with the others);
    else the cache makes its own. ``bus``: the store whose broadcasts carry invalidations
    between processes when Redis cannot (see the module docs). ``clock`` only supplies wall time
    for L2 expiry stamps (default: the system clock).
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        sidecar: "Sidecar | None" = None,
        breakers: Breakers | None = None,
        clock: Clock | None = None,
        bus: "Store | None" = None,
    ):
        self.config = config = config or CacheConfig()
        self._bus = bus
        self.l1 = LocalCache(config.max_entries, config.max_bytes)
        breaker_config = config.breaker.with_(call_timeout_seconds=config.redis_timeout_seconds)
        self.breaker: Breaker = (breakers.get("redis", breaker_config) if breakers is not None
                                 else Breaker("redis", breaker_config, clock=clock))  # fmt: skip
        self._sidecar = sidecar
        self._clock = clock
        self._link: RedisLink | None = None
        self._nursery: trio.Nursery | None = None
        self._subscribed = False
        self._flights: dict[str, _Flight] = {}
        self._refreshing: set[str] = set()
        self._origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
        self._lock_counter = 0
        self._ns = config.namespace
        self.channel = f"{config.namespace}:cache:inval"
        self._encoder = msgspec.msgpack.Encoder()
        self._envelope_decoder = msgspec.msgpack.Decoder(_Envelope)
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
        self._random = random.Random()
        # Invalidations seen while loads were in flight: (epoch, what) so a racing fill is not
        # stored in L1. Cleared whenever no load is in flight.
        self._epoch = 0
        self._key_epochs: dict[str, int] = {}
        self._tag_epochs: dict[str, int] = {}
        self._all_epoch = 0
        self._inflight = 0  # L2 reads and loads in flight
        # The prober sleeps until the Redis breaker leaves the closed state.
        self._breaker_moved = trio.Event()
        self.breaker.on_transition(lambda _b, _t: self._breaker_moved.set())
        # Counters.
        self._l2_hits = self._misses = self._stale_hits = self._stale_on_error = 0
        self._loads = self._load_errors = self._coalesced = self._lock_waits = 0
        self._load_seconds_total = self._load_seconds_max = 0.0
        self._l2_errors = self._invalidations_received = self._bus_errors = 0

    # --- the hot path ------------------------------------------------------------------------

    def peek(self, key: str, default: Any = None) -> Any:
        """L1 only, synchronous: the fresh value of ``key`` in memory, or ``default``."""
        return self.l1.get(key, default)

    async def get(self, key: str, default: Any = None, *, type: Any = None) -> Any:
        """The value of ``key`` from L1, else L2 (filling L1), else ``default``.

        An L1 hit returns without a checkpoint."""
        entry = self.l1.data.get(key)
        if entry is not None and entry.fresh_until > trio.current_time():
            self.l1.data.move_to_end(key)
            self.l1.hits += 1
            return entry.value
        self.l1.misses += 1
        found = await self._l2_read(key, type)
        if found is _MISSING:
            self._misses += 1
            return default
        return found

    async def get_many(self, keys: Iterable[str], *, type: Any = None) -> dict[str, Any]:
        """The values found for ``keys`` (L1, then one L2 MGET for the rest), by key."""
        now = trio.current_time()
        found: dict[str, Any] = {}
        wanted: list[str] = []
        data = self.l1.data
        for key in keys:
            entry = data.get(key)
            if entry is not None and entry.fresh_until > now:
                data.move_to_end(key)
                found[key] = entry.value
            else:
                wanted.append(key)
        self.l1.hits += len(found)
        self.l1.misses += len(wanted)
        if wanted and self._l2_ready():
            epoch = self._epoch
            self._inflight += 1
            try:
                async with self.breaker.guard():
                    raw = await self._link.get_many([self._l2_key(key) for key in wanted])  # type: ignore[union-attr]
            except Exception as error:  # noqa: BLE001 - Redis trouble is a miss
                self._l2_failed(error)
                raw = []
            finally:
                self._done_inflight()
            if raw:
                self._accept_many(wanted, raw, type, epoch, found)
        self._misses += sum(1 for key in wanted if key not in found)
        return found

    async def get_or_load(
        self,
        key: str,
        loader: Loader,
        *,
        ttl: float | None = None,
        ttl_class: str | None = None,
        tags: Iterable[str] = (),
        type: Any = None,
        stale_while_revalidate: float | None = None,
        serve_stale_on_error: float | None = None,
    ) -> Any:
        """The value of ``key``; on a miss, ``await loader()`` once for all concurrent callers
        (in this process; across processes through the Redis lock), store it, and return it.

        A loader error propagates to every caller waiting for that load (and nothing is
        stored), unless a stale value may be served (``serve_stale_on_error``). If the caller
        running the load is cancelled, one of the waiting callers loads instead. ``loader`` may
        also be a plain function.
        """
        now = trio.current_time()
        entry = self.l1.data.get(key)
        if entry is not None:
            if entry.fresh_until > now:
                self.l1.data.move_to_end(key)
                self.l1.hits += 1
                return entry.value
            if entry.stale_until > now:
                # Stale-while-revalidate: answer now, refresh once in the background.
                self._stale_hits += 1
                self.l1.data.move_to_end(key)
                if not self._refresh_soon(key, loader, ttl, ttl_class, tags, type,
                                          stale_while_revalidate, serve_stale_on_error):
                    return await self._load_shared(key, loader, ttl, ttl_class, tags, type,
                                                   stale_while_revalidate, serve_stale_on_error)
                return entry.value
        self.l1.misses += 1
        return await self._load_shared(key, loader, ttl, ttl_class, tags, type,
                                       stale_while_revalidate, serve_stale_on_error)

    # --- writes -----------------------------------------------------------------------------

    async def set(self, key: str, value: Any, *, ttl: float | None = None, ttl_class: str | None = None,
                  tags: Iterable[str] = (), l1_ttl: float | None = None) -> None:
        """Store ``value`` in L1 and L2 and evict ``key`` from the other processes' L1 (through
        Redis; without it, see the module docs). ``l1_ttl``: no process keeps it in memory
        longer than this."""
        tags = tuple(tags)
        seconds = self._ttl(ttl, ttl_class)
        if l1_ttl is not None and not l1_ttl > 0:
            raise ValueError(f"l1_ttl must be > 0 seconds, got {l1_ttl}")
        payload = self._encoder.encode(value)
        self._note_invalidated(keys=(key,))
        self._put_l1(key, value, min(seconds, l1_ttl or seconds), 0.0, 0.0, tags, len(payload))
        if self._l2_ready():
            await self._l2_write(key, payload, seconds, tags, publish=True, l1_ttl=l1_ttl or 0.0)

    async def delete(self, *keys: str) -> None:
        """Remove ``keys`` from L1 and L2, here and in every other process."""
        self._note_invalidated(keys=keys)
        for key in keys:
            self.l1.remove(key)
        await self._l2_delete(keys=keys)

    async def invalidate_tags(self, *tags: str) -> None:
        """Remove every entry tagged with any of ``tags``, here, in L2 and in other processes."""
        self._note_invalidated(tags=tags)
        for tag in tags:
            self.l1.remove_tag(tag)
        await self._l2_delete(tags=tags)

    async def clear(self) -> None:
        """Empty the cache: L1 here and in the other processes, and this namespace's L2 keys."""
        self._note_invalidated(everything=True)
        self.l1.clear()
        message = self._encoder.encode([self._origin, "*", []])
        if self._l2_ready():
            link = self._link
            assert link is not None
            try:
                await link.flush_prefix(f"{self._ns}:[ct]:*")
                await link.publish(self.channel, message)
                return
            except Exception as error:  # noqa: BLE001
                self._l2_failed(error)
        await self._broadcast(message)

    # --- telemetry ----------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        l1 = self.l1
        breaker = self.breaker.state
        if not self.config.redis_url:
            l2 = "off"
        elif breaker is BreakerState.CLOSED and self._subscribed and self._link is not None:
            l2 = "ok"
        else:
            l2 = "degraded"
        return CacheStats(
            keys=len(l1), bytes=l1.bytes,
            hits=l1.hits + self._l2_hits, l1_hits=l1.hits, l2_hits=self._l2_hits,
            misses=self._misses, stale_hits=self._stale_hits, stale_on_error=self._stale_on_error,
            loads=self._loads, load_errors=self._load_errors,
            load_seconds_total=self._load_seconds_total, load_seconds_max=self._load_seconds_max,
            coalesced=self._coalesced, lock_waits=self._lock_waits,
            evictions_lru=l1.evictions.lru, evictions_ttl=l1.evictions.ttl,
            evictions_manual=l1.evictions.manual,
            invalidations_received=self._invalidations_received,
            l2=l2, l2_breaker=breaker.value, l2_errors=self._l2_errors, l2_subscribed=self._subscribed,
            bus_errors=self._bus_errors,
        )

    # --- the actor -----------------------------------------------------------------------------

    async def run(self, ctx: "actors.ChildContext | None" = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The cache actor. Opens Redis (when configured) on the sidecar, subscribes to
        invalidations, sweeps L1 and probes Redis while its breaker is open, and runs
        background refreshes. ``task_status.started(self)`` once ready (a Redis that is down
        does not delay it: L2 joins when Redis answers). Returns when ``ctx.stopping`` is set;
        on return or cancellation background work is cancelled, the Redis client is closed and a
        sidecar it opened is stopped. The L1 contents survive (a restarted actor keeps them)."""
        async with contextlib.AsyncExitStack() as stack:
            link = None
            if self.config.redis_url:
                from thotto.cache.redis import RedisLink

                sidecar = self._sidecar
                if sidecar is None:
                    from thotto.engine.aio import open_sidecar

                    sidecar = await stack.enter_async_context(open_sidecar("thotto-cache"))
                link = RedisLink(self.config.redis_url, sidecar, timeout_seconds=self.config.redis_timeout_seconds)
                await link.open()
                stack.push_async_callback(link.aclose)
            broadcasts = None
            if self._bus is not None:
                # Opened before the nursery so that it is closed after the follower stops.
                broadcasts = await stack.enter_async_context(contextlib.aclosing(self._bus.broadcasts()))
            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(self._sweeper)
            if broadcasts is not None:
                nursery.start_soon(self._follow_broadcasts, broadcasts)
            if link is not None:
                await nursery.start(link.subscribe, [self.channel], self._on_message, self._on_subscription)
                self._link = link
                nursery.start_soon(self._prober)
            self._nursery = nursery
            stack.callback(self._detach)
            task_status.started(self)
            if ctx is None:
                await trio.sleep_forever()
            await ctx.stopping.wait()
            nursery.cancel_scope.cancel()

    def _detach(self) -> None:
        self._nursery = None
        self._link = None
        self._subscribed = False
        self._refreshing.clear()

    async def _sweeper(self) -> None:
        while True:
            await trio.sleep(self.config.sweep_interval_seconds)
            if len(self.l1):
                self.l1.expire(trio.current_time())

    async def _prober(self) -> None:
        """While the Redis breaker is open, probe Redis as soon as it half-opens, so that L2
        comes back without a user request paying for the probe."""
        breaker = self.breaker
        while True:
            if breaker.state is BreakerState.CLOSED:
                await self._breaker_moved.wait()
                self._breaker_moved = trio.Event()
                continue
            wait = breaker.retry_after()
            if wait > 0:
                await trio.sleep(wait)
                continue
            try:
                async with breaker.guard():
                    await self._link.ping()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - the breaker counted it
                await trio.sleep(0)

    async def _follow_broadcasts(self, broadcasts: Any) -> None:
        """Apply the invalidations other processes sent over the store; a gap (``None``: some
        may have been missed) empties L1."""
        async for message in broadcasts:
            if message is None:
                dropped = self.l1.clear()
                self._note_invalidated(everything=True)
                log.info("cache: store broadcasts may have been missed; dropped %d L1 entries", dropped)
            else:
                self._on_message(BROADCAST_CHANNEL, message)
                self._delete_from_l2_soon(message)

    def _delete_from_l2_soon(self, message: bytes) -> None:
        """An invalidation came over the store because its sender could not reach Redis, so L2
        may still hold what it invalidated (and refill every L1 with it): a process that can
        reach Redis deletes it there."""
        if self._nursery is None or not self._l2_ready():
            return
        try:
            origin, kind, names = msgspec.msgpack.decode(message)
        except (msgspec.DecodeError, ValueError, TypeError):
            return  # _on_message said so
        if origin != self._origin and kind in ("k", "t", "*"):
            self._nursery.start_soon(self._delete_from_l2, kind, list(names))

    async def _delete_from_l2(self, kind: str, names: list[str]) -> None:
        link = self._link
        if link is None:
            return
        try:
            async with self.breaker.guard():
                if kind == "*":
                    await link.flush_prefix(f"{self._ns}:[ct]:*")
                elif kind == "k":
                    await link.delete([self._l2_key(key) for key in names])
                else:
                    await link.delete([], [self._tag_key(tag) for tag in names])
        except Exception as error:  # noqa: BLE001 - Redis trouble: the entries expire by themselves
            self._l2_failed(error)

    def _on_subscription(self, connected: bool) -> None:
        if connected and not self._subscribed:
            # Invalidations may have been missed while unsubscribed: start L1 afresh.
            dropped = self.l1.clear()
            self._note_invalidated(everything=True)
            if dropped:
                log.info("cache: subscribed to invalidations; dropped %d L1 entries that may be stale", dropped)
        self._subscribed = connected

    def _on_message(self, _channel: str, data: bytes) -> None:
        try:
            origin, kind, names = msgspec.msgpack.decode(data)
        except (msgspec.DecodeError, ValueError, TypeError):
            log.warning("cache: ignoring a malformed invalidation %r", data[:100])
            return
        if origin == self._origin:
            return
        self._invalidations_received += 1
        if kind == "k":
            self._note_invalidated(keys=names)
            for key in names:
                self.l1.remove(key)
        elif kind == "t":
            self._note_invalidated(tags=names)
            for tag in names:
                self.l1.remove_tag(tag)
        elif kind == "*":
            self._note_invalidated(everything=True)
            self.l1.clear()

    # --- loading ------------------------------------------------------------------------------

    async def _load_shared(self, key: str, loader: Loader, ttl: float | None, ttl_class: str | None,
                           tags: Iterable[str], type: Any, swr: float | None, stale_error: float | None) -> Any:
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            self._coalesced += 1
            await flight.done.wait()
            if flight.result is not None:
                return flight.answer()
            # The loading caller was cancelled: try again (one of us becomes the loader).
        flight = _Flight()
        self._flights[key] = flight
        self._inflight += 1
        try:
            value = await self._fill(key, loader, ttl, ttl_class, tuple(tags), type, swr, stale_error, flight)
        except Exception as error:
            flight.result = outcome.Error(error)
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()
            self._done_inflight()
        return value

    async def _fill(self, key: str, loader: Loader, ttl: float | None, ttl_class: str | None,
                    tags: tuple[str, ...], type: Any, swr: float | None, stale_error: float | None,
                    flight: _Flight) -> Any:
        """Leader of a load: L2, else (under the cross-process lock) the loader. Sets
        ``flight.result`` as soon as the value is known, then writes L2."""
        seconds = self._ttl(ttl, ttl_class)
        swr = self.config.stale_while_revalidate_seconds if swr is None else swr
        stale_error = self.config.serve_stale_on_error_seconds if stale_error is None else stale_error
        epoch = self._epoch
        lock: tuple[str, bytes] | None = None
        if self._l2_ready():
            found = await self._l2_read(key, type, epoch=epoch)
            if found is not _MISSING:
                flight.result = outcome.Value(found)
                return found
            lock, found = await self._l2_lock_or_wait(key, type, epoch)
            if found is not _MISSING:
                flight.result = outcome.Value(found)
                return found
        try:
            self._misses += 1
            try:
                value = await self._run_loader(loader)
            except Exception as error:
                stale = self.l1.entry(key, trio.current_time())
                if stale is not None and stale_error > 0 and trio.current_time() < stale.fresh_until + stale_error:
                    self._stale_on_error += 1
                    log.info("cache: loader for %r failed (%s); serving the stale value", key, error)
                    flight.result = outcome.Value(stale.value)
                    return stale.value
                raise
            payload = self._encoder.encode(value)
            if self._fill_allowed(key, tags, epoch):
                self._put_l1(key, value, seconds, swr, stale_error, tags, len(payload))
            flight.result = outcome.Value(value)
            flight.done.set()  # waiters go on now; the L2 write below is ours alone
            if self._l2_ready():
                await self._l2_write(key, payload, seconds, tags, publish=False)
            return value
        finally:
            if lock is not None:
                await self._l2_unlock(*lock)

    async def _run_loader(self, loader: Loader) -> Any:
        started = trio.current_time()
        self._loads += 1
        try:
            result = loader()
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            self._load_errors += 1
            raise
        finally:
            elapsed = trio.current_time() - started
            self._load_seconds_total += elapsed
            self._load_seconds_max = max(self._load_seconds_max, elapsed)
        return result

    def _refresh_soon(self, key: str, loader: Loader, ttl: float | None, ttl_class: str | None,
                      tags: Iterable[str], type: Any, swr: float | None, stale_error: float | None) -> bool:
        """Start one background refresh of ``key``; False if there is no actor to run it."""
        if key in self._refreshing or key in self._flights:
            return True
        nursery = self._nursery
        if nursery is None:
            return False
        self._refreshing.add(key)
        tags = tuple(tags)

        async def refresh() -> None:
            try:
                await self._load_shared(key, loader, ttl, ttl_class, tags, type, swr, stale_error)
            except Exception as error:  # noqa: BLE001 - the stale value stays until it expires
                log.warning("cache: background refresh of %r failed: %s", key, error)
            finally:
                self._refreshing.discard(key)

        nursery.start_soon(refresh)
        return True

    # --- L1 helpers -------------------------------------------------------------------------------

    def _ttl(self, ttl: float | None, ttl_class: str | None) -> float:
        if ttl is not None:
            if not ttl > 0:
                raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
            return ttl
        if ttl_class is not None:
            try:
                return self.config.ttl_classes[ttl_class]
            except KeyError:
                raise ValueError(f"Unknown TTL class {ttl_class!r}; known: "
                                 f"{', '.join(sorted(self.config.ttl_classes))}") from None
        return self.config.default_ttl_seconds

    def _put_l1(self, key: str, value: Any, seconds: float, swr: float, stale_error: float,
                tags: tuple[str, ...], size: int) -> None:
        jitter = self.config.jitter
        if jitter:
            seconds *= 1.0 - jitter * self._random.random()
        now = trio.current_time()
        fresh = now + seconds
        self.l1.put(key, value, fresh_until=fresh, stale_until=fresh + swr,
                    keep_until=fresh + max(swr, stale_error), tags=tags, size=size)

    def _note_invalidated(self, *, keys: Iterable[str] = (), tags: Iterable[str] = (),
                          everything: bool = False) -> None:
        self._epoch += 1
        if not self._inflight:
            return  # no read or load in flight that could race
        epoch = self._epoch
        if everything:
            self._all_epoch = epoch
        for key in keys:
            self._key_epochs[key] = epoch
        for tag in tags:
            self._tag_epochs[tag] = epoch

    def _fill_allowed(self, key: str, tags: Iterable[str], since: int) -> bool:
        """False if ``key`` (or one of its tags, or everything) was invalidated after ``since``."""
        if self._epoch == since:
            return True
        if self._all_epoch > since or self._key_epochs.get(key, 0) > since:
            return False
        return not any(self._tag_epochs.get(tag, 0) > since for tag in tags)

    def _done_inflight(self) -> None:
        self._inflight -= 1
        if not self._inflight:
            self._key_epochs.clear()
            self._tag_epochs.clear()
            self._all_epoch = 0

    # --- L2 helpers -------------------------------------------------------------------------------

    def _l2_key(self, key: str) -> str:
        return f"{self._ns}:c:{key}"

    def _tag_key(self, tag: str) -> str:
        return f"{self._ns}:t:{tag}"

    def shared_redis(self) -> "RedisLink | None":
        """The Redis link while it works (its breaker closed), for other shared state (the
        API's request limits); None without Redis or while it is failing."""
        return self._link if self._l2_ready() else None

    def redis_failed(self, error: BaseException) -> None:
        """Tell the cache's Redis breaker a call through :meth:`shared_redis` failed."""
        self._l2_failed(error)

    def _l2_ready(self) -> bool:
        return self._link is not None and self.breaker.allow()

    def _wall(self) -> float:
        return self._clock.now().timestamp() if self._clock is not None else time.time()

    def _l2_failed(self, error: BaseException) -> None:
        if isinstance(error, BreakerOpen):
            return  # refused, not failed
        self._l2_errors += 1
        log.debug("cache: Redis call failed (%s: %s); using memory and the loader",
                  type(error).__name__, error)

    async def _l2_read(self, key: str, type: Any, epoch: int | None = None) -> Any:
        """The value from L2 (filling L1), or _MISSING (not there, or Redis unusable)."""
        if not self._l2_ready():
            return _MISSING
        epoch = self._epoch if epoch is None else epoch
        self._inflight += 1
        try:
            async with self.breaker.guard():
                payload = await self._link.get(self._l2_key(key))  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - Redis trouble is a miss
            self._l2_failed(error)
            return _MISSING
        finally:
            self._done_inflight()
        if payload is None:
            return _MISSING
        return self._accept_l2(key, payload, type, epoch)

    def _decoder(self, type: Any) -> msgspec.msgpack.Decoder[Any]:
        decoder = self._decoders.get(type)
        if decoder is None:
            decoder = msgspec.msgpack.Decoder(type) if type is not None else msgspec.msgpack.Decoder()
            self._decoders[type] = decoder
        return decoder

    def _accept_many(self, keys: list[str], payloads: list[bytes | None], type: Any, epoch: int,
                     found: dict[str, Any]) -> None:
        """``_accept_l2`` for a batch (one clock reading, one decoder lookup)."""
        decode_envelope = self._envelope_decoder.decode
        decode = self._decoder(type).decode
        wall = self._wall()
        now = trio.current_time()
        put = self.l1.put
        check = self._epoch != epoch
        hits = 0
        for key, payload in zip(keys, payloads):
            if payload is None:
                continue
            try:
                envelope = decode_envelope(payload)
                value = decode(envelope.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                log.warning("cache: undecodable L2 value for %r (%s); treating it as missing", key, error)
                continue
            remaining = envelope.expires - wall
            if remaining <= 0:
                continue
            found[key] = value
            hits += 1
            tags = envelope.tags
            if envelope.l1_ttl:
                remaining = min(remaining, envelope.l1_ttl)
            if not check or self._fill_allowed(key, tags, epoch):
                put(key, value, fresh_until=now + remaining, tags=tags, size=len(envelope.value))
        self._l2_hits += hits

    def _accept_l2(self, key: str, payload: bytes, type: Any, epoch: int) -> Any:
        try:
            envelope = self._envelope_decoder.decode(payload)
            value = self._decoder(type).decode(envelope.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("cache: undecodable L2 value for %r (%s); treating it as missing", key, error)
            return _MISSING
        remaining = envelope.expires - self._wall()
        if remaining <= 0:
            return _MISSING
        self._l2_hits += 1
        tags = tuple(envelope.tags)
        if envelope.l1_ttl:
            remaining = min(remaining, envelope.l1_ttl)
        if self._fill_allowed(key, tags, epoch):
            # No jitter: the entry already carries the writer's expiry.
            now = trio.current_time()
            self.l1.put(key, value, fresh_until=now + remaining, tags=tags, size=len(envelope.value))
        return value

    async def _l2_write(self, key: str, payload: bytes, seconds: float, tags: tuple[str, ...], *,
                        publish: bool, l1_ttl: float = 0.0) -> None:
        ttl_ms = max(1, math.ceil(seconds * 1000))
        expires = self._wall() + seconds
        envelope = self._encoder.encode(_Envelope(expires, list(tags), msgspec.Raw(payload), l1_ttl))
        message = (self.channel, self._encoder.encode([self._origin, "k", [key]])) if publish else None
        try:
            async with self.breaker.guard():
                await self._link.set_many(  # type: ignore[union-attr]
                    [(self._l2_key(key), envelope, ttl_ms)],
                    [(self._tag_key(tag), self._l2_key(key), ttl_ms) for tag in tags],
                    message,
                )
        except Exception as error:  # noqa: BLE001
            self._l2_failed(error)

    async def _l2_delete(self, *, keys: Sequence[str] = (), tags: Sequence[str] = ()) -> None:
        """Delete from L2 and tell the other processes, through Redis; when Redis cannot, through
        the store's broadcasts."""
        message = self._encoder.encode([self._origin, "t" if tags else "k", list(tags or keys)])
        if self._l2_ready():
            try:
                async with self.breaker.guard():
                    await self._link.delete(  # type: ignore[union-attr]
                        [self._l2_key(key) for key in keys], [self._tag_key(tag) for tag in tags],
                        (self.channel, message),
                    )
                return
            except Exception as error:  # noqa: BLE001
                self._l2_failed(error)
        await self._broadcast(message)

    async def _broadcast(self, message: bytes) -> None:
        """Send an invalidation over the store (if it is shared); one too long to broadcast
        becomes "forget everything"."""
        bus = self._bus
        if bus is None:
            return
        if len(message) > BROADCAST_MAX_BYTES:
            message = self._encoder.encode([self._origin, "*", []])
        try:
            await bus.broadcast(message)
        except Exception as error:  # noqa: BLE001 - as with Redis, a cache write never fails a request
            # The others' copies expire by themselves (token lookups within half a second).
            self._bus_errors += 1
            log.warning("cache: could not broadcast an invalidation over the store (%s: %s)",
                        type(error).__name__, error)

    async def _l2_lock_or_wait(self, key: str, type: Any, epoch: int) -> tuple[tuple[str, bytes] | None, Any]:
        """Take the cross-process load lock for ``key`` -> ((lock key, token), _MISSING); or,
        if another process holds it, wait for its value in L2 -> (None, value); or give up
        waiting / no Redis -> (None, _MISSING): load without the lock."""
        self._lock_counter += 1
        lock_key = f"{self._ns}:lock:{key}"
        token = self._origin + b":" + str(self._lock_counter).encode()
        try:
            async with self.breaker.guard():
                taken = await self._link.set_nx(lock_key, token, self.config.lock_seconds)  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001
            self._l2_failed(error)
            return None, _MISSING
        if taken:
            return (lock_key, token), _MISSING
        deadline = trio.current_time() + self.config.lock_wait_seconds
        pause = 0.005
        while trio.current_time() < deadline:
            await trio.sleep(pause)
            pause = min(pause * 2, 0.05)
            found = await self._l2_read(key, type, epoch=epoch)
            if found is not _MISSING:
                self._lock_waits += 1
                return None, found
            if not self._l2_ready():
                break
        return None, _MISSING

    async def _l2_unlock(self, lock_key: str, token: bytes) -> None:
        if self._link is None:
            return
        try:
            with trio.CancelScope(shield=True):
                async with self.breaker.guard():
                    await self._link.unlock(lock_key, token)
        except Exception as error:  # noqa: BLE001 - the lock expires by itself
            self._l2_failed(error)
