"""The asyncio sidecar: one thread running an asyncio event loop, for asyncio-only clients.

asyncpg (and the Redis client) are asyncio libraries; Thotto is a Trio program. Rather than
trio-asyncio (measured 3-6x slower here: docs/architecture.md, "Measured facts"), those clients live on one dedicated thread that
runs an asyncio loop, and Trio code awaits coroutines on it through a small bridge::

    async with open_sidecar() as sidecar:
        value = await sidecar.run(pool.fetchval, "SELECT 1")

:meth:`Sidecar.run` carries results, exceptions and Trio cancellation across the threads. Each call
costs two thread hand-offs (one each way), so callers batch work per call: one hop per store
operation, never one per row.

Events flow the other way (asyncio → Trio) through :class:`EventFeed`: asyncio code calls
:meth:`EventFeed.push_threadsafe` and a Trio task iterates the feed. A full feed coalesces values
with its ``merge`` function instead of blocking the loop or dropping values.

:class:`Coalescer` is group commit across the bridge: concurrent Trio calls queue items, and a
flusher on the loop handles all that queued in one batched call, answering each caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from thotto.engine.clock import wait_for_thread
from thotto.engine.errors import ThottoError

T = TypeVar("T")
I = TypeVar("I")
R = TypeVar("R")

log = logging.getLogger("thotto.aio")


class SidecarClosed(ThottoError):
    """The sidecar is closed (or closing), so the coroutine did not run or was cut short."""


class _Call:
    """One :meth:`Sidecar.run` in flight: the Trio task waiting and the asyncio task working.

    ``finish`` runs in the Trio thread (through the Trio token) exactly once, when the asyncio
    task is done, and is the only place that reschedules the waiting Trio task. So a reply can
    never reach a task that stopped waiting: a cancelled Trio caller keeps waiting until its
    asyncio task has finished cancelling.
    """

    __slots__ = ("trio_task", "atask", "raise_cancel")

    def __init__(self, trio_task: trio.lowlevel.Task):
        self.trio_task = trio_task
        self.atask: asyncio.Task[Any] | None = None
        self.raise_cancel: Callable[[], Any] | None = None

    def finish(self, result: outcome.Outcome[Any]) -> None:
        if self.raise_cancel is not None and isinstance(result, outcome.Error):
            # The caller was cancelled and the work did not complete: whatever the coroutine
            # raised on its way out (CancelledError, a driver complaint) is noise; the caller
            # gets its Cancelled. A value that arrived anyway is delivered: the work is done.
            result = outcome.capture(self.raise_cancel)
        trio.lowlevel.reschedule(self.trio_task, result)


class Sidecar:
    """An asyncio event loop on its own thread, and the bridge to call into it from Trio.

    Create one with :func:`open_sidecar`, which starts the thread and stops it on exit. It
    belongs to the Trio run that opened it.
    """

    def __init__(self, name: str = "thotto-aio"):
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.trio_token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stopped: trio.Event | None = None

    # --- the bridge --------------------------------------------------------------------------

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` as a task on the loop and return its result (or raise its error).

        The exception raised is the coroutine's own object (type and message preserved). If the
        calling Trio task is cancelled, the asyncio task is cancelled and this waits for it to
        finish before raising ``trio.Cancelled``; if the task completed anyway, its result is
        returned (the cancellation is then delivered at the caller's next checkpoint). Raises
        :class:`SidecarClosed` if the sidecar is closed, or closes while the task runs.
        """
        loop = self._loop_or_raise()
        token = self.trio_token
        coro = fn(*args)
        if not inspect.iscoroutine(coro):
            raise TypeError(f"Sidecar.run needs a coroutine function; {fn!r} returned {coro!r}")
        call = _Call(trio.lowlevel.current_task())

        def on_done(atask: asyncio.Task[Any]) -> None:  # asyncio thread
            if atask.cancelled():
                # Not at the caller's request (finish() turns that case into trio.Cancelled):
                # the loop is shutting down.
                result: outcome.Outcome[Any] = outcome.Error(
                    SidecarClosed(f"Sidecar {self.name!r} closed while the call ran")
                )
            else:
                error = atask.exception()
                result = outcome.Value(atask.result()) if error is None else outcome.Error(error)
            self._to_trio(token, call.finish, result)

        def start() -> None:  # asyncio thread
            try:
                call.atask = loop.create_task(coro)
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller, not lost
                coro.close()
                self._to_trio(token, call.finish, outcome.Error(exc))
                return
            call.atask.add_done_callback(on_done)

        def cancel() -> None:  # asyncio thread; runs after start(): the loop keeps FIFO order
            if call.atask is not None:
                call.atask.cancel()

        def abort(raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
            call.raise_cancel = raise_cancel
            try:
                loop.call_soon_threadsafe(cancel)
            except RuntimeError:
                pass  # the loop is closed: it cancelled every task itself on the way out
            # FAILED: we are rescheduled by on_done once the asyncio task has really ended.
            return trio.lowlevel.Abort.FAILED

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as exc:  # loop closed between the check and here
            coro.close()
            raise SidecarClosed(f"Sidecar {self.name!r} is closed") from exc
        return await wait_for_thread(abort)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the plain function ``fn(*args)`` on the loop thread soon (fire and forget)."""
        loop = self._loop_or_raise()
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError as exc:
            raise SidecarClosed(f"Sidecar {self.name!r} is closed") from exc

    def run_in_trio(self, fn: Callable[..., Any], *args: Any) -> bool:
        """From the loop thread (or any thread): run ``fn(*args)`` in the Trio thread soon.

        Calls are run in the order they were made. Returns False, dropping the call, when the
        Trio run has already finished.
        """
        assert self.trio_token is not None
        return self._to_trio(self.trio_token, fn, *args)

    @staticmethod
    def _to_trio(token: trio.lowlevel.TrioToken | None, fn: Callable[..., Any], *args: Any) -> bool:
        if token is None:
            return False
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self._closing:
            raise SidecarClosed(f"Sidecar {self.name!r} is not running")
        return self.loop

    @property
    def running(self) -> bool:
        """True between start and close."""
        return self.loop is not None and not self._closing

    # --- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        self.trio_token = trio.lowlevel.current_trio_token()
        started = trio.Event()
        self._stopped = trio.Event()
        failure: list[BaseException] = []
        token = self.trio_token

        def thread_main() -> None:
            try:
                loop = asyncio.new_event_loop()
            except BaseException as exc:  # noqa: BLE001 - reported to the opener
                failure.append(exc)
                token.run_sync_soon(started.set)
                token.run_sync_soon(self._stopped.set)
                return
            asyncio.set_event_loop(loop)
            self.loop = loop
            # Runs once run_forever has started: the opener may now submit work.
            loop.call_soon(self._to_trio, token, started.set)
            try:
                loop.run_forever()
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.run_until_complete(loop.shutdown_default_executor())
                finally:
                    loop.close()
                    self._to_trio(token, self._stopped.set)

        self._thread = threading.Thread(target=thread_main, name=self.name, daemon=True)
        self._thread.start()
        with trio.CancelScope(shield=True):
            await started.wait()
        if failure:
            raise failure[0]

    async def aclose(self) -> None:
        """Cancel the loop's remaining tasks, stop the loop and join the thread.

        Idempotent; shielded from cancellation, so it completes even when the caller is being
        cancelled. Trio callers still waiting in :meth:`run` get :class:`SidecarClosed`.
        """
        with trio.CancelScope(shield=True):
            if self.loop is None or self._stopped is None:
                return
            if not self._closing:
                self._closing = True
                try:
                    self.loop.call_soon_threadsafe(self._shutdown_in_loop)
                except RuntimeError:
                    pass  # already closed
            await self._stopped.wait()
            thread = self._thread
            if thread is not None and thread.is_alive():
                await trio.to_thread.run_sync(thread.join)

    def _shutdown_in_loop(self) -> None:
        """Loop thread: cancel every task, let them finish, then stop the loop."""
        loop = self.loop
        assert loop is not None
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in tasks:
            task.cancel()

        async def drain() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        if tasks:
            loop.create_task(drain())
        else:
            loop.stop()


@contextlib.asynccontextmanager
async def open_sidecar(name: str = "thotto-aio") -> AsyncIterator[Sidecar]:
    """Start a sidecar thread, yield it once its loop runs, and close it on exit.

    Closing is shielded and idempotent: tasks still running on the loop are cancelled, the loop
    stops and the thread is joined, also when the block exits by cancellation or error.
    """
    sidecar = Sidecar(name)
    await sidecar._start()
    try:
        yield sidecar
    finally:
        await sidecar.aclose()


class EventFeed(Generic[T]):
    """A bounded Trio-side queue that other threads (the asyncio loop) push events into.

    ``push_threadsafe`` may be called from any thread; ``put_nowait`` from the Trio thread. When
    ``max_buffer`` events are waiting, a new one is merged into the newest waiting event with
    ``merge(old, new)`` (default: keep the new one), so a slow consumer never blocks the producer
    and events are coalesced, not lost. Iterate with ``async for``; after :meth:`close` the
    iterator ends once the waiting events are drained. Closing releases nothing else.
    """

    def __init__(
        self,
        trio_token: trio.lowlevel.TrioToken | None = None,
        *,
        max_buffer: int = 64,
        merge: Callable[[T, T], T] | None = None,
    ):
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._token = trio_token or trio.lowlevel.current_trio_token()
        self._max = max_buffer
        self._merge = merge or (lambda old, new: new)
        self._items: collections.deque[T] = collections.deque()
        self._waiters = trio.lowlevel.ParkingLot()
        self._closed = False

    def push_threadsafe(self, value: T) -> bool:
        """Queue ``value`` from any thread; False if the Trio run is gone (value dropped)."""
        return Sidecar._to_trio(self._token, self.put_nowait, value)

    def put_nowait(self, value: T) -> None:
        """Trio thread: queue ``value``, merging it into the newest one if the feed is full."""
        if self._closed:
            return
        if len(self._items) >= self._max:
            self._items[-1] = self._merge(self._items[-1], value)
        else:
            self._items.append(value)
        self._waiters.unpark_all()

    async def receive(self) -> T:
        """Wait for the next event; raises ``trio.EndOfChannel`` once closed and drained."""
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._waiters.park()
        # No checkpoint between waking and taking: a cancelled receiver never loses an event.
        return self._items.popleft()

    def close(self) -> None:
        """Stop accepting events; waiting receivers wake and end once the queue is drained."""
        self._closed = True
        self._waiters.unpark_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> EventFeed[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Close the feed (for ``contextlib.aclosing``)."""
        self.close()
        await trio.lowlevel.checkpoint()


class _Pending:
    """One submitted item and the Trio task waiting for its result."""

    __slots__ = ("item", "task", "abandoned")

    def __init__(self, item: Any, task: trio.lowlevel.Task):
        self.item = item
        self.task = task
        # Set (in the Trio thread) once the task stopped waiting: cancelled, or answered.
        self.abandoned = False


def _deliver(
    batch: list[_Pending],
    results: list[outcome.Outcome[Any]],
    on_results: Callable[[list[outcome.Outcome[Any]]], None] | None = None,
) -> None:
    """Trio thread: run ``on_results``, then hand each still-waiting caller its own result."""
    if on_results is not None:
        on_results(results)
    for pending, result in zip(batch, results):
        if not pending.abandoned:
            pending.abandoned = True
            # Wrapped in a Value: submit returns the outcome rather than raising it.
            trio.lowlevel.reschedule(pending.task, outcome.Value(result))


class Coalescer(Generic[I, R]):
    """Group commit across the bridge: concurrent Trio calls become one batched loop call.

    Each :meth:`submit` queues one item; flusher tasks on the sidecar loop (at most
    ``max_flushes`` at once) take everything queued (up to ``max_batch`` items), await
    ``flush(items) -> results`` (one result per item, in order) and hand each caller its own
    result. While a flush is in flight, new items queue up for the next one, so under load a hop
    carries many calls, and an idle caller pays one hop.

    ``session`` (an async context manager factory, e.g. a pool checkout) gives a flusher a
    resource for its life: it is opened before its first flush, passed as
    ``flush(items, resource)``, and closed when the flusher ends, when a flush fails (a failed
    connection goes back to its pool at once), or before a flush when ``alive(resource)`` says it
    no longer is (a connection the server closed while the flusher lingered). ``linger`` keeps
    an idle flusher, and its session, waiting that many seconds for the next item: one caller
    submitting in a loop then costs no new task and no checkout per call (a pool checkout and
    release cost ~60 µs here, a tenth of a Postgres insert).

    If a batch of several items fails and ``retry_singly(error)`` is true, its items are flushed
    again one by one, so one bad item fails only its own caller. ``on_results(results)`` runs on
    the Trio thread with each flush's results (cancelled callers' too) just before the callers
    resume, in the same hand-off: what the flush must announce in Trio costs no second one. A caller cancelled before its
    item was taken withdraws it; once taken, the flush goes ahead without it. :meth:`aclose`
    fails items still queued or in flight with :class:`SidecarClosed`.
    """

    def __init__(
        self,
        sidecar: Sidecar,
        flush: Callable[..., Awaitable[list[R]]],
        *,
        max_batch: int = 1000,
        max_flushes: int = 2,
        retry_singly: Callable[[BaseException], bool] = lambda error: False,
        on_results: Callable[[list[outcome.Outcome[R]]], None] | None = None,
        session: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
        alive: Callable[[Any], bool] = lambda resource: True,
        linger: float = 0.0,
    ):
        self._sidecar = sidecar
        self._flush = flush
        self._max_batch = max_batch
        self._max_flushes = max_flushes
        self._retry_singly = retry_singly
        self._on_results = on_results
        self._session = session
        self._alive = alive
        self._linger = linger
        # Shared by the Trio thread (submit) and the loop thread (flushers).
        self._lock = threading.Lock()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._active = 0  # flusher tasks started or about to be, lingering ones included
        self._idle: collections.deque[asyncio.Event] = collections.deque()  # lingering flushers
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()  # loop thread only

    async def submit(self, item: I) -> outcome.Outcome[R]:
        """Queue ``item`` and wait for its result, as an Outcome (never raises for the flush).

        Returning the outcome rather than raising lets each caller wrap a shared error in an
        exception of its own. Raises :class:`SidecarClosed` if the coalescer is closed.
        """
        pending = _Pending(item, trio.lowlevel.current_task())
        idle = None
        with self._lock:
            if self._closed:
                raise SidecarClosed("The coalescer is closed")
            self._queue.append(pending)
            if self._idle:
                idle = self._idle.popleft()
                start = False
            else:
                start = self._active < self._max_flushes
                if start:
                    self._active += 1
        if idle is not None or start:
            try:
                self._sidecar.call_soon(idle.set if idle is not None else self._start_flusher)
            except SidecarClosed:
                if start:
                    with self._lock:
                        self._active -= 1
                pending.abandoned = True
                raise

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            # Not yet answered (else we would not be asked): withdraw. A flusher skips it if it
            # was still queued, and _deliver skips it if it was already taken.
            pending.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        # No Event/ParkingLot: the flusher's _deliver reschedules this task directly.
        return await wait_for_thread(abort)

    def _start_flusher(self) -> None:  # loop thread
        task = asyncio.get_running_loop().create_task(self._flusher())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flusher(self) -> None:  # loop thread
        batch: list[_Pending] = []  # taken and not yet answered
        counted = True  # in _active until _next_batch finds the flusher idle
        session = contextlib.AsyncExitStack()
        held: tuple[Any, ...] | None = None if self._session is not None else ()
        try:
            while batch := await self._next_batch():
                if held and not self._usable(held[0]):  # e.g. the server closed it meanwhile
                    await self._end_session(session)
                    held = None
                if held is None:
                    try:
                        held = (await session.enter_async_context(self._session()),)
                    except Exception as error:  # e.g. the database is out of reach
                        batch = self._answer(batch, [outcome.Error(error) for _ in batch])
                        continue
                results = await self._flush_batch(batch, held)
                batch = self._answer(batch, results)
                if held and any(isinstance(result, outcome.Error) for result in results):
                    await self._end_session(session)  # a failed connection is not kept
                    held = None
            counted = False  # _next_batch found the flusher idle and took it off the count
        except BaseException:
            if counted:
                with self._lock:
                    self._active -= 1
            closed = [outcome.Error(SidecarClosed("Closed while the call was in flight")) for _ in batch]
            self._sidecar.run_in_trio(_deliver, batch, closed)
            raise
        finally:
            await self._end_session(session)

    def _usable(self, resource: Any) -> bool:
        try:
            return self._alive(resource)
        except Exception:  # noqa: BLE001 - a resource that cannot say is not used
            return False

    @staticmethod
    async def _end_session(session: contextlib.AsyncExitStack) -> None:
        """Close the flusher's session; a failure to close it is logged, never the flusher's end
        (items may be queued behind it)."""
        try:
            await session.aclose()
        except Exception:  # noqa: BLE001 - e.g. a pool refusing a broken connection back
            log.warning("closing a flusher's session failed", exc_info=True)

    def _answer(self, batch: list[_Pending], results: list[outcome.Outcome[R]]) -> list[_Pending]:
        """Hand a batch its results in Trio; the batch still to answer (none)."""
        self._sidecar.run_in_trio(_deliver, batch, results, self._on_results)
        return []

    async def _next_batch(self) -> list[_Pending]:  # loop thread
        """The items queued (up to ``max_batch``), waiting up to ``linger`` seconds for one; []
        once idle that long, having left the flusher count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        while True:
            with self._lock:
                batch = []
                while self._queue and len(batch) < self._max_batch:
                    pending = self._queue.popleft()
                    if not pending.abandoned:
                        batch.append(pending)
                if batch:
                    return batch
                if loop.time() >= deadline:
                    self._active -= 1
                    return []
                wake = asyncio.Event()
                self._idle.append(wake)
            timer = loop.call_at(deadline, wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()
                with self._lock, contextlib.suppress(ValueError):
                    self._idle.remove(wake)  # still listed: woken by the timer (or cancelled)

    async def _flush_batch(self, batch: list[_Pending], held: tuple[Any, ...] = ()) -> list[outcome.Outcome[R]]:
        try:
            results = await self._flush([pending.item for pending in batch], *held)
        except Exception as error:
            if len(batch) > 1 and self._retry_singly(error):
                return [(await self._flush_batch([pending], held))[0] for pending in batch]
            return [outcome.Error(error) for _ in batch]
        return [outcome.Value(result) for result in results]

    async def aclose(self) -> None:
        """Stop: fail queued and in-flight items (SidecarClosed). Idempotent; shielded."""
        with trio.CancelScope(shield=True):
            with self._lock:
                self._closed = True
                waiting = list(self._queue)
                self._queue.clear()
            _deliver(waiting, [outcome.Error(SidecarClosed("Closed before the call ran")) for _ in waiting])
            if self._sidecar.running:
                with contextlib.suppress(SidecarClosed):
                    await self._sidecar.run(self._cancel_flushers)

    async def _cancel_flushers(self) -> None:  # loop thread
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Sidecar", "SidecarClosed", "EventFeed", "Coalescer", "open_sidecar"]
