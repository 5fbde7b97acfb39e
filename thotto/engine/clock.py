"""Wall-clock time for the engine, and how it maps onto Trio's clock for sleeping.

Jobs are due at wall-clock instants (UTC datetimes); Trio sleeps on its own monotonic clock. A
clock gives both: ``now()`` for the store and ``deadline(at)`` — the Trio time at which a
wall-clock instant arrives — for ``trio.sleep_until``. ``SystemClock`` follows the real wall
clock; ``TrioClock`` derives wall time from Trio's clock, so under pytest-trio's
``autojump_clock`` the whole engine (store included) runs in virtual, instant, exact time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

import trio
from trio._core import _run as _trio_run  # read-only, see tasks_runnable

from thotto.engine.jobs import UTC, utcnow


class Clock(Protocol):
    """What the engine needs of time."""

    def now(self) -> datetime:
        """The current wall-clock time, aware, in UTC."""

    def deadline(self, at: datetime) -> float:
        """The ``trio.current_time()`` value at which wall-clock ``at`` arrives."""


class SystemClock:
    """The real wall clock. ``deadline`` is recomputed at each call, so wall-clock adjustments
    (NTP) are picked up by the next sleep rather than accumulating."""

    def now(self) -> datetime:
        return utcnow()

    def deadline(self, at: datetime) -> float:
        return trio.current_time() + (at - utcnow()).total_seconds()


class TrioClock:
    """Wall time derived from Trio's clock: ``epoch`` at the moment the clock was made.

    Must be created inside a Trio run. With ``autojump_clock`` time jumps to the next deadline
    whenever every task is blocked.
    """

    def __init__(self, epoch: datetime | None = None):
        self.epoch = (epoch or utcnow()).astimezone(UTC)
        self.origin = trio.current_time()

    def now(self) -> datetime:
        return self.epoch + timedelta(seconds=trio.current_time() - self.origin)

    def deadline(self, at: datetime) -> float:
        return self.origin + (at - self.epoch).total_seconds()


async def sleep_until(clock: Clock, at: datetime) -> None:
    """Sleep until wall-clock ``at`` (returns at once if it has passed)."""
    await trio.sleep_until(clock.deadline(at))


class OffTrioWork:
    """How many Trio tasks are waiting for a reply from another thread right now (the SQLite
    writer and readers, the asyncio sidecar).

    Trio cannot see such work: to it a task waiting on a thread is simply blocked. A virtual test
    clock reads this count so it never jumps time forward while a store call is in flight
    (``tests/support/clock.py``). Counting costs two integer updates per store call.
    """

    pending = 0


async def wait_for_thread(abort_fn) -> object:
    """``trio.lowlevel.wait_task_rescheduled`` for a reply that another thread will deliver."""
    OffTrioWork.pending += 1
    try:
        return await trio.lowlevel.wait_task_rescheduled(abort_fn)
    finally:
        OffTrioWork.pending -= 1


def tasks_runnable() -> int:
    """``trio.lowlevel.current_statistics().tasks_runnable``, read straight from the run queue.

    The public call also gathers the I/O backend's statistics and the next deadline, ~3 µs, which
    a lone SQLite write (~40 µs in all) asks for every time. Trio has no public way to ask for
    the one number; where its internals differ from what this reads, it falls back to the public
    call (tests/unit/test_clock.py checks the two agree on the pinned Trio)."""
    runner = getattr(getattr(_trio_run, "GLOBAL_RUN_CONTEXT", None), "runner", None)
    runq = getattr(runner, "runq", None)
    if runq is None:
        return trio.lowlevel.current_statistics().tasks_runnable
    return len(runq)
