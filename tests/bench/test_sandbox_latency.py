"""The sandbox's latency fault with a range (``latency_max``), which the popular-minute bench
uses to answer submissions in 100-300 ms. Virtual time: no real waiting."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from thotto.reddit.sandbox import Faults, Sandbox


def submit_request() -> SimpleNamespace:
    return SimpleNamespace(url=SimpleNamespace(path="/api/submit"))


async def delays(sandbox: Sandbox, count: int) -> list[float]:
    seen = []
    for _ in range(count):
        started = trio.current_time()
        assert await sandbox._fault(submit_request()) is None
        seen.append(trio.current_time() - started)
    return seen


async def test_latency_max_draws_each_delay_from_the_range(tmp_path, autojump_clock):
    sandbox = Sandbox(tmp_path)
    sandbox.faults = Faults(latency=0.1, latency_max=0.3, latency_path="/api/submit")
    seen = await delays(sandbox, 200)
    assert all(0.1 - 1e-9 <= delay <= 0.3 + 1e-9 for delay in seen)
    assert min(seen) < 0.15 and max(seen) > 0.25  # spread over the range, not one value


async def test_without_latency_max_every_delay_is_latency(tmp_path, autojump_clock):
    sandbox = Sandbox(tmp_path)
    sandbox.faults = Faults(latency=0.2)
    assert [round(delay, 9) for delay in await delays(sandbox, 20)] == [0.2] * 20
