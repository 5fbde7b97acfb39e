"""Breakers shared between processes through Redis: a trip in one opens it in the others, one
process probes for all, a close reaches everyone, and a late starter learns the state.

Each ``Breakers`` registry stands for one process (its own origin). Real time: the processes
talk through pub/sub messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio

from thotto.breaker import BreakerConfig, Breakers, BreakerState
from thotto.engine.aio import open_sidecar
from thotto.errors import BreakerOpen

pytestmark = pytest.mark.redis

CONFIG = BreakerConfig(consecutive_failures=1, open_seconds=0.3, max_open_seconds=0.3)


class Down(Exception):
    pass


async def fail() -> None:
    raise Down


async def ok() -> str:
    return "ok"


@contextlib.asynccontextmanager
async def registries(url: str, namespace: str, count: int) -> AsyncIterator[list[Breakers]]:
    async with open_sidecar() as sidecar, trio.open_nursery() as nursery:
        found = []
        for _ in range(count):
            breakers = Breakers({"dep": CONFIG}, redis_url=url, sidecar=sidecar, namespace=namespace)
            await nursery.start(breakers.run)
            found.append(breakers)
        await trio.sleep(0.1)  # subscriptions established
        yield found
        nursery.cancel_scope.cancel()


async def wait_until(condition, timeout: float = 3.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.002)


async def test_a_trip_in_one_process_opens_the_breaker_in_the_others(redis_url, namespace):
    async with registries(redis_url, namespace, 2) as (one, two):
        mine, theirs = one["dep"], two["dep"]
        with pytest.raises(Down):
            await mine.call(fail)
        assert mine.state is BreakerState.OPEN
        await wait_until(lambda: theirs.state is BreakerState.OPEN)
        assert theirs.snapshot().recent[-1].remote
        with pytest.raises(BreakerOpen):
            await theirs.call(ok)

        # Half-open in both; only one of them sends the probe.
        await wait_until(lambda: mine.state is BreakerState.HALF_OPEN and theirs.state is BreakerState.HALF_OPEN)
        release = trio.Event()

        async def probe() -> None:
            async with mine.guard():
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            await trio.sleep(0.05)  # mine holds the probe lock
            with pytest.raises(BreakerOpen, match="half-open"):
                await theirs.call(ok)
            release.set()
        assert mine.state is BreakerState.CLOSED
        await wait_until(lambda: theirs.state is BreakerState.CLOSED)
        assert await theirs.call(ok) == "ok"


async def test_a_process_that_starts_late_or_never_used_the_breaker_learns_it_is_open(redis_url, namespace):
    long_open = BreakerConfig(consecutive_failures=1, open_seconds=30.0)
    async with registries(redis_url, namespace, 2) as (one, two):
        one.configure("dep", long_open)
        two.configure("dep", long_open)
        with pytest.raises(Down):
            await one["dep"].call(fail)
        await wait_until(lambda: "dep" in two and two["dep"].state is BreakerState.OPEN)
        async with open_sidecar() as sidecar, trio.open_nursery() as nursery:
            late = Breakers({"dep": long_open}, redis_url=redis_url, sidecar=sidecar, namespace=namespace)
            late.get("dep")
            await nursery.start(late.run)
            await wait_until(lambda: late["dep"].state is BreakerState.OPEN)
            assert 25 < late["dep"].retry_after() <= 30
            nursery.cancel_scope.cancel()


async def test_with_redis_unreachable_each_process_decides_alone(namespace):
    async with registries("redis://127.0.0.1:1/0", namespace, 1) as (alone,):
        breaker = alone["dep"]
        with pytest.raises(Down):
            await breaker.call(fail)
        await trio.sleep(0.3)
        assert await breaker.call(ok) == "ok"  # the probe lock cannot be had: probe anyway
        assert breaker.state is BreakerState.CLOSED
