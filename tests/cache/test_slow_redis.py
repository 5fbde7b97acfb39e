"""A slow Redis is not a down Redis: the cache's breaker counts a call as failed only when it
takes longer than a generous timeout, so a loaded machine (where a healthy Redis answers in
hundreds of milliseconds) keeps its L2.

Redis sits behind a proxy written here that holds every reply for a fixed delay (or forever), so
the outcome does not depend on how busy the machine is: each reply is at least that late.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from urllib.parse import urlsplit

import pytest
import trio

from tests.cache.test_redis import wait_until
from thotto.cache import Cache, CacheConfig
from thotto.engine.aio import open_sidecar

pytestmark = pytest.mark.redis

# Longer than the old 0.25 s timeout that opened the breaker on a loaded machine; well inside the
# generous default.
REPLY_DELAY = 0.4


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, delay: float | None) -> None:
    """Copy ``source`` to ``sink``, each chunk ``delay`` seconds after it arrived (None: never):
    latency, not a slower line, so chunks in a row are not delayed one after the other. Returns
    when either side closes."""
    send, receive = trio.open_memory_channel[tuple[float, bytes]](1000)

    async def forward(cancel_scope: trio.CancelScope) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for arrived, chunk in receive:
                if delay is None:
                    await trio.sleep_forever()
                await trio.sleep_until(arrived + delay)
                await sink.send_all(chunk)
        cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(forward, nursery.cancel_scope)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with send:
                async for chunk in source:
                    await send.send((trio.current_time(), chunk))


@contextlib.asynccontextmanager
async def slow_proxy(redis_url: str, delay: float | None) -> AsyncIterator[str]:
    """A TCP proxy to ``redis_url`` whose replies come ``delay`` seconds late (None: never);
    yields the proxy's redis:// URL."""
    target = urlsplit(redis_url)

    async def relay(client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream(target.hostname, target.port) as server:
            async with trio.open_nursery() as nursery:
                async def both_ways(source, sink, wait) -> None:
                    await _pump(source, sink, wait)
                    nursery.cancel_scope.cancel()  # one side closed: the connection is over

                nursery.start_soon(both_ways, client, server, 0.0)
                nursery.start_soon(both_ways, server, client, delay)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, relay, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"redis://127.0.0.1:{port}/0"
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def cache_on(url: str, namespace: str) -> AsyncIterator[Cache]:
    """A cache with the default config (so its default timeout is what is tested), running."""
    async with open_sidecar() as sidecar, trio.open_nursery() as nursery:
        cache = Cache(CacheConfig(redis_url=url, namespace=namespace), sidecar=sidecar)
        await nursery.start(cache.run)
        yield cache
        nursery.cancel_scope.cancel()


async def test_slow_answers_keep_the_breaker_closed_and_l2_in_use(redis_url, namespace):
    async with slow_proxy(redis_url, REPLY_DELAY) as url, cache_on(url, namespace) as cache:
        await wait_until(lambda: cache.stats().l2 == "ok", timeout=15)
        await cache.set("a", 1)
        assert cache.stats().l2_errors == 0, cache.stats()
        cache.l1.clear()  # every read below must go to Redis
        for _ in range(3):
            assert await cache.get("a") == 1
            cache.l1.clear()
        # Many readers stuck behind one slow reply at once are not many failures either.
        found = []
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                async def read() -> None:
                    found.append(await cache.get("a"))

                nursery.start_soon(read)
        assert found == [1] * 20
        stats = cache.stats()
        assert stats.l2_breaker == "closed" and stats.l2_errors == 0 and stats.l2 == "ok"
        assert stats.l2_hits >= 4


async def test_a_redis_that_never_answers_still_opens_the_breaker(redis_url, namespace):
    async with slow_proxy(redis_url, None) as url, cache_on(url, namespace) as cache:
        loads = []

        async def loader() -> str:
            loads.append(1)
            return "from the loader"

        # Requests are answered (by the loader) once the generous timeout is over...
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(partial(cache.get_or_load, f"k{i}", loader))
        assert len(loads) == 5
        # ...and the breaker has opened: the next requests skip Redis at once.
        assert cache.stats().l2_breaker in ("open", "half_open")
        assert cache.stats().l2_errors >= 3
        with trio.fail_after(0.5):
            assert await cache.get_or_load("later", loader) == "from the loader"
