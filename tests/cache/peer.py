"""Another Thotto process sharing a cache through Redis, driven over stdin/stdout by a test.

    python -m tests.cache.peer REDIS_URL NAMESPACE

Prints ``ready`` once subscribed to invalidations, then answers one line per command:
``set KEY VALUE``, ``delete KEY``, ``tag TAG``, ``load KEY VALUE [TAG]`` (get_or_load, tagged),
``peek KEY`` (L1 only; ``-`` when absent), ``get KEY`` (L1 then L2), ``quit``.
"""

from __future__ import annotations

import contextlib
import sys

import trio

from thotto.cache import Cache, CacheConfig


async def main(url: str, namespace: str) -> None:
    cache = Cache(CacheConfig(redis_url=url, namespace=namespace, jitter=0.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        with trio.fail_after(10):
            while not cache.stats().l2_subscribed:
                await trio.sleep(0.005)
        reply("ready")
        async with contextlib.aclosing(lines()) as commands:
            async for line in commands:
                words = line.split()
                command, args = words[0], words[1:]
                if command == "set":
                    await cache.set(args[0], args[1])
                    reply("ok")
                elif command == "delete":
                    await cache.delete(args[0])
                    reply("ok")
                elif command == "tag":
                    await cache.invalidate_tags(args[0])
                    reply("ok")
                elif command == "load":
                    tags = args[2:]

                    async def loader(value: str = args[1]) -> str:
                        return value

                    reply(await cache.get_or_load(args[0], loader, tags=tags))
                elif command == "peek":
                    reply(cache.peek(args[0], "-"))
                elif command == "get":
                    reply(await cache.get(args[0], "-"))
                elif command == "quit":
                    break
        nursery.cancel_scope.cancel()


def reply(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


async def lines():
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    while True:
        chunk = await stdin.receive_some()
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line.decode()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
