"""Circuit breakers: stop calling a dependency that keeps failing, and try it again later.

One :class:`Breaker` per dependency, made and configured by name in a :class:`Breakers`
registry. Names are dotted: ``reddit.client.<client id>``, ``reddit.account.<name>``, ``redis``,
``database``; an embedder registers its own. A breaker is

- **closed**: calls go through and their outcomes are counted in a rolling time window. It trips
  (opens) when, over the window, at least ``min_calls`` calls were made and the share that failed
  reaches ``failure_rate``, or after ``consecutive_failures`` failures in a row. With
  ``slow_call_seconds`` set, a call that succeeds but takes that long counts as a failure too.
- **open**: calls are refused at once with :class:`~thotto.errors.BreakerOpen`, a
  :class:`~thotto.errors.DeferJob` whose ``until`` is when the breaker half-opens, so a job that
  meets an open breaker is deferred without spending an attempt. Each trip in a row stays open
  longer: ``open_seconds`` times ``backoff`` per earlier trip, at most ``max_open_seconds``.
- **half-open**: ``half_open_probes`` calls (probes) may run at once; once that many have succeeded
  the breaker closes, and the first probe that fails opens it again for longer.

The ``counts`` predicate decides which exceptions are failures. By default every ``Exception``
counts except :class:`~thotto.errors.PermanentJobError` (Reddit's permanent errors: the dependency
answered, the request was wrong) and :class:`~thotto.errors.BreakerOpen` (an inner breaker's
refusal says nothing about this dependency); an exception that does not count is a success.
Cancellation is neither: the call did not finish.

Use it as ``async with breaker.guard(): ...`` or ``await breaker.call(fn, *args)`` (with an
optional per-call timeout and fallback). ``breaker.allow()`` and ``breaker.state`` are plain,
cheap calls for a fast check before doing work. Time is Trio's clock (``trio.current_time()``),
so tests under ``autojump_clock`` are exact.

Sharing (optional): :meth:`Breakers.run` with a Redis URL publishes each trip and close to the
other processes, which follow it (open until the same instant; close when one of them closed after
a good probe), and half-open probes take a short Redis lock, so that N processes send one probe
between them instead of each hammering a dead dependency. When Redis is unreachable each process
simply decides alone.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fnmatch
import inspect
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from thotto.engine.clock import Clock, SystemClock
from thotto.engine.errors import PermanentJobError
from thotto.errors import BreakerOpen

if TYPE_CHECKING:
    import actors
    from thotto.engine.aio import Sidecar

log = logging.getLogger("thotto.breaker")

T = TypeVar("T")


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def counts_by_default(error: BaseException) -> bool:
    """The default ``counts`` predicate: every Exception is a failure except permanent job
    errors (the dependency answered; the request was wrong) and another breaker's refusal."""
    return isinstance(error, Exception) and not isinstance(error, (PermanentJobError, BreakerOpen))


@dataclass(frozen=True)
class BreakerConfig:
    """How one breaker trips and recovers. Immutable; derive variants with :meth:`with_`."""

    failure_rate: float = 0.5
    """Trip when this share (0-1] of the calls in the window failed..."""
    min_calls: int = 10
    """...and at least this many calls were made in the window."""
    window_seconds: float = 30.0
    """Length of the rolling window."""
    window_buckets: int = 10
    """The window moves in steps of ``window_seconds / window_buckets``."""
    consecutive_failures: int = 5
    """Trip after this many failures in a row, whatever the volume (0: never)."""
    slow_call_seconds: float | None = None
    """A successful call that took at least this long counts as a failure (None: never)."""
    half_open_probes: int = 1
    """Calls let through at once while half-open; that many successes close the breaker."""
    open_seconds: float = 5.0
    """How long the first trip stays open."""
    backoff: float = 2.0
    """Each further trip in a row stays open this many times longer..."""
    max_open_seconds: float = 300.0
    """...up to this."""
    call_timeout_seconds: float | None = None
    """Default per-call timeout of ``guard``/``call``: a call that takes longer is cancelled and
    fails with ``trio.TooSlowError`` (which counts). None: no timeout."""
    counts: Callable[[BaseException], bool] = counts_by_default
    """Which exceptions are failures (see the module docs)."""
    shared: bool = True
    """Follow and publish trips through Redis when the registry shares state."""

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {self.failure_rate}")
        if self.min_calls < 1 or self.window_buckets < 1 or not self.window_seconds > 0:
            raise ValueError("min_calls and window_buckets must be >= 1 and window_seconds > 0")
        if self.consecutive_failures < 0:
            raise ValueError("consecutive_failures must be >= 0 (0 turns it off)")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be >= 1")
        if not 0 < self.open_seconds <= self.max_open_seconds or self.backoff < 1:
            raise ValueError("need 0 < open_seconds <= max_open_seconds and backoff >= 1")
        if self.call_timeout_seconds is not None and not self.call_timeout_seconds > 0:
            raise ValueError("call_timeout_seconds must be > 0 or None")

    def with_(self, **changes: Any) -> "BreakerConfig":
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


# --- snapshots -----------------------------------------------------------------------------------


class Transition(msgspec.Struct, frozen=True):
    """One change of state. ``at`` is wall-clock time; ``remote`` when another process caused it."""

    breaker: str
    old: str
    new: str
    reason: str
    at: datetime
    remote: bool = False


class BreakerSnapshot(msgspec.Struct, frozen=True):
    """A breaker's state and counters at one instant, for metrics and health."""

    name: str
    state: str
    calls: int
    """Calls that finished (successes + failures), since start."""
    successes: int
    failures: int
    slow: int
    """Calls that succeeded slowly (and counted as failures)."""
    timeouts: int
    """Calls cut off by the per-call timeout (also in failures)."""
    rejected: int
    """Calls refused while open or half-open."""
    window_calls: int
    window_failures: int
    consecutive_failures: int
    trips: int
    """Trips in a row (the backoff exponent); 0 once closed again."""
    opened: int
    """Times it opened, since start."""
    open_remaining_seconds: float
    """Until half-open (0 unless open)."""
    transitions: dict[str, int]
    """Counts per ``"closed->open"`` etc."""
    recent: list[Transition]


# --- the rolling window ---------------------------------------------------------------------------


class _Window:
    """Call and failure counts over the last ``seconds``, in ``buckets`` fixed time slots."""

    __slots__ = ("width", "size", "stamps", "calls", "bad")

    def __init__(self, seconds: float, buckets: int):
        self.width = seconds / buckets
        self.size = buckets
        self.reset()

    def reset(self) -> None:
        self.stamps = [-1] * self.size  # the absolute slot number each bucket holds
        self.calls = [0] * self.size
        self.bad = [0] * self.size

    def add(self, now: float, bad: bool) -> None:
        slot = math.floor(now / self.width)
        i = slot % self.size
        if self.stamps[i] != slot:
            self.stamps[i], self.calls[i], self.bad[i] = slot, 0, 0
        self.calls[i] += 1
        self.bad[i] += bad

    def totals(self, now: float) -> tuple[int, int]:
        oldest = math.floor(now / self.width) - self.size + 1
        calls = bad = 0
        for i in range(self.size):
            if self.stamps[i] >= oldest:
                calls += self.calls[i]
                bad += self.bad[i]
        return calls, bad


# --- the breaker -----------------------------------------------------------------------------------

_DEFAULT: Any = object()

TransitionListener = Callable[["Breaker", Transition], None]


class Breaker:
    """One circuit breaker. Make it with :meth:`Breakers.get` (or directly, unshared).

    Holds no resource; all methods run in the Trio thread. ``clock`` maps Trio time to the wall
    clock for :class:`~thotto.errors.BreakerOpen`'s ``until`` (default: the system clock; pass a
    :class:`~thotto.engine.clock.TrioClock` in virtual-time tests).
    """

    def __init__(self, name: str, config: BreakerConfig | None = None, *, clock: Clock | None = None):
        self.name = name
        self.config = config or BreakerConfig()
        self.clock = clock or SystemClock()
        self._state = BreakerState.CLOSED
        self._open_until = 0.0  # Trio time
        self._trips = 0
        self._consecutive = 0
        self._probes = 0  # probes in flight
        self._probe_successes = 0
        self._window = _Window(self.config.window_seconds, self.config.window_buckets)
        self._successes = self._failures = self._slow = self._timeouts = self._rejected = 0
        self._opened = 0
        self._transitions: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[Transition] = collections.deque(maxlen=20)
        self._listeners: list[TransitionListener] = []
        # Set by a sharing registry: takes the cross-process probe lock (False: another process
        # probes now, so this call is refused).
        self._probe_lock: Callable[[Breaker], Awaitable[bool]] | None = None

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r} {self.state.value}>"

    # --- fast checks --------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose time is up reads as half-open)."""
        if self._state is BreakerState.OPEN:
            self._refresh(trio.current_time())
        return self._state

    def allow(self) -> bool:
        """Would a call be let through now? A direct call; reserves nothing."""
        if self._state is BreakerState.CLOSED:
            return True
        self._refresh(trio.current_time())
        return self._state is BreakerState.HALF_OPEN and self._probes < self.config.half_open_probes

    def retry_after(self) -> float:
        """Seconds until a call may be let through (0 if now)."""
        if self.allow():
            return 0.0
        if self._state is BreakerState.OPEN:
            return max(0.0, self._open_until - trio.current_time())
        # Half-open with every probe slot taken: about one call's time.
        return self.config.call_timeout_seconds or min(1.0, self.config.open_seconds)

    def open_error(self) -> BreakerOpen:
        """The :class:`BreakerOpen` a refused call raises (``until`` = when it half-opens)."""
        wait = self.retry_after()
        if self._state is BreakerState.OPEN:
            what = f"open for {wait:.3g} s more"
        else:
            what = "half-open and already probing"
        return BreakerOpen(
            f"Circuit breaker {self.name!r} is {what}: the dependency has been failing",
            until=self.clock.now() + timedelta(seconds=wait), breaker=self.name, retry_after=wait,
        )

    # --- guarded calls --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def guard(self, *, timeout: float | None = _DEFAULT) -> AsyncIterator[None]:
        """``async with breaker.guard(): ...``: refuse (raise BreakerOpen) or run the body and
        count its outcome. ``timeout`` (default: the config's ``call_timeout_seconds``) cancels a
        body that takes longer and raises ``trio.TooSlowError``, which counts as a failure."""
        probe = self._acquire()
        if probe and self._probe_lock is not None:
            try:
                mine = await self._probe_lock(self)
            except BaseException:
                self._probes -= 1
                raise
            if not mine:
                self._probes -= 1
                self._rejected += 1
                raise self.open_error()
        if timeout is _DEFAULT:
            timeout = self.config.call_timeout_seconds
        started = trio.current_time()
        try:
            if timeout is None:
                yield
            else:
                with trio.fail_after(timeout):
                    yield
        except BaseException as error:
            self._finish(probe, started, error)
            raise
        self._finish(probe, started, None)

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        timeout: float | None = _DEFAULT,
        fallback: Callable[[BaseException], Any] | None = None,
    ) -> T:
        """``await fn(*args)`` under :meth:`guard`.

        With ``fallback``, a refusal (BreakerOpen) or a counted failure returns
        ``fallback(error)`` (awaited if it returns an awaitable) instead of raising; errors the
        predicate does not count, and cancellation, still propagate.
        """
        try:
            async with self.guard(timeout=timeout):
                return await fn(*args)
        except Exception as error:
            if fallback is None or not (isinstance(error, BreakerOpen) or self.config.counts(error)):
                raise
            result = fallback(error)
            if inspect.isawaitable(result):
                result = await result
            return result

    # --- outcomes reported by hand -------------------------------------------------------------

    def record_failure(self, error: BaseException | None = None, seconds: float = 0.0) -> None:
        """Count a call made without :meth:`guard` that failed (``error`` is checked against the
        predicate when given)."""
        if error is not None and not self.config.counts(error):
            self._record(False, seconds, trio.current_time())
        else:
            self._record(True, seconds, trio.current_time())

    # --- manual control ------------------------------------------------------------------------

    def force_open(self, seconds: float | None = None, reason: str = "opened by hand") -> None:
        """Open now, for ``seconds`` (default: the next backoff step)."""
        self._trip(trio.current_time(), reason, seconds=seconds)

    def reset(self, reason: str = "reset by hand") -> None:
        """Close now and forget the counts."""
        self._close(reason)

    def on_transition(self, listener: TransitionListener) -> None:
        """Call ``listener(breaker, transition)`` (in the Trio thread) after each change of
        state. A listener must not raise or block."""
        self._listeners.append(listener)

    # --- snapshot ----------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        now = trio.current_time()
        state = self.state
        window_calls, window_bad = self._window.totals(now)
        return BreakerSnapshot(
            name=self.name,
            state=state.value,
            calls=self._successes + self._failures,
            successes=self._successes,
            failures=self._failures,
            slow=self._slow,
            timeouts=self._timeouts,
            rejected=self._rejected,
            window_calls=window_calls,
            window_failures=window_bad,
            consecutive_failures=self._consecutive,
            trips=self._trips,
            opened=self._opened,
            open_remaining_seconds=max(0.0, self._open_until - now) if state is BreakerState.OPEN else 0.0,
            transitions=dict(self._transitions),
            recent=list(self._recent),
        )

    # --- internals -------------------------------------------------------------------------------

    def _acquire(self) -> bool:
        """Let a call through (True if it is a half-open probe) or raise BreakerOpen."""
        if self._state is BreakerState.CLOSED:
            return False
        self._refresh(trio.current_time())
        if self._state is BreakerState.HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        if self._state is BreakerState.CLOSED:  # a remote close raced in
            return False
        self._rejected += 1
        raise self.open_error()

    def _finish(self, probe: bool, started: float, error: BaseException | None) -> None:
        now = trio.current_time()
        if probe:
            self._probes -= 1
        if error is not None and not isinstance(error, Exception):
            return  # cancelled (or KeyboardInterrupt): the call did not finish, count nothing
        if isinstance(error, trio.TooSlowError):
            self._timeouts += 1
        failed = error is not None and self.config.counts(error)
        self._record(failed, now - started, now, probe=probe)

    def _record(self, failed: bool, seconds: float, now: float, *, probe: bool = True) -> None:
        slow = (not failed and self.config.slow_call_seconds is not None
                and seconds >= self.config.slow_call_seconds)  # fmt: skip
        bad = failed or slow
        if bad:
            self._failures += 1
            self._slow += slow
        else:
            self._successes += 1
        if self._state is BreakerState.OPEN:
            self._refresh(now)
        state = self._state
        if state is BreakerState.CLOSED:
            self._window.add(now, bad)
            self._consecutive = self._consecutive + 1 if bad else 0
            if not bad:
                return
            config = self.config
            if config.consecutive_failures and self._consecutive >= config.consecutive_failures:
                self._trip(now, f"{self._consecutive} failures in a row")
                return
            calls, bad_calls = self._window.totals(now)
            if calls >= config.min_calls and bad_calls >= config.failure_rate * calls:
                self._trip(now, f"{bad_calls} of {calls} calls failed in {config.window_seconds:g} s")
        elif state is BreakerState.HALF_OPEN and probe:
            if bad:
                self._trip(now, "a probe failed" + (" (slow)" if slow else ""))
            else:
                self._probe_successes += 1
                if self._probe_successes >= self.config.half_open_probes:
                    self._close(f"{self._probe_successes} probe(s) succeeded")
        # Open: a call let through before the trip finished late; counted, changes nothing.

    def _refresh(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now >= self._open_until:
            self._probe_successes = 0
            self._change(BreakerState.HALF_OPEN, "open time is up")

    def _open_seconds(self, trips: int) -> float:
        config = self.config
        return min(config.max_open_seconds, config.open_seconds * config.backoff ** (trips - 1))

    def _trip(self, now: float, reason: str, *, seconds: float | None = None) -> None:
        self._trips += 1
        self._opened += 1
        self._open_until = now + (self._open_seconds(self._trips) if seconds is None else seconds)
        self._probe_successes = 0
        self._consecutive = 0
        self._window.reset()
        self._change(BreakerState.OPEN, reason)

    def _close(self, reason: str, *, remote: bool = False) -> None:
        self._trips = 0
        self._consecutive = 0
        self._probe_successes = 0
        self._window.reset()
        if self._state is not BreakerState.CLOSED:
            self._change(BreakerState.CLOSED, reason, remote=remote)

    def _change(self, new: BreakerState, reason: str, *, remote: bool = False) -> None:
        old, self._state = self._state, new
        transition = Transition(self.name, old.value, new.value, reason, self.clock.now(), remote)
        self._transitions[f"{old.value}->{new.value}"] += 1
        self._recent.append(transition)
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        log.log(level, "breaker %s: %s -> %s (%s)%s", self.name, old.value, new.value, reason,
                " [from another process]" if remote else "")
        for listener in list(self._listeners):
            try:
                listener(self, transition)
            except Exception:  # noqa: BLE001 - a listener's bug must not break the breaker
                log.exception("breaker %s: transition listener failed", self.name)

    # Applied from other processes (see Breakers.run).

    def _follow_open(self, remaining: float, trips: int, reason: str) -> None:
        now = trio.current_time()
        until = now + max(0.0, remaining)
        if self._state is BreakerState.OPEN and self._open_until >= until:
            return
        self._trips = max(self._trips, trips)
        self._open_until = until
        self._probe_successes = 0
        self._window.reset()
        if self._state is not BreakerState.OPEN:
            self._opened += 1
            self._change(BreakerState.OPEN, reason, remote=True)

    def _follow_close(self, reason: str) -> None:
        self._close(reason, remote=True)


# --- the registry ---------------------------------------------------------------------------------


class Breakers:
    """The breakers of one process, made on first use by name with per-name configuration.

    ``configs`` maps a name or an ``fnmatch`` pattern (``"reddit.account.*"``) to a config; an
    exact name wins over patterns, and among patterns the longest wins; otherwise ``default``.
    Holds no resource until :meth:`run`, which (with a ``redis_url``) shares trips between
    processes; without it every breaker works alone.
    """

    def __init__(
        self,
        configs: dict[str, BreakerConfig] | None = None,
        *,
        default: BreakerConfig | None = None,
        clock: Clock | None = None,
        redis_url: str | None = None,
        sidecar: "Sidecar | None" = None,
        namespace: str = "thotto",
    ):
        self.default = default or BreakerConfig()
        self.clock = clock or SystemClock()
        self._configs: dict[str, BreakerConfig] = dict(configs or {})
        self._breakers: dict[str, Breaker] = {}
        self._listeners: list[TransitionListener] = []
        self.redis_url = redis_url
        self._sidecar = sidecar
        self.namespace = namespace
        self._shared: _SharedState | None = None

    def configure(self, pattern: str, config: BreakerConfig) -> None:
        """Set the config for a name or pattern; applies to breakers made after this call."""
        self._configs[pattern] = config

    def config_for(self, name: str) -> BreakerConfig:
        if name in self._configs:
            return self._configs[name]
        matches = [p for p in self._configs if fnmatch.fnmatchcase(name, p)]
        return self._configs[max(matches, key=len)] if matches else self.default

    def get(self, name: str, config: BreakerConfig | None = None) -> Breaker:
        """The breaker called ``name``, made now (with ``config``, or the configured one) if new."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = Breaker(name, config or self.config_for(name), clock=self.clock)
            breaker.on_transition(self._dispatch)
            self._breakers[name] = breaker
            if self._shared is not None:
                self._shared.adopt(breaker)
        return breaker

    __getitem__ = get

    def __contains__(self, name: str) -> bool:
        return name in self._breakers

    def __iter__(self):
        return iter(list(self._breakers.values()))

    def on_transition(self, listener: TransitionListener) -> None:
        """Call ``listener(breaker, transition)`` on every breaker's changes of state."""
        self._listeners.append(listener)

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """Every breaker's snapshot, by name."""
        return {name: breaker.snapshot() for name, breaker in sorted(self._breakers.items())}

    def _dispatch(self, breaker: Breaker, transition: Transition) -> None:
        for listener in list(self._listeners):
            try:
                listener(breaker, transition)
            except Exception:  # noqa: BLE001
                log.exception("breakers: transition listener failed")
        if self._shared is not None and not transition.remote and breaker.config.shared:
            self._shared.publish(breaker, transition)

    async def run(self, ctx: "actors.ChildContext | None" = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The actor: with ``redis_url``, share trips through Redis until stopped; without, just
        be ready. Calls ``task_status.started(self)`` once ready (Redis need not be reachable:
        sharing starts when it is). Returns when ``ctx.stopping`` is set; on cancellation the
        Redis connection is closed (and a sidecar it opened is stopped)."""
        async with contextlib.AsyncExitStack() as stack:
            if self.redis_url:
                sidecar = self._sidecar
                if sidecar is None:
                    from thotto.engine.aio import open_sidecar

                    sidecar = await stack.enter_async_context(open_sidecar("thotto-breakers"))
                shared = _SharedState(self, sidecar)
                await shared.open()
                stack.push_async_callback(shared.aclose)
                nursery = await stack.enter_async_context(trio.open_nursery())
                await nursery.start(shared.listen)
                self._shared = shared
                for breaker in self._breakers.values():
                    shared.adopt(breaker)
                stack.callback(self._unshare)
            task_status.started(self)
            if ctx is None:
                await trio.sleep_forever()
            await ctx.stopping.wait()
            if self.redis_url:
                nursery.cancel_scope.cancel()

    def _unshare(self) -> None:
        self._shared = None
        for breaker in self._breakers.values():
            breaker._probe_lock = None


# --- sharing through Redis -------------------------------------------------------------------------

PROBE_LOCK_SECONDS = 10.0


class _SharedState:
    """Trips and closes published on a Redis channel and kept under ``<ns>:breaker:<name>``.

    Messages are msgpack ``[origin, name, "open"|"close", open_until_wall, trips]``. A process
    ignores its own. The key holds the latest open (with a TTL to its end), so a process that
    starts while a dependency is down learns it at once.
    """

    def __init__(self, registry: Breakers, sidecar: "Sidecar"):
        from thotto.cache.redis import RedisLink

        self.registry = registry
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.link = RedisLink(registry.redis_url or "", sidecar)
        self.channel = f"{registry.namespace}:breakers"
        self.prefix = f"{registry.namespace}:breaker:"
        self._send: trio.MemorySendChannel[tuple[str, list[Any], float]] | None = None

    async def open(self) -> None:
        await self.link.open()

    async def aclose(self) -> None:
        await self.link.aclose()

    def adopt(self, breaker: Breaker) -> None:
        if breaker.config.shared:
            breaker._probe_lock = self.take_probe_lock

    def publish(self, breaker: Breaker, transition: Transition) -> None:
        if self._send is None or transition.new == BreakerState.HALF_OPEN.value:
            return
        if transition.new == BreakerState.OPEN.value:
            remaining = max(0.0, breaker._open_until - trio.current_time())
            message = [self.origin, breaker.name, "open", time.time() + remaining, breaker._trips]
        else:
            remaining = 0.0
            message = [self.origin, breaker.name, "close", 0.0, 0]
        try:
            self._send.send_nowait((breaker.name, message, remaining))
        except trio.WouldBlock:
            log.warning("breakers: share queue full; %s not shared", transition)

    async def take_probe_lock(self, breaker: Breaker) -> bool:
        """One process probes at a time (this one may hold the lock already: it probes again
        while half-open); if Redis cannot say, probe anyway. The lock is dropped when the
        breaker opens or closes again, else it expires."""
        key = f"{self.prefix}{breaker.name}:probe"
        ttl = breaker.config.call_timeout_seconds or PROBE_LOCK_SECONDS
        try:
            with trio.fail_after(1.0):
                if await self.link.set_nx(key, self.origin.encode(), ttl):
                    return True
                return await self.link.get(key) == self.origin.encode()
        except Exception:  # noqa: BLE001 - Redis trouble: decide alone
            return True

    def _apply(self, payload: bytes) -> None:
        try:
            origin, name, kind, until, trips = msgspec.msgpack.decode(payload)
        except (msgspec.DecodeError, ValueError, TypeError):
            log.warning("breakers: ignoring a malformed shared message %r", payload[:100])
            return
        if origin == self.origin:
            return
        # A breaker not used here yet is made now, so that it starts out knowing.
        breaker = self.registry.get(name)
        if not breaker.config.shared:
            return
        if kind == "open":
            breaker._follow_open(until - time.time(), int(trips), "tripped in another process")
        elif kind == "close":
            breaker._follow_close("closed in another process")

    async def listen(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[tuple[str, list[Any], float]](1000)
        self._send = send
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher, receive)
            await nursery.start(
                self.link.subscribe, [self.channel], lambda _channel, data: self._apply(data),
                self._on_connected,
            )
            task_status.started()

    def _on_connected(self, connected: bool) -> None:
        if connected:
            self._catch_up_soon()

    def _catch_up_soon(self) -> None:
        # Runs in Trio: read the keys of the breakers in use to catch up on missed trips.
        if self._send is not None:
            try:
                self._send.send_nowait(("", [], -1.0))
            except trio.WouldBlock:
                pass

    async def _publisher(self, receive: trio.MemoryReceiveChannel[tuple[str, list[Any], float]]) -> None:
        async for name, message, remaining in receive:
            try:
                with trio.fail_after(2.0):
                    if remaining < 0:
                        await self._catch_up()
                        continue
                    key = f"{self.prefix}{name}"
                    payload = msgspec.msgpack.encode(message)
                    if message[2] == "open":
                        await self.link.publish_state(self.channel, payload, key, payload, remaining)
                    else:
                        await self.link.publish_state(self.channel, payload, key, None, 0.0)
                    # The probe (if any) is over either way: the next half-open may probe.
                    await self.link.delete([f"{key}:probe"])
            except Exception as error:  # noqa: BLE001 - Redis trouble: sharing is best effort
                log.info("breakers: could not share %s: %s", name or "state", error)

    async def _catch_up(self) -> None:
        names = [b.name for b in self.registry if b.config.shared]
        if not names:
            return
        values = await self.link.get_many([f"{self.prefix}{name}" for name in names])
        for value in values:
            if value is not None:
                self._apply(value)
