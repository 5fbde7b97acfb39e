"""Redis on the asyncio sidecar: one ``redis.asyncio`` client and the few commands Thotto sends.

Each public coroutine here is one hop to the sidecar (thotto/aio.py) carrying a whole batch (MGET, a
pipeline), never one hop per key. Concurrent single-key reads share one MGET through a
:class:`~thotto.engine.aio.Coalescer`. Failures raise the driver's own exceptions (``redis`` errors,
``OSError``, timeouts); callers decide (the cache falls back to memory and the loader, breakers
decide alone). The client does not retry: ``timeout_seconds`` bounds each command and one
immediate retry covers a connection that died while idle in the pool. A Redis that is down
refuses connections, which is noticed at once and the breaker takes over; the timeout is for a
Redis that hangs, and is generous (see ``CacheConfig.redis_timeout_seconds``) because a slow
answer on a loaded machine is not an outage.

:meth:`RedisLink.subscribe` keeps a pub/sub subscription alive (reconnecting with backoff) and
delivers messages to the Trio thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
import trio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from thotto.engine.aio import Coalescer, Sidecar, SidecarClosed

log = logging.getLogger("thotto.redis")

# Deletes a lock only if it still holds our token (it may have expired and been taken).
_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# A token bucket in one hash {tokens, at}: refill for the time since ``at`` (Redis's clock), take
# one if there is one, else answer the wait. The key expires once the bucket would be full again.
_TAKE_TOKEN = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

# MGET whose reply is one msgpack array (a missing key is nil): for keys that hold msgpack values,
# one bulk string instead of one per key, which redis-py's pure-Python reply parser reads ~8x
# faster; msgspec then splits it in C. Values that are not msgpack fail the decode, and the
# caller falls back to a plain MGET.
_MGET_PACKED = """
local values = redis.call('MGET', unpack(KEYS))
local parts = {}
for i, value in ipairs(values) do
  if value then parts[i] = value else parts[i] = '\\192' end
end
local n = #values
return string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                   math.floor(n / 256) % 256, n % 256) .. table.concat(parts)
"""
# Lua's unpack() takes at most ~8,000 values; stay well below.
_MGET_CHUNK = 4000
# Below this many keys a plain MGET parses as fast and spares Redis the script.
_PLAIN_MGET_MAX = 32
_RAW_LIST = msgspec.msgpack.Decoder(list[msgspec.Raw])
_NIL = b"\xc0"


class RedisLink:
    """A Redis client living on ``sidecar``'s loop, driven from Trio.

    :meth:`open` makes the client (it connects on first use, so a Redis that is down now does not
    stop the caller); :meth:`aclose` closes it and is shielded and idempotent. Created and used in
    one Trio run.
    """

    def __init__(self, url: str, sidecar: Sidecar, *, timeout_seconds: float = 0.5):
        self.url = url
        self.sidecar = sidecar
        self.timeout_seconds = timeout_seconds
        self.client: aioredis.Redis | None = None  # touched on the loop thread only
        self._getter: Coalescer[str, Any] = Coalescer(sidecar, self._mget_items, max_batch=2000)
        self._mget_packed: Any = None  # the registered script (loop thread)

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await self.sidecar.run(self._open_in_loop)

    async def _open_in_loop(self) -> None:
        self.client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.timeout_seconds,
            socket_connect_timeout=self.timeout_seconds,
            retry=Retry(NoBackoff(), 1),
            max_connections=64,
        )

    async def aclose(self) -> None:
        """Close the client and its connections. Shielded; idempotent."""
        with trio.CancelScope(shield=True):
            await self._getter.aclose()
            if self.sidecar.running:
                with contextlib.suppress(SidecarClosed):
                    await self.sidecar.run(self._close_in_loop)

    async def _close_in_loop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 2)

    def _client(self) -> aioredis.Redis:
        if self.client is None:
            raise ConnectionError("The Redis client is closed")
        return self.client

    # --- commands (each one hop) -----------------------------------------------------------

    async def ping(self) -> bool:
        return await self.sidecar.run(self._ping)

    async def _ping(self) -> bool:
        return bool(await self._client().ping())

    async def get(self, key: str) -> bytes | None:
        """One key; concurrent callers share one MGET."""
        return (await self._getter.submit(key)).unwrap()

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Many keys in one hop; each value is bytes-like (``bytes`` or ``msgspec.Raw``) or
        None. Values that are msgpack travel in one packed reply (see ``_MGET_PACKED``)."""
        if not keys:
            return []
        return await self.sidecar.run(self._mget, list(keys))

    async def _mget(self, keys: list[str]) -> list[Any]:
        client = self._client()
        if len(keys) <= _PLAIN_MGET_MAX:
            return await client.mget(keys)
        if self._mget_packed is None:
            self._mget_packed = client.register_script(_MGET_PACKED)
        found: list[Any] = []
        for start in range(0, len(keys), _MGET_CHUNK):
            chunk = keys[start:start + _MGET_CHUNK]
            blob = await self._mget_packed(keys=chunk)
            try:
                values = _RAW_LIST.decode(blob)
            except msgspec.DecodeError:
                found.extend(await client.mget(chunk))  # not all msgpack: the plain way
                continue
            found.extend(None if len(value) == 1 and bytes(value) == _NIL else value for value in values)
        return found

    async def _mget_items(self, keys: list[str]) -> list[Any]:
        return await self._mget(keys)

    async def set_many(
        self,
        items: Sequence[tuple[str, bytes, int]],
        tags: Sequence[tuple[str, str, int]] = (),
        publish: tuple[str, bytes] | None = None,
    ) -> None:
        """SET each ``(key, value, ttl_ms)``, add each ``(tag_key, key, ttl_ms)`` to its tag set
        (keeping the set at least that long), then PUBLISH ``(channel, message)``: one pipeline."""
        await self.sidecar.run(self._set_many, list(items), list(tags), publish)

    async def _set_many(self, items: list[tuple[str, bytes, int]], tags: list[tuple[str, str, int]],
                        publish: tuple[str, bytes] | None) -> None:
        pipe = self._client().pipeline(transaction=False)
        for key, value, ttl_ms in items:
            pipe.set(key, value, px=max(1, ttl_ms))
        for tag_key, key, ttl_ms in tags:
            pipe.sadd(tag_key, key)
            # GT: only ever lengthen the set's life (a shorter entry must not cut a longer one's).
            pipe.pexpire(tag_key, max(1, ttl_ms), gt=True)
            pipe.pexpire(tag_key, max(1, ttl_ms), nx=True)
        if publish is not None:
            pipe.publish(*publish)
        await pipe.execute()

    async def delete(self, keys: Sequence[str], tag_keys: Sequence[str] = (),
                     publish: tuple[str, bytes] | None = None) -> None:
        """DEL ``keys``, and every key listed in the sets ``tag_keys`` with the sets; then
        PUBLISH ``(channel, message)``."""
        await self.sidecar.run(self._delete, list(keys), list(tag_keys), publish)

    async def _delete(self, keys: list[str], tag_keys: list[str], publish: tuple[str, bytes] | None) -> None:
        client = self._client()
        members: list[Any] = []
        if tag_keys:
            pipe = client.pipeline(transaction=False)
            for tag_key in tag_keys:
                pipe.smembers(tag_key)
            for found in await pipe.execute():
                members.extend(found)
        pipe = client.pipeline(transaction=False)
        doomed = [*keys, *members, *tag_keys]
        for start in range(0, len(doomed), 1000):
            pipe.delete(*doomed[start:start + 1000])
        if publish is not None:
            pipe.publish(*publish)
        await pipe.execute()

    async def publish(self, channel: str, message: bytes) -> None:
        await self.sidecar.run(self._publish, channel, message)

    async def _publish(self, channel: str, message: bytes) -> None:
        await self._client().publish(channel, message)

    async def publish_state(self, channel: str, message: bytes, key: str, value: bytes | None,
                            ttl_seconds: float) -> None:
        """SET ``key`` to ``value`` for ``ttl_seconds`` (DEL it if ``value`` is None), PUBLISH."""
        await self.sidecar.run(self._publish_state, channel, message, key, value, ttl_seconds)

    async def _publish_state(self, channel: str, message: bytes, key: str, value: bytes | None,
                             ttl_seconds: float) -> None:
        pipe = self._client().pipeline(transaction=False)
        if value is None or ttl_seconds <= 0:
            pipe.delete(key)
        else:
            pipe.set(key, value, px=max(1, int(ttl_seconds * 1000)))
        pipe.publish(channel, message)
        await pipe.execute()

    async def set_nx(self, key: str, token: bytes, ttl_seconds: float) -> bool:
        """A short lock: SET NX PX. True if taken."""
        return await self.sidecar.run(self._set_nx, key, token, ttl_seconds)

    async def _set_nx(self, key: str, token: bytes, ttl_seconds: float) -> bool:
        return bool(await self._client().set(key, token, nx=True, px=max(1, int(ttl_seconds * 1000))))

    async def unlock(self, key: str, token: bytes) -> None:
        """Release a lock taken with :meth:`set_nx` if it still holds ``token``."""
        await self.sidecar.run(self._unlock, key, token)

    async def _unlock(self, key: str, token: bytes) -> None:
        await self._client().eval(_UNLOCK, 1, key, token)

    async def take_token(self, key: str, per_second: float, burst: int) -> float:
        """Take one token from the bucket at ``key`` (refilled at ``per_second`` up to ``burst``,
        on Redis's own clock, so every process shares one bucket): 0.0 if taken, else the
        seconds until one will be there."""
        return await self.sidecar.run(self._take_token, key, per_second, burst)

    async def _take_token(self, key: str, per_second: float, burst: int) -> float:
        return float(await self._client().eval(_TAKE_TOKEN, 1, key, repr(per_second), str(burst)))

    async def flush_prefix(self, pattern: str) -> int:
        """Delete every key matching ``pattern`` (SCAN + DEL; for tests and admin)."""
        return await self.sidecar.run(self._flush_prefix, pattern)

    async def _flush_prefix(self, pattern: str) -> int:
        client = self._client()
        count = 0
        batch: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                count += await client.delete(*batch)
                batch = []
        if batch:
            count += await client.delete(*batch)
        return count

    # --- pub/sub -------------------------------------------------------------------------

    async def subscribe(
        self,
        channels: Sequence[str],
        on_message: Callable[[str, bytes], None],
        on_connected: Callable[[bool], None] | None = None,
        *,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: stay subscribed to ``channels``, calling ``on_message(channel,
        data)`` in the Trio thread for each message, in order. ``on_connected(True)`` is called
        each time the subscription is (re)established and ``on_connected(False)`` when it
        breaks; between the two, messages may have been missed. Reconnects with backoff.

        The listener is an asyncio task started without waiting on it (a long ``Sidecar.run``
        would look like work in flight to the virtual test clock forever); cancelling this
        stops it and waits until it has ended.
        """
        channels = list(channels)
        sidecar = self.sidecar
        done = trio.Event()
        holder: dict[str, asyncio.Task[None]] = {}

        def start() -> None:  # loop thread
            task = asyncio.get_running_loop().create_task(
                self._listen(channels, on_message, on_connected or (lambda _up: None)))
            holder["task"] = task
            task.add_done_callback(lambda _t: sidecar.run_in_trio(done.set))

        def stop() -> None:  # loop thread
            task = holder.get("task")
            if task is None:
                sidecar.run_in_trio(done.set)
            else:
                task.cancel()

        sidecar.call_soon(start)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    sidecar.call_soon(stop)
                except SidecarClosed:
                    return
                with trio.move_on_after(5):
                    await done.wait()

    async def _listen(self, channels: list[str], on_message: Callable[[str, bytes], None],
                      on_connected: Callable[[bool], None]) -> None:  # loop thread
        backoff = 0.05
        idle = 0.0
        while True:
            connected = False
            pubsub = None
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(*channels)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        idle += 1.0
                        if idle >= 5.0:  # notice a silently dead connection
                            idle = 0.0
                            await pubsub.ping()
                        continue
                    idle = 0.0
                    kind = message["type"]
                    if kind == "message":
                        channel = message["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        self.sidecar.run_in_trio(on_message, channel, message["data"])
                    elif kind == "subscribe" and not connected:
                        connected = True
                        backoff = 0.05
                        self.sidecar.run_in_trio(on_connected, True)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - reconnect below
                if connected:
                    self.sidecar.run_in_trio(on_connected, False)
                    log.warning("Redis subscription to %s lost (%s); reconnecting",
                                ",".join(channels), error)
                else:
                    log.debug("Redis subscription to %s failed (%s)", ",".join(channels), error)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pubsub.aclose(), 1)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

