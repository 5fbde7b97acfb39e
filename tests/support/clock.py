"""A virtual clock for tests of code that waits on other threads (the stores).

pytest-trio's ``autojump_clock`` jumps virtual time to the next deadline as soon as every task
is blocked, and a task waiting for the SQLite writer or the asyncio sidecar looks blocked to
Trio, so time would leap forward in the middle of a store call. This clock refuses to jump while
any task waits on another thread (:class:`thotto.engine.clock.OffTrioWork`), so virtual time only
passes while Thotto is truly idle: tests stay exact under any machine load.
"""

from __future__ import annotations

import trio.testing

from thotto.engine.clock import OffTrioWork

# How long (real seconds) Trio waits idle before trying to jump; a refused jump is retried
# after the same wait, so this is the polling period while a store call is in flight.
IDLE_BEFORE_JUMP_SECONDS = 0.0005


def thread_aware_mock_clock() -> trio.testing.MockClock:
    """A MockClock whose autojump waits for in-flight thread work (MockClock is final, so the
    run loop's autojump hook is replaced on the instance)."""
    clock = trio.testing.MockClock(autojump_threshold=IDLE_BEFORE_JUMP_SECONDS)
    jump_to_next_deadline = clock._autojump

    def autojump_when_no_thread_work() -> None:
        if OffTrioWork.pending == 0:
            jump_to_next_deadline()

    clock._autojump = autojump_when_no_thread_work
    return clock
