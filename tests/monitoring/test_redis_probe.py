"""The monitor probes a real Redis (PING round trip, INFO memory) when one is configured, and
reports it unreachable when it is not there."""

from __future__ import annotations

import trio

from thotto.app import open_app
from thotto.config import Settings


async def wait_until(condition, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def test_redis_latency_and_memory_are_measured(tmp_path, redis_url):
    settings = Settings(data_dir=str(tmp_path), redis_url=redis_url, monitor_interval_seconds=0.1,
                        alert_redis_latency_ms=0.0)  # any round trip is "slow": the alert fires
    async with open_app(settings, run_workers=False) as app:
        monitor = app.tree.monitor
        await wait_until(lambda: monitor.system is not None and monitor.system.redis_latency_ms is not None)
        assert monitor.system.redis_error is None and monitor.system.redis_memory_bytes > 0
        await wait_until(lambda: ("redis_latency", None) in monitor.alerts)
        text = app.services.metrics.render().decode()
        assert "thotto_redis_memory_bytes " in text and "thotto_redis_memory_bytes 0.0" not in text


async def test_an_unreachable_redis_is_an_alert(tmp_path):
    settings = Settings(data_dir=str(tmp_path), redis_url="redis://127.0.0.1:9/0",
                        monitor_interval_seconds=0.1)
    async with open_app(settings, run_workers=False) as app:
        monitor = app.tree.monitor
        await wait_until(lambda: ("redis_unreachable", None) in monitor.alerts)
        assert monitor.status() == "degraded" and monitor.system.redis_error
