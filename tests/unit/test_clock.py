"""thotto.engine.clock.tasks_runnable reads Trio's run queue directly; it must agree with the
public statistics, or a Trio upgrade has moved what it reads (it then falls back)."""

from __future__ import annotations

import trio

from thotto.engine.clock import tasks_runnable


async def test_tasks_runnable_agrees_with_trio_statistics():
    assert tasks_runnable() == trio.lowlevel.current_statistics().tasks_runnable == 0
    async with trio.open_nursery() as nursery:
        for started in range(1, 4):
            nursery.start_soon(trio.lowlevel.checkpoint)  # runnable from now on
            assert tasks_runnable() == trio.lowlevel.current_statistics().tasks_runnable == started
    assert tasks_runnable() == 0
