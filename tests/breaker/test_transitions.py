"""Every breaker transition in virtual time (autojump_clock): trips, half-open probes, backoff,
the rolling window, slow calls, timeouts, fallbacks, the predicate and cancellation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import trio
import trio.testing

from thotto.breaker import Breaker, BreakerConfig, Breakers, BreakerState
from thotto.engine.clock import TrioClock
from thotto.engine.errors import DeferJob, PermanentJobError
from thotto.errors import BreakerOpen, RedditPermanent

EPOCH = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


class Down(Exception):
    """The dependency failed."""


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise Down("503")


def make(**config) -> Breaker:
    return Breaker("dep", BreakerConfig(**config), clock=TrioClock(EPOCH))


async def fail_times(breaker: Breaker, count: int) -> None:
    for _ in range(count):
        with pytest.raises(Down):
            await breaker.call(fail)


async def test_consecutive_failures_trip_it_and_an_open_breaker_refuses_with_until(autojump_clock):
    breaker = make(consecutive_failures=3, open_seconds=10.0)
    await fail_times(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    await fail_times(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()

    await trio.sleep(4)
    called = []
    with pytest.raises(BreakerOpen) as refused:
        await breaker.call(lambda: called.append(1))  # never called
    assert called == []
    error = refused.value
    assert isinstance(error, DeferJob)  # a job meeting it is deferred, no attempt spent
    assert error.breaker == "dep"
    assert error.retry_after == pytest.approx(6.0)
    assert error.until == EPOCH + timedelta(seconds=10)
    assert breaker.snapshot().rejected == 1


async def test_a_success_resets_the_consecutive_count(autojump_clock):
    breaker = make(consecutive_failures=3, min_calls=100)
    await fail_times(breaker, 2)
    assert await breaker.call(ok) == "ok"
    await fail_times(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2


async def test_open_becomes_half_open_at_exactly_open_seconds(autojump_clock):
    breaker = make(consecutive_failures=1, open_seconds=5.0)
    await fail_times(breaker, 1)
    start = trio.current_time()
    await trio.sleep_until(start + 5.0 - 1e-6)
    assert breaker.state is BreakerState.OPEN
    await trio.sleep_until(start + 5.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert breaker.snapshot().transitions == {"closed->open": 1, "open->half_open": 1}


async def test_half_open_lets_n_probes_through_and_n_successes_close_it(autojump_clock):
    breaker = make(consecutive_failures=1, open_seconds=1.0, half_open_probes=2)
    await fail_times(breaker, 1)
    await trio.sleep(1.0)
    release = trio.Event()
    entered = []

    async def probe() -> None:
        async with breaker.guard():
            entered.append(1)
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe)
        nursery.start_soon(probe)
        await trio.testing.wait_all_tasks_blocked()
        assert len(entered) == 2
        assert not breaker.allow()  # both probe slots are taken
        with pytest.raises(BreakerOpen) as refused:
            await breaker.call(ok)
        assert refused.value.retry_after > 0
        release.set()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().transitions["half_open->closed"] == 1


async def test_a_failed_probe_reopens_with_exponential_backoff_up_to_the_cap(autojump_clock):
    breaker = make(consecutive_failures=1, open_seconds=1.0, backoff=2.0, max_open_seconds=5.0)
    await fail_times(breaker, 1)
    opened_for = []
    for _ in range(5):
        start = trio.current_time()
        while breaker.state is BreakerState.OPEN:
            await trio.sleep(breaker.retry_after())
        opened_for.append(trio.current_time() - start)
        await fail_times(breaker, 1)  # the probe fails
        assert breaker.state is BreakerState.OPEN
    assert opened_for == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert breaker.snapshot().trips == 6

    # A successful probe closes it and resets the backoff.
    await trio.sleep(breaker.retry_after())
    assert await breaker.call(ok) == "ok"
    assert breaker.state is BreakerState.CLOSED
    await fail_times(breaker, 1)
    assert breaker.retry_after() == 1.0


async def test_failure_rate_trips_only_past_the_minimum_volume(autojump_clock):
    breaker = make(consecutive_failures=0, failure_rate=0.5, min_calls=10, window_seconds=10.0)
    # 4 failures of 8 calls: half, but below the volume.
    for _ in range(4):
        await breaker.call(ok)
        await fail_times(breaker, 1)
    assert breaker.state is BreakerState.CLOSED
    await breaker.call(ok)
    assert breaker.state is BreakerState.CLOSED  # 4 of 9
    await fail_times(breaker, 1)  # 5 of 10
    assert breaker.state is BreakerState.OPEN
    assert "5 of 10 calls failed" in breaker.snapshot().recent[-1].reason


async def test_the_rolling_window_forgets_old_failures(autojump_clock):
    breaker = make(consecutive_failures=0, failure_rate=0.5, min_calls=4, window_seconds=10.0,
                   window_buckets=10)
    await fail_times(breaker, 3)
    await trio.sleep(10.0)  # those three fall out of the window
    await breaker.call(ok)
    await breaker.call(ok)
    await breaker.call(ok)
    await fail_times(breaker, 1)
    snapshot = breaker.snapshot()
    assert (snapshot.window_calls, snapshot.window_failures) == (4, 1)
    assert breaker.state is BreakerState.CLOSED


async def test_slow_successes_count_as_failures_when_configured(autojump_clock):
    breaker = make(consecutive_failures=2, slow_call_seconds=1.0)

    async def slow() -> str:
        await trio.sleep(1.5)
        return "late"

    assert await breaker.call(slow) == "late"  # the caller still gets its value
    assert await breaker.call(slow) == "late"
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().slow == 2


async def test_the_per_call_timeout_cuts_the_call_and_counts(autojump_clock):
    breaker = make(consecutive_failures=1, call_timeout_seconds=2.0)

    async def hang() -> None:
        await trio.sleep_forever()

    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await breaker.call(hang)
    assert trio.current_time() - start == 2.0
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().timeouts == 1
    # A per-call override.
    await trio.sleep(breaker.retry_after())
    with pytest.raises(trio.TooSlowError):
        await breaker.call(hang, timeout=0.5)


async def test_fallback_answers_refusals_and_counted_failures_only(autojump_clock):
    breaker = make(consecutive_failures=2)
    seen = []

    def fallback(error: BaseException) -> str:
        seen.append(type(error).__name__)
        return "cached"

    assert await breaker.call(fail, fallback=fallback) == "cached"
    assert await breaker.call(fail, fallback=fallback) == "cached"
    assert await breaker.call(ok, fallback=fallback) == "cached"  # open: refused
    assert seen == ["Down", "Down", "BreakerOpen"]

    async def permanent() -> None:
        raise PermanentJobError("banned")

    await trio.sleep(breaker.retry_after())
    with pytest.raises(PermanentJobError):  # not counted, so not a fallback case
        await breaker.call(permanent, fallback=fallback)


async def test_permanent_errors_do_not_trip_it_and_the_predicate_is_pluggable(autojump_clock):
    breaker = make(consecutive_failures=2)

    async def banned() -> None:
        raise RedditPermanent("banned", error_type="SUBREDDIT_NOEXIST")

    for _ in range(5):
        with pytest.raises(RedditPermanent):
            await breaker.call(banned)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().successes == 5  # the dependency answered

    only_down = make(consecutive_failures=1, counts=lambda error: isinstance(error, Down))
    with pytest.raises(ValueError):
        async with only_down.guard():
            raise ValueError("our bug, not theirs")
    assert only_down.state is BreakerState.CLOSED
    await fail_times(only_down, 1)
    assert only_down.state is BreakerState.OPEN


async def test_a_refusal_from_an_inner_breaker_does_not_count(autojump_clock):
    outer = make(consecutive_failures=1)
    inner = Breaker("inner", BreakerConfig(consecutive_failures=1), clock=TrioClock(EPOCH))
    inner.force_open(60)
    with pytest.raises(BreakerOpen):
        async with outer.guard():
            await inner.call(ok)
    assert outer.state is BreakerState.CLOSED


async def test_cancellation_counts_nothing_and_frees_the_probe_slot(autojump_clock):
    breaker = make(consecutive_failures=1, open_seconds=1.0)
    await fail_times(breaker, 1)
    await trio.sleep(1.0)
    with trio.move_on_after(1.0):
        async with breaker.guard():
            await trio.sleep_forever()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    snapshot = breaker.snapshot()
    assert (snapshot.successes, snapshot.failures) == (0, 1)


async def test_results_arriving_while_open_change_nothing(autojump_clock):
    breaker = make(consecutive_failures=1, open_seconds=10.0)
    release = trio.Event()

    async def slow_ok() -> None:
        async with breaker.guard():
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_ok)
        await trio.testing.wait_all_tasks_blocked()
        await fail_times(breaker, 1)
        assert breaker.state is BreakerState.OPEN
        release.set()
    assert breaker.state is BreakerState.OPEN


async def test_manual_control_and_recorded_outcomes(autojump_clock):
    breaker = make(consecutive_failures=2)
    breaker.record_failure(Down())
    breaker.record_failure(PermanentJobError("no"))  # a success
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.force_open(3.0)
    assert breaker.retry_after() == 3.0


async def test_registry_configures_by_name_and_pattern_and_reports(autojump_clock):
    seen = []
    breakers = Breakers(
        {"reddit.account.*": BreakerConfig(consecutive_failures=1),
         "reddit.account.bot*": BreakerConfig(consecutive_failures=2),
         "redis": BreakerConfig(consecutive_failures=7)},
        default=BreakerConfig(consecutive_failures=4),
        clock=TrioClock(EPOCH),
    )
    breakers.on_transition(lambda breaker, transition: seen.append((breaker.name, transition.new)))
    assert breakers.get("reddit.account.alice").config.consecutive_failures == 1
    assert breakers["reddit.account.bot7"].config.consecutive_failures == 2
    assert breakers["redis"].config.consecutive_failures == 7
    assert breakers["database"].config.consecutive_failures == 4
    assert breakers["redis"] is breakers.get("redis")

    await fail_times(breakers["reddit.account.alice"], 1)
    snapshot = breakers.snapshot()
    assert list(snapshot) == ["database", "reddit.account.alice", "reddit.account.bot7", "redis"]
    alice = snapshot["reddit.account.alice"]
    assert alice.state == "open" and alice.failures == 1 and alice.opened == 1
    assert alice.recent[0].at == EPOCH
    assert seen == [("reddit.account.alice", "open")]


async def test_registry_run_without_redis_is_ready_and_stops_on_request(autojump_clock):
    import actors

    breakers = Breakers()
    ctx = actors.ChildContext("breakers", 0)
    async with trio.open_nursery() as nursery:
        started = await nursery.start(breakers.run, ctx)
        assert started is breakers
        ctx.stopping.set()


def test_config_is_validated():
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate=0)
    with pytest.raises(ValueError):
        BreakerConfig(half_open_probes=0)
    with pytest.raises(ValueError):
        BreakerConfig(open_seconds=10, max_open_seconds=5)
    assert BreakerConfig().with_(open_seconds=1).open_seconds == 1
