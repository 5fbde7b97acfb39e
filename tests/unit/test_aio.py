"""The asyncio sidecar: results, errors and cancellation cross the bridge; events flow back."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
import trio

from thotto.engine.aio import Coalescer, EventFeed, SidecarClosed, open_sidecar


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


class Boom(Exception):
    pass


async def boom(message: str) -> None:
    await asyncio.sleep(0)
    raise Boom(message)


async def test_run_returns_result_on_the_loop_thread():
    async with open_sidecar() as sidecar:
        assert await sidecar.run(add, 2, 3) == 5

        async def where() -> str:
            asyncio.get_running_loop()  # raises outside a running loop
            return threading.current_thread().name

        assert await sidecar.run(where) == sidecar.name
        assert sidecar.name != threading.current_thread().name


async def test_exception_keeps_type_and_message():
    async with open_sidecar() as sidecar:
        with pytest.raises(Boom, match="^it broke$"):
            await sidecar.run(boom, "it broke")
        # The sidecar is still usable after an error.
        assert await sidecar.run(add, 1, 1) == 2


async def test_many_concurrent_calls():
    async with open_sidecar() as sidecar:
        results = {}

        async def one(i: int) -> None:
            results[i] = await sidecar.run(add, i, i)

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        assert results == {i: 2 * i for i in range(200)}


async def test_trio_cancellation_cancels_the_asyncio_task():
    events: list[str] = []
    started = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            # Takes a moment to clean up: the Trio side must wait for this.
            await asyncio.sleep(0.05)
            events.append("asyncio task cancelled")
            raise
        events.append("finished")  # pragma: no cover

    async with open_sidecar() as sidecar:
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    try:
                        await sidecar.run(slow)
                    except trio.Cancelled:
                        events.append("trio caller cancelled")
                        raise

                nursery.start_soon(call)
                await trio.to_thread.run_sync(started.wait)
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert events == ["asyncio task cancelled", "trio caller cancelled"]


async def test_cancelled_call_that_completes_anyway_returns_its_value():
    """If the work finished before the cancel landed, its result is not thrown away."""
    gate = threading.Event()

    async def uncancellable() -> str:
        # Blocks the loop thread, so the cancel request cannot land before this returns.
        gate.wait(5)
        return "done"

    async with open_sidecar() as sidecar:
        results: list[str] = []
        with trio.CancelScope() as scope:

            async def release_soon() -> None:
                await trio.sleep(0.05)
                scope.cancel()
                gate.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(release_soon)
                results.append(await sidecar.run(uncancellable))
                await trio.lowlevel.checkpoint()  # the cancellation lands here
                results.append("not reached")  # pragma: no cover
        assert scope.cancelled_caught
        assert results == ["done"]


async def test_close_with_calls_in_flight():
    started = threading.Event()
    async with open_sidecar() as sidecar:
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await sidecar.run(asyncio.sleep, 30)
            except SidecarClosed:
                outcomes.append("closed")

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
            sidecar.call_soon(started.set)
            await trio.to_thread.run_sync(started.wait)
            await trio.sleep(0.05)
            with trio.fail_after(5):
                await sidecar.aclose()
        assert outcomes == ["closed"] * 3
        assert not sidecar._thread.is_alive()
        await sidecar.aclose()  # idempotent
        with pytest.raises(SidecarClosed):
            await sidecar.run(add, 1, 2)


async def test_close_is_shielded_from_cancellation():
    with trio.CancelScope() as scope:
        async with open_sidecar() as sidecar:
            scope.cancel()
            await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert not sidecar.running
    assert not sidecar._thread.is_alive()


async def test_run_needs_a_coroutine_function():
    async with open_sidecar() as sidecar:
        with pytest.raises(TypeError, match="coroutine"):
            await sidecar.run(lambda: 42)


async def test_push_events_from_the_loop_to_trio():
    async with open_sidecar() as sidecar:
        feed: EventFeed[int] = EventFeed(sidecar.trio_token)

        async def produce() -> None:
            for i in range(5):
                feed.push_threadsafe(i)

        await sidecar.run(produce)
        received = [await feed.receive() for _ in range(5)]
        assert received == [0, 1, 2, 3, 4]

        # A feed's iterator ends once it is closed and drained.
        feed.push_threadsafe(7)
        await sidecar.run(asyncio.sleep, 0)  # the push is queued to Trio before this reply
        feed.close()
        assert [value async for value in feed] == [7]


async def test_full_feed_coalesces_instead_of_losing():
    async with open_sidecar() as sidecar:
        feed: EventFeed[int] = EventFeed(sidecar.trio_token, max_buffer=1, merge=min)

        async def produce() -> None:
            for value in (30, 10, 20):
                feed.push_threadsafe(value)

        await sidecar.run(produce)
        assert len(feed) == 1
        assert await feed.receive() == 10
        with trio.move_on_after(0.05):
            await feed.receive()
            pytest.fail("the coalesced events were delivered twice")


async def test_waiting_receiver_wakes_on_push():
    async with open_sidecar() as sidecar:
        feed: EventFeed[str] = EventFeed(sidecar.trio_token)
        got: list[str] = []

        async def consume() -> None:
            got.append(await feed.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.sleep(0.01)
            sidecar.call_soon(feed.push_threadsafe, "hello")
        assert got == ["hello"]


# --- Coalescer: group commit across the bridge ---------------------------------------------------


async def test_coalescer_batches_concurrent_calls_and_answers_each():
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)  # while this runs, more calls queue up
        return [item * 10 for item in items]

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1)
        results = {}

        async def call(i: int) -> None:
            results[i] = (await coalescer.submit(i)).unwrap()

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(call, i)
        await coalescer.aclose()
    assert results == {i: i * 10 for i in range(100)}
    assert sorted(item for batch in batches for item in batch) == list(range(100))
    assert len(batches) < 20, "calls made while a flush ran should share the next one"


async def test_coalescer_retries_singly_so_one_bad_item_fails_alone():
    async def flush(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is unlucky")
        return items

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, retry_singly=lambda error: True)
        outcomes = {}

        async def call(i: int) -> None:
            outcomes[i] = await coalescer.submit(i)

        async with trio.open_nursery() as nursery:
            for i in range(10, 20):
                nursery.start_soon(call, i)
        await coalescer.aclose()
    assert {i: o.unwrap() for i, o in outcomes.items() if i != 13} == {
        i: i for i in range(10, 20) if i != 13
    }
    with pytest.raises(ValueError, match="unlucky"):
        outcomes[13].unwrap()


async def test_coalescer_cancelled_caller_withdraws_its_item():
    flushed: list[int] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        flushed.extend(items)
        await gate.wait()
        return items

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coalescer.submit, 1)  # taken at once; blocks the flusher
            await trio.sleep(0.05)
            with trio.move_on_after(0.05):
                await coalescer.submit(2)  # queued behind it, then cancelled
            sidecar.call_soon(gate.set)
        assert (await coalescer.submit(3)).unwrap() == 3
        await coalescer.aclose()
    assert flushed == [1, 3]


async def test_coalescer_on_results_runs_in_trio_before_callers_resume_even_cancelled_ones():
    gate = asyncio.Event()
    seen: list[tuple[list[int], bool]] = []

    async def flush(items: list[int]) -> list[int]:
        await gate.wait()
        return [item * 10 for item in items]

    def on_results(results: list) -> None:
        in_trio = threading.current_thread() is threading.main_thread()  # not the loop thread
        seen.append(([result.value for result in results], in_trio))  # unwrap is the caller's

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1, on_results=on_results)
        with trio.move_on_after(0.05):
            await coalescer.submit(1)  # taken by the flusher, then its caller gives up
        sidecar.call_soon(gate.set)
        assert (await coalescer.submit(2)).unwrap() == 20
        # Each flush's results were seen in Trio, and before the caller of 2 resumed.
        assert seen == [([10], True), ([20], True)]
        await coalescer.aclose()


async def test_coalescer_close_fails_waiting_callers():
    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(30)
        return items  # pragma: no cover

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1)
        outcomes = []

        async def call(i: int) -> None:
            outcomes.append(await coalescer.submit(i))

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(call, i)
            await trio.sleep(0.05)
            with trio.fail_after(5):
                await coalescer.aclose()
        assert len(outcomes) == 3
        for result in outcomes:
            with pytest.raises(SidecarClosed):
                result.unwrap()
        with pytest.raises(SidecarClosed):
            await coalescer.submit(4)


class Sessions:
    """A session factory that counts what it opened and closed, and can be told to fail."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.refuse: Exception | None = None

    @contextlib.asynccontextmanager
    async def __call__(self):
        if self.refuse is not None:
            raise self.refuse
        self.opened += 1
        try:
            yield self.opened  # the session's number
        finally:
            self.closed += 1


async def test_coalescer_keeps_its_session_for_a_caller_in_a_loop_then_lets_it_go():
    sessions = Sessions()

    async def flush(items: list[int], session: int) -> list[tuple[int, int]]:
        return [(item, session) for item in items]

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1, session=sessions, linger=1.0)
        answers = [(await coalescer.submit(i)).unwrap() for i in range(20)]
        assert answers == [(i, 1) for i in range(20)], "one session for the whole loop"
        assert sessions.closed == 0, "kept while the flusher lingers"
        # The linger timer runs on the asyncio loop's real clock, which Trio's cannot drive.
        with trio.fail_after(10):
            while sessions.closed == 0:
                await trio.sleep(0.05)
        assert sessions.closed == 1, "given back once idle for the linger time"
        assert (await coalescer.submit(99)).unwrap() == (99, 2), "the next call opens a new one"
        await coalescer.aclose()
    assert (sessions.opened, sessions.closed) == (2, 2), "closing the coalescer closes a lingering session"


async def test_coalescer_gives_up_a_session_whose_flush_failed():
    sessions = Sessions()

    async def flush(items: list[int], session: int) -> list[tuple[int, int]]:
        if 13 in items:
            raise Boom("the connection broke")
        return [(item, session) for item in items]

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1, session=sessions, linger=5)
        assert (await coalescer.submit(1)).unwrap() == (1, 1)
        with pytest.raises(Boom):
            (await coalescer.submit(13)).unwrap()
        assert (await coalescer.submit(2)).unwrap() == (2, 2), "a fresh session after the failure"
        assert sessions.closed == 1
        await coalescer.aclose()


async def test_coalescer_whose_session_cannot_open_fails_the_batch_and_recovers():
    sessions = Sessions()
    sessions.refuse = Boom("the database is out of reach")

    async def flush(items: list[int], session: int) -> list[int]:
        return items

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1, session=sessions, linger=0.05)
        with pytest.raises(Boom, match="out of reach"):
            (await coalescer.submit(1)).unwrap()
        sessions.refuse = None
        assert (await coalescer.submit(2)).unwrap() == 2
        await coalescer.aclose()
    assert (sessions.opened, sessions.closed) == (1, 1)


async def test_coalescer_lingering_flusher_takes_calls_from_many_tasks():
    sessions = Sessions()

    async def flush(items: list[int], session: int) -> list[int]:
        await asyncio.sleep(0)
        return [item * 2 for item in items]

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=2, session=sessions, linger=0.01)
        results: dict[int, int] = {}

        async def caller(first: int) -> None:
            for i in range(first, first + 50):
                results[i] = (await coalescer.submit(i)).unwrap()
                if i % 7 == 0:
                    await trio.sleep(0.02)  # past the linger time: flushers come and go

        async with trio.open_nursery() as nursery:
            for first in range(0, 500, 50):
                nursery.start_soon(caller, first)
        await coalescer.aclose()
    assert results == {i: i * 2 for i in range(500)}
    assert sessions.opened == sessions.closed


async def test_coalescer_replaces_a_session_that_died_while_it_lingered():
    sessions = Sessions()
    dead: set[int] = set()

    async def flush(items: list[int], session: int) -> list[tuple[int, int]]:
        assert session not in dead, "flushed on a dead session"
        return [(item, session) for item in items]

    async with open_sidecar() as sidecar:
        coalescer = Coalescer(sidecar, flush, max_flushes=1, session=sessions,
                              alive=lambda session: session not in dead, linger=5)
        assert (await coalescer.submit(1)).unwrap() == (1, 1)
        dead.add(1)  # the server closed the connection while the flusher waited
        assert (await coalescer.submit(2)).unwrap() == (2, 2)
        assert sessions.closed == 1
        await coalescer.aclose()
