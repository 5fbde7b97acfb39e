"""Test children that log what happens to them, and a recorder for supervisor events."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
import trio.testing

from actors import Backoff, ChildSpec, SupervisorEvent

NO_BACKOFF = Backoff(initial=0)


class Probe:
    """Children that write "start x", "stop x" (cancelled), "crash x" or "return x" to ``log``.

    Each child runs until the test calls ``crash(name)`` or ``finish(name)``, or it is stopped.
    ``times`` records ``(entry, trio.current_time())`` for timing checks.
    """

    def __init__(self) -> None:
        self.log: list[str] = []
        self.times: list[tuple[str, float]] = []
        self._exit_requests: dict[str, trio.Event] = {}
        self._exit_errors: dict[str, BaseException | None] = {}

    def spec(self, name: str, **options: Any) -> ChildSpec:
        return ChildSpec(name, partial(self.run, name), **options)

    def specs(self, names: str, **options: Any) -> list[ChildSpec]:
        return [self.spec(name, **options) for name in names]

    def record(self, entry: str) -> None:
        self.log.append(entry)
        self.times.append((entry, trio.current_time()))

    async def run(self, name: str, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        exit_request = self._exit_requests[name] = trio.Event()
        self.record(f"start {name}")
        task_status.started(name)
        try:
            await exit_request.wait()
        except trio.Cancelled:
            self.record(f"stop {name}")
            raise
        error = self._exit_errors.pop(name)
        if error is not None:
            self.record(f"crash {name}")
            raise error
        self.record(f"return {name}")

    def crash(self, name: str) -> None:
        self._exit_errors[name] = RuntimeError(f"{name} crashed")
        self._exit_requests[name].set()

    def finish(self, name: str) -> None:
        self._exit_errors[name] = None
        self._exit_requests[name].set()

    def entries_since(self, mark: int) -> list[str]:
        return self.log[mark:]


class EventLog(list[SupervisorEvent]):
    """An ``on_event`` hook that keeps every event."""

    def __call__(self, event: SupervisorEvent) -> None:
        self.append(event)

    def brief(self) -> list[tuple[str, str]]:
        return [(event.kind.value, event.child) for event in self]


async def settle() -> None:
    """Let every task run until all are blocked (supervisor reactions with no backoff are instant)."""
    await trio.testing.wait_all_tasks_blocked()


async def crash_at_once(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A child that becomes ready, then fails straight away."""
    task_status.started()
    await trio.lowlevel.checkpoint()
    raise RuntimeError("crashed at once")
