"""What a supervisor tells about itself, its event hook, and children added or removed at run time."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import trio

from actors import (
    Backoff,
    ChildInfo,
    ChildSpec,
    EventKind,
    ExitReason,
    Restart,
    StartupError,
    State,
    Supervisor,
    open_supervisor,
)
from tests.actors.probes import NO_BACKOFF, EventLog, Probe, settle


async def test_children_snapshots_report_state_restarts_last_error_and_start_time(autojump_clock):
    probe = Probe()
    supervisor = Supervisor(probe.specs("ab"), backoff=Backoff(initial=1))
    assert supervisor.state is State.STOPPED
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        assert supervisor.state is State.RUNNING
        await trio.sleep(10)
        probe.crash("b")
        await settle()
        restarting = supervisor.children()[1]
        assert (restarting.state, restarting.last_error) == (State.RESTARTING, "RuntimeError('b crashed')")
        await trio.sleep(5)
        a, b = supervisor.children()
        assert a == ChildInfo("a", State.RUNNING, restart_count=0, last_error=None, started_at=0)
        assert b == ChildInfo("b", State.RUNNING, restart_count=1, last_error="RuntimeError('b crashed')", started_at=11)
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.state = State.STOPPED  # type: ignore[misc]
        supervisor.stop()
    assert supervisor.state is State.STOPPED
    assert [info.state for info in supervisor.children()] == [State.STOPPED, State.STOPPED]


async def test_on_event_reports_starts_exits_with_reasons_and_restarts(autojump_clock):
    probe = Probe()
    events = EventLog()
    async with open_supervisor(probe.specs("ab"), backoff=NO_BACKOFF, on_event=events, name="app"):
        probe.crash("a")
        await settle()
    summary = [(event.kind, event.child, event.exit_reason, event.restart_count) for event in events]
    assert summary == [
        (EventKind.STARTED, "a", None, 0),
        (EventKind.STARTED, "b", None, 0),
        (EventKind.EXITED, "a", ExitReason.ERROR, 0),
        (EventKind.RESTARTED, "a", None, 1),
        (EventKind.EXITED, "b", ExitReason.SHUTDOWN, 0),
        (EventKind.EXITED, "a", ExitReason.SHUTDOWN, 1),
    ]
    assert repr(events[2].error) == "RuntimeError('a crashed')"
    assert {event.supervisor for event in events} == {"app"}


async def test_a_failing_event_hook_is_logged_and_does_not_stop_supervision(caplog):
    def broken_hook(event):
        raise ValueError("metrics are down")

    probe = Probe()
    with caplog.at_level(logging.ERROR, logger="actors.supervisor"):
        async with open_supervisor([probe.spec("a")], backoff=NO_BACKOFF, on_event=broken_hook):
            probe.crash("a")
            await settle()
            assert probe.log[-1] == "start a"
    assert "on_event hook" in caplog.text


async def test_start_child_returns_its_ready_value_and_terminate_child_removes_it():
    probe = Probe()
    async with open_supervisor([probe.spec("a")]) as supervisor:
        assert await supervisor.start_child(probe.spec("extra")) == "extra"
        assert [info.name for info in supervisor.children()] == ["a", "extra"]
        with pytest.raises(ValueError, match="already has a child named 'extra'"):
            await supervisor.start_child(probe.spec("extra"))
        await supervisor.terminate_child("extra")
        assert [info.name for info in supervisor.children()] == ["a"]
        with pytest.raises(KeyError):
            await supervisor.terminate_child("extra")
    assert probe.log == ["start a", "start extra", "stop extra", "stop a"]


async def test_start_child_failure_raises_and_leaves_the_child_out():
    async def broken(task_status=trio.TASK_STATUS_IGNORED):
        raise OSError("port in use")

    async with open_supervisor([]) as supervisor:
        with pytest.raises(StartupError) as caught:
            await supervisor.start_child(ChildSpec("listener", broken))
        assert isinstance(caught.value.__cause__, OSError)
        assert supervisor.children() == []
        assert supervisor.state is State.RUNNING


async def test_supervisor_runs_again_from_its_specs_after_it_stopped():
    probe = Probe()
    supervisor = Supervisor(probe.specs("a"))
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await supervisor.start_child(probe.spec("dynamic"))
            supervisor.stop()
    assert probe.log == ["start a", "start dynamic", "stop dynamic", "stop a"] * 2


async def test_the_same_supervisor_cannot_run_twice_at_once():
    supervisor = Supervisor([])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(RuntimeError, match="already running"):
            await supervisor.run()
        supervisor.stop()


def test_specs_validate_their_values():
    async def start(task_status=trio.TASK_STATUS_IGNORED):
        pass  # pragma: no cover

    assert ChildSpec("x", start, restart="transient").restart is Restart.TRANSIENT
    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("x", start), ChildSpec("x", start)])
    with pytest.raises(ValueError):
        ChildSpec("", start)
    with pytest.raises(ValueError):
        ChildSpec("x", start, shutdown_seconds=-1)
    with pytest.raises(ValueError):
        Backoff(initial=2, max=1)
