"""Starting and stopping: order, readiness, deadlines, graceful stop, startup failure, cancellation."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from actors import (
    ChildContext,
    ChildSpec,
    EventKind,
    ExitReason,
    StartupError,
    State,
    Supervisor,
    open_supervisor,
)
from tests.actors.probes import EventLog, Probe


async def slow_starter(log: list[tuple[str, float]], name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
    log.append((f"start {name}", trio.current_time()))
    await trio.sleep(1)  # getting ready takes a second
    log.append((f"ready {name}", trio.current_time()))
    task_status.started(f"{name} value")
    await trio.sleep_forever()


async def test_children_start_in_order_each_after_the_previous_is_ready(autojump_clock):
    log: list[tuple[str, float]] = []
    specs = [ChildSpec(name, partial(slow_starter, log, name)) for name in "abc"]
    async with open_supervisor(specs) as supervisor:
        assert trio.current_time() == 3  # entered once all three were ready
        assert supervisor.state is State.RUNNING
    assert log == [
        ("start a", 0),
        ("ready a", 1),
        ("start b", 1),
        ("ready b", 2),
        ("start c", 2),
        ("ready c", 3),
    ]


async def test_children_stop_in_reverse_order():
    probe = Probe()
    async with open_supervisor(probe.specs("abc")):
        pass
    assert probe.log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_child_ignoring_stop_request_is_cancelled_exactly_at_its_deadline(autojump_clock):
    seen: dict[str, float | bool] = {}

    async def stubborn(ctx: ChildContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()  # ignores ctx.stopping
        except trio.Cancelled:
            seen["cancelled_at"] = trio.current_time()
            seen["stop_was_requested"] = ctx.stop_requested
            raise

    spec = ChildSpec("stubborn", stubborn, wants_context=True, shutdown_seconds=3)
    async with open_supervisor([spec]) as supervisor:
        await trio.sleep(10)
        supervisor.stop()
    assert seen == {"cancelled_at": 13, "stop_was_requested": True}
    assert trio.current_time() == 13


async def test_child_without_context_is_cancelled_at_once(autojump_clock):
    probe = Probe()
    async with open_supervisor([probe.spec("plain", shutdown_seconds=30)]):
        await trio.sleep(5)
    assert probe.times[-1] == ("stop plain", 5)


async def test_graceful_stop_lets_a_cooperative_child_finish(autojump_clock):
    log: list[tuple[str, float]] = []
    events = EventLog()

    async def cooperative(ctx: ChildContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await ctx.stopping.wait()
        log.append(("stop requested", trio.current_time()))
        await trio.sleep(2)  # flushing work in hand, within the 5 s deadline
        log.append(("flushed", trio.current_time()))

    spec = ChildSpec("cooperative", cooperative, wants_context=True, shutdown_seconds=5)
    async with open_supervisor([spec], on_event=events):
        await trio.sleep(1)
    assert log == [("stop requested", 1), ("flushed", 3)]
    assert events[-1].kind is EventKind.EXITED
    assert events[-1].exit_reason is ExitReason.SHUTDOWN


async def test_startup_failure_stops_started_children_and_raises_startup_error():
    probe = Probe()

    async def broken(task_status=trio.TASK_STATUS_IGNORED) -> None:
        probe.record("start b")
        raise ValueError("no database")

    specs = [probe.spec("a"), ChildSpec("b", broken), probe.spec("c")]
    supervisor = Supervisor(specs, name="app")
    with pytest.raises(StartupError, match="'b' failed to start") as caught:
        await supervisor.run()
    assert caught.value.child == "b"
    assert caught.value.supervisor == "app"
    assert isinstance(caught.value.__cause__, ValueError)
    assert probe.log == ["start a", "start b", "stop a"]  # c never started
    assert supervisor.state is State.FAILED
    assert [(info.name, info.state) for info in supervisor.children()] == [
        ("a", State.STOPPED),
        ("b", State.FAILED),
        ("c", State.STOPPED),
    ]


async def test_child_returning_before_ready_is_a_startup_failure():
    async def gives_up_early(task_status=trio.TASK_STATUS_IGNORED) -> None:
        return

    with pytest.raises(StartupError) as caught:
        async with open_supervisor([ChildSpec("early", gives_up_early)]):
            pass  # pragma: no cover - never entered
    assert isinstance(caught.value.__cause__, RuntimeError)


async def test_cancelling_run_still_stops_children_in_reverse_order_within_deadlines(autojump_clock):
    probe = Probe()
    supervisor = Supervisor(probe.specs("abc"))
    with trio.move_on_after(4) as timeout:
        await supervisor.run()
    assert timeout.cancelled_caught
    assert probe.log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert supervisor.state is State.STOPPED


async def test_nested_supervisor_stops_its_children_before_earlier_parent_children():
    probe = Probe()
    inner = Supervisor(probe.specs("xy"), name="inner")
    async with open_supervisor([probe.spec("a"), inner.as_child(), probe.spec("b")]):
        pass
    assert probe.log == ["start a", "start x", "start y", "start b", "stop b", "stop y", "stop x", "stop a"]
