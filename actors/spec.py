"""What a supervisor is told about its children: specs, restart rules, limits and the child context.

All of these are immutable values; building one opens no resource.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

import trio


class Restart(enum.Enum):
    """When a child that exited is started again (Erlang/OTP restart types)."""

    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit (an exception)
    TEMPORARY = "temporary"  # never restarted; removed from the supervisor once it exits


class Strategy(enum.Enum):
    """Which children restart when one child has to be restarted (Erlang/OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"  # only the child that exited
    ONE_FOR_ALL = "one_for_all"  # every child: all stop in reverse order, then all start in order
    REST_FOR_ONE = "rest_for_one"  # the child and those started after it, same order rules


@dataclass(frozen=True)
class Intensity:
    """Restart limit: more than ``max_restarts`` restarts within ``period_seconds`` and the
    supervisor gives up (stops its children and raises ``RestartIntensityExceeded``).

    A restart counts while it is younger than ``period_seconds``; a group restart (one_for_all,
    rest_for_one) counts once.
    """

    max_restarts: int = 3
    period_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if not self.period_seconds > 0:
            raise ValueError(f"period_seconds must be > 0, got {self.period_seconds}")


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a child, growing exponentially across consecutive restarts.

    The first restart waits ``initial`` seconds, each next one ``multiplier`` times longer, capped at
    ``max``. Once a child has stayed up for ``reset_after`` seconds, its next restart waits
    ``initial`` again. ``Backoff(initial=0)`` restarts at once every time.
    """

    initial: float = 0.1
    max: float = 5.0
    multiplier: float = 2.0
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < self.initial:
            raise ValueError(f"need 0 <= initial <= max, got initial={self.initial} max={self.max}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.reset_after < 0:
            raise ValueError(f"reset_after must be >= 0, got {self.reset_after}")

    def next_delay(self, previous: float | None) -> float:
        """The delay after ``previous`` (``None``: no recent restart, so ``initial``)."""
        if previous is None:
            return self.initial
        return min(self.max, previous * self.multiplier)


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child.

    ``start`` is an async callable ``start(task_status=...)`` (bind arguments with
    ``functools.partial``) that calls ``task_status.started(value)`` once it is ready to serve; the
    value becomes the result of ``Supervisor.start_child``. Returning means a normal exit; raising
    an exception is an abnormal exit.

    Stopping: with ``wants_context=True`` the child is called as ``start(ctx=ChildContext, ...)``;
    on stop the supervisor sets ``ctx.stopping``, waits up to ``shutdown_seconds`` for the child to
    return, then cancels it. A child without a context cannot hear the request, so it is cancelled at
    once. ``shutdown_seconds=math.inf`` waits for as long as the child takes (use it for nested
    supervisors, whose own children have deadlines).

    ``backoff=None`` uses the supervisor's backoff.
    """

    name: str
    start: Callable[..., Any]
    restart: Restart = Restart.PERMANENT
    shutdown_seconds: float = 5.0
    wants_context: bool = False
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a child needs a non-empty name")
        if not callable(self.start):
            raise TypeError(f"child {self.name!r}: start must be an async callable, got {self.start!r}")
        if not self.shutdown_seconds >= 0:  # also rejects NaN
            raise ValueError(f"child {self.name!r}: shutdown_seconds must be >= 0")
        # Accept "permanent" etc. from configuration files as well as the enum.
        object.__setattr__(self, "restart", Restart(self.restart))


@dataclass(frozen=True)
class ChildContext:
    """Passed to a child started with ``wants_context=True`` as the ``ctx`` keyword argument.

    ``stopping`` is set when the supervisor asks the child to stop: finish the work in hand and
    return within the spec's ``shutdown_seconds``, or be cancelled. ``restart_count`` says how many
    times this child has been restarted before this run.
    """

    name: str
    restart_count: int
    stopping: trio.Event = field(default_factory=trio.Event, compare=False)

    @property
    def stop_requested(self) -> bool:
        """True once the supervisor has asked this child to stop."""
        return self.stopping.is_set()
