"""Restart types, strategies, restart intensity and backoff."""

from __future__ import annotations

import pytest
import trio

from actors import (
    Backoff,
    ChildSpec,
    EventKind,
    Intensity,
    Restart,
    RestartIntensityExceeded,
    State,
    Strategy,
    Supervisor,
    open_supervisor,
)
from tests.actors.probes import NO_BACKOFF, EventLog, Probe, crash_at_once, settle

# -- restart types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "exit_how", "restarted", "still_listed"),
    [
        (Restart.PERMANENT, "finish", True, True),
        (Restart.PERMANENT, "crash", True, True),
        (Restart.TRANSIENT, "finish", False, True),
        (Restart.TRANSIENT, "crash", True, True),
        (Restart.TEMPORARY, "finish", False, False),
        (Restart.TEMPORARY, "crash", False, False),
    ],
)
async def test_restart_type_decides_whether_an_exited_child_restarts(restart, exit_how, restarted, still_listed):
    probe = Probe()
    async with open_supervisor([probe.spec("w", restart=restart)], backoff=NO_BACKOFF) as supervisor:
        getattr(probe, exit_how)("w")
        await settle()
        assert (probe.log[-1] == "start w") is restarted
        assert [info.name for info in supervisor.children()] == (["w"] if still_listed else [])


async def test_transient_child_that_returned_stays_listed_as_stopped():
    probe = Probe()
    async with open_supervisor([probe.spec("w", restart=Restart.TRANSIENT)]) as supervisor:
        probe.finish("w")
        await settle()
        assert supervisor.children()[0].state is State.STOPPED


# -- strategies ---------------------------------------------------------------------------------


async def crash_b_and_log(strategy: Strategy) -> list[str]:
    probe = Probe()
    async with open_supervisor(probe.specs("abc"), strategy=strategy, backoff=NO_BACKOFF):
        mark = len(probe.log)
        probe.crash("b")
        await settle()
        reaction = probe.entries_since(mark)
    return reaction


async def test_one_for_one_restarts_only_the_failed_child():
    assert await crash_b_and_log(Strategy.ONE_FOR_ONE) == ["crash b", "start b"]


async def test_one_for_all_stops_all_in_reverse_then_starts_all_in_order():
    assert await crash_b_and_log(Strategy.ONE_FOR_ALL) == [
        "crash b",
        "stop c",
        "stop a",
        "start a",
        "start b",
        "start c",
    ]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it():
    assert await crash_b_and_log(Strategy.REST_FOR_ONE) == ["crash b", "stop c", "start b", "start c"]


async def test_group_restart_stops_temporary_siblings_for_good():
    probe = Probe()
    specs = [probe.spec("a"), probe.spec("t", restart=Restart.TEMPORARY)]
    async with open_supervisor(specs, strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF) as supervisor:
        probe.crash("a")
        await settle()
        assert [info.name for info in supervisor.children()] == ["a"]
    assert probe.log == ["start a", "start t", "crash a", "stop t", "start a", "stop a"]


async def test_group_restart_waits_for_the_failed_childs_backoff(autojump_clock):
    probe = Probe()
    backoff = Backoff(initial=2)
    async with open_supervisor(probe.specs("abc"), strategy=Strategy.REST_FOR_ONE, backoff=backoff):
        await trio.sleep(1)
        probe.crash("b")
        await trio.sleep(5)
    assert probe.times[3:7] == [("crash b", 1), ("stop c", 1), ("start b", 3), ("start c", 3)]


async def test_simultaneous_crashes_restart_a_one_for_all_group_once():
    probe = Probe()
    events = EventLog()
    async with open_supervisor(probe.specs("abc"), strategy=Strategy.ONE_FOR_ALL, backoff=NO_BACKOFF, on_event=events):
        mark = len(probe.log)
        probe.crash("a")
        probe.crash("c")
        await settle()
        reaction = probe.entries_since(mark)
        assert sorted(reaction[:2]) == ["crash a", "crash c"]  # both wake in one batch, in either order
        assert reaction[2:] == ["stop b", "start a", "start b", "start c"]
    assert [event.restart_count for event in events if event.kind is EventKind.RESTARTED] == [1, 1, 1]


async def test_stop_during_a_backoff_delay_does_not_wait_for_it(autojump_clock):
    probe = Probe()
    async with open_supervisor(probe.specs("ab"), backoff=Backoff(initial=60, max=60)) as supervisor:
        probe.crash("b")
        await trio.sleep(1)
        assert supervisor.children()[1].state is State.RESTARTING
    assert trio.current_time() == 1
    assert probe.log == ["start a", "start b", "crash b", "stop a"]
    assert [info.state for info in supervisor.children()] == [State.STOPPED, State.STOPPED]


# -- restart intensity --------------------------------------------------------------------------


async def test_intensity_exceeded_escalates_to_the_parent_supervisor():
    parent_events = EventLog()
    inner = Supervisor(
        [ChildSpec("flaky", crash_at_once)], name="inner", intensity=Intensity(2, 10), backoff=NO_BACKOFF
    )
    with pytest.raises(RestartIntensityExceeded) as caught:
        async with open_supervisor(
            [inner.as_child()], name="parent", intensity=Intensity(1, 10), backoff=NO_BACKOFF, on_event=parent_events
        ):
            await trio.sleep_forever()
    parent_error = caught.value
    inner_error = parent_error.__cause__
    assert (parent_error.supervisor, parent_error.child) == ("parent", "inner")
    assert isinstance(inner_error, RestartIntensityExceeded)
    assert (inner_error.supervisor, inner_error.child) == ("inner", "flaky")
    assert repr(inner_error.__cause__) == "RuntimeError('crashed at once')"
    # The parent restarted the inner supervisor once (its limit), then gave up itself.
    assert parent_events.brief() == [
        ("started", "inner"),
        ("exited", "inner"),
        ("restarted", "inner"),
        ("exited", "inner"),
        ("gave_up", "inner"),
    ]
    assert inner.state is State.FAILED


async def test_restarts_spread_over_time_stay_within_intensity(autojump_clock):
    crashes = 0

    async def crash_every_six_seconds(task_status=trio.TASK_STATUS_IGNORED) -> None:
        nonlocal crashes
        task_status.started()
        await trio.sleep(6)
        crashes += 1
        raise RuntimeError("periodic crash")

    spec = ChildSpec("periodic", crash_every_six_seconds)
    async with open_supervisor([spec], intensity=Intensity(2, 10), backoff=NO_BACKOFF) as supervisor:
        await trio.sleep(61)  # ten crashes; never more than two restarts within 10 s
        assert supervisor.state is State.RUNNING
        assert supervisor.children()[0].restart_count == crashes == 10


async def test_restarts_crowding_the_period_trip_intensity_exactly_on_the_extra_one(autojump_clock):
    async def crash_every_four_seconds(task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(4)
        raise RuntimeError("too often")

    supervisor = Supervisor([ChildSpec("w", crash_every_four_seconds)], intensity=Intensity(2, 10), backoff=NO_BACKOFF)
    with pytest.raises(RestartIntensityExceeded, match="more than 2 restarts in 10"):
        await supervisor.run()
    assert trio.current_time() == 12  # restarts at 4 and 8 fit; the one at 12 is the third within 10 s
    assert supervisor.children()[0].state is State.FAILED


# -- backoff ------------------------------------------------------------------------------------


async def test_backoff_delays_grow_exponentially_up_to_max(autojump_clock):
    events = EventLog()
    backoff = Backoff(initial=1, multiplier=2, max=5)
    async with open_supervisor(
        [ChildSpec("w", crash_at_once)], intensity=Intensity(100, 1000), backoff=backoff, on_event=events
    ):
        await trio.sleep(20)
    ready_times = [event.at for event in events if event.kind in (EventKind.STARTED, EventKind.RESTARTED)]
    assert ready_times == [0, 1, 3, 7, 12, 17]


async def test_backoff_resets_after_the_child_stayed_up_long_enough(autojump_clock):
    events = EventLog()
    uptimes = iter([0, 0, 20, 0])  # crash at once twice, then stay up 20 s, then crash at once

    async def flaky(task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(next(uptimes, 1000))
        raise RuntimeError("flaky")

    backoff = Backoff(initial=1, multiplier=2, max=60, reset_after=10)
    async with open_supervisor([ChildSpec("w", flaky)], intensity=Intensity(100, 1000), backoff=backoff, on_event=events):
        await trio.sleep(40)
    ready_times = [event.at for event in events if event.kind in (EventKind.STARTED, EventKind.RESTARTED)]
    # delays 1, 2; then up 20 s (reset), so 1 again; then 2
    assert ready_times == [0, 1, 3, 24, 26]


async def test_child_backoff_overrides_the_supervisor_backoff(autojump_clock):
    events = EventLog()
    spec = ChildSpec("w", crash_at_once, backoff=Backoff(initial=3, multiplier=1, max=3))
    async with open_supervisor([spec], intensity=Intensity(100, 1000), backoff=NO_BACKOFF, on_event=events):
        await trio.sleep(7)
    assert [event.at for event in events if event.kind is EventKind.RESTARTED] == [3, 6]
