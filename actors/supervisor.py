"""Erlang/OTP-style supervisors on Trio.

A :class:`Supervisor` starts its children in order (each awaited until ready), restarts them by
their restart type and the supervisor's strategy, backs off between restarts, gives up when restarts
exceed the restart intensity, and stops its children in reverse order, each within its shutdown
deadline. In Trio terms a child that returns exited normally, a cancellation by the supervisor is a
shutdown, and any other exception is an abnormal exit.

Every task the supervisor runs lives in a nursery inside :meth:`Supervisor.run`; nothing outlives
it. Run one with ``async with open_supervisor(specs) as sup:`` or ``await sup.run()``, or nest one
under another with ``parent_specs.append(sup.as_child())``.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

import trio

from actors.errors import RestartIntensityExceeded, StartupError, SupervisionError
from actors.spec import Backoff, ChildContext, ChildSpec, Intensity, Restart, Strategy

logger = logging.getLogger("actors.supervisor")


class State(enum.Enum):
    """Lifecycle state of a child or of a supervisor (a supervisor is never ``restarting``)."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # exited; waiting for its backoff delay or for earlier siblings
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # last exit was abnormal and no restart is pending


class ExitReason(enum.Enum):
    """Why a child's run ended."""

    NORMAL = "normal"  # it returned on its own
    SHUTDOWN = "shutdown"  # the supervisor stopped it (graceful return or cancellation)
    ERROR = "error"  # it raised


class EventKind(enum.Enum):
    """What a :class:`SupervisorEvent` reports."""

    STARTED = "started"  # first start of the child in this supervisor run became ready
    RESTARTED = "restarted"  # a restart became ready; restart_count says which
    EXITED = "exited"  # a ready child ended; see exit_reason and error
    START_FAILED = "start_failed"  # the child failed before becoming ready; see error
    GAVE_UP = "gave_up"  # restart intensity exceeded; child is the one whose exit tripped it


@dataclass(frozen=True)
class SupervisorEvent:
    """One lifecycle event, passed to the supervisor's ``on_event`` hook (for metrics and logs)."""

    kind: EventKind
    supervisor: str
    child: str
    at: float  # trio.current_time()
    restart_count: int
    exit_reason: ExitReason | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class ChildInfo:
    """Immutable snapshot of one child, from :meth:`Supervisor.children`."""

    name: str
    state: State
    restart_count: int
    last_error: str | None  # repr() of the last exception the child raised, if any
    started_at: float | None  # trio.current_time() when it last became ready


@dataclass(frozen=True)
class _Exit:
    reason: ExitReason
    error: BaseException | None
    uptime: float  # seconds between ready and exit; 0 when it never became ready


class _Incarnation:
    """One run of a child: its cancel scope, context and completion."""

    def __init__(self, context: ChildContext) -> None:
        self.context = context
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.ready_at: float | None = None
        self.stop_requested = False
        self.exit: _Exit | None = None  # set when a ready run ends

    def uptime(self) -> float:
        return 0.0 if self.ready_at is None else trio.current_time() - self.ready_at


class _Child:
    """The supervisor's mutable record of one child across its restarts."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.state = State.STOPPED
        self.restart_count = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.incarnation: _Incarnation | None = None
        self.restart_due: float | None = None
        self.last_delay: float | None = None  # backoff delay of the previous restart

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_active(self) -> bool:
        """Running, starting, stopping or waiting to restart: part of a group restart."""
        return self.incarnation is not None or self.state is State.RESTARTING

    def schedule_restart(self, due: float) -> None:
        self.state = State.RESTARTING
        # Never bring a pending restart forward: that would skip this child's own backoff.
        self.restart_due = due if self.restart_due is None else max(self.restart_due, due)

    def snapshot(self) -> ChildInfo:
        return ChildInfo(self.name, self.state, self.restart_count, self.last_error, self.started_at)


class _ReadyRelay:
    """The ``task_status`` handed to a child: records readiness, then forwards to Trio's."""

    def __init__(self, on_ready: Callable[[], None], task_status: trio.TaskStatus[Any]) -> None:
        self._on_ready = on_ready
        self._task_status = task_status

    def started(self, value: Any = None) -> None:
        self._task_status.started(value)  # first, so a second call fails before any bookkeeping
        self._on_ready()


def _should_restart(restart: Restart, reason: ExitReason) -> bool:
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason is ExitReason.ERROR
    return False


def _describe(exit: _Exit) -> str:
    return "exited normally" if exit.error is None else f"raised {exit.error!r}"


@contextmanager
def unwrap_sole_exception() -> Iterator[None]:
    """Re-raise a nursery's exception group as its one non-Cancelled exception, if it has one.

    So callers can write ``except RestartIntensityExceeded`` instead of ``except*``. Groups with
    several real errors, or only cancellations, pass through untouched.
    """
    try:
        yield
        return
    except BaseExceptionGroup as group:
        _, rest = group.split(trio.Cancelled)
        if rest is None or len(rest.exceptions) != 1 or isinstance(rest.exceptions[0], BaseExceptionGroup):
            raise
        sole = rest.exceptions[0]
    # Raised from inside a with-statement exit, so Python makes the group its __context__; keep
    # the real cause and hide that context, or every traceback would print the error twice.
    raise sole from sole.__cause__


class Supervisor:
    """Runs child actors and keeps them running by the Erlang/OTP rules.

    Construction opens nothing; :meth:`run` does the work and owns every task. ``on_event`` is
    called synchronously with a :class:`SupervisorEvent` for each start, restart, exit and give-up;
    an exception from the hook is logged and ignored so a metrics bug cannot take the tree down.
    """

    def __init__(
        self,
        specs: Iterable[ChildSpec] = (),
        *,
        name: str = "supervisor",
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: Intensity = Intensity(),
        backoff: Backoff = Backoff(),
        on_event: Callable[[SupervisorEvent], None] | None = None,
    ) -> None:
        self.name = name
        self.strategy = Strategy(strategy)
        self.intensity = intensity
        self.backoff = backoff
        self._specs = tuple(specs)
        self._check_unique_names(self._specs)
        self._on_event = on_event
        self._state = State.STOPPED
        self._children = [_Child(spec) for spec in self._specs]
        self._running = False
        self._nursery: trio.Nursery | None = None
        self._work_scope = trio.CancelScope()
        self._lock = trio.Lock()
        self._restart_times: deque[float] = deque()
        self._exit_reports_in: trio.MemoryReceiveChannel[_Incarnation] | None = None
        self._exit_reports: trio.MemorySendChannel[_Incarnation] | None = None

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self._state.value}, {len(self._children)} children>"

    # -- introspection --------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The supervisor's own state: starting, running, stopping, stopped or failed."""
        return self._state

    def children(self) -> list[ChildInfo]:
        """Snapshots of the children, in start order (temporary children vanish once they exit)."""
        return [child.snapshot() for child in self._children]

    # -- running --------------------------------------------------------------------------------

    async def run(
        self, ctx: ChildContext | None = None, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, call ``task_status.started(self)``, supervise until stopped.

        Returns after :meth:`stop` (or ``ctx.stopping``, when run as a child) once every child has
        stopped in reverse order. Raises :class:`StartupError` if a child fails to start (earlier
        children are stopped first) and :class:`RestartIntensityExceeded` when it gives up (all
        children stopped first).

        Cancellation is turned into the same graceful stop: children still stop in reverse order
        within their deadlines, so cancelling ``run`` can take up to the sum of their
        ``shutdown_seconds``. A supervisor object can run again after ``run`` returned (a parent
        restarting it), starting over from the specs it was built with; not twice at once.
        """
        self._begin_run()
        try:
            with unwrap_sole_exception():
                async with trio.open_nursery() as watcher_nursery:
                    watcher_nursery.start_soon(self._stop_when_asked, ctx)
                    # Shielded: outside cancellation reaches only the watcher, which turns it into a
                    # graceful stop, so children still stop in reverse order within deadlines.
                    with trio.CancelScope(shield=True):
                        await self._supervise(task_status)
                    watcher_nursery.cancel_scope.cancel()
        finally:
            self._running = False

    def stop(self) -> None:
        """Ask a running supervisor to stop; returns at once (no-op when not running).

        :meth:`run` returns, or the ``open_supervisor`` block exits, once every child has stopped
        in reverse order within its deadline.
        """
        self._work_scope.cancel()

    def as_child(
        self,
        name: str | None = None,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown_seconds: float = math.inf,
    ) -> ChildSpec:
        """A spec that runs this supervisor under a parent supervisor.

        The parent's graceful stop reaches this supervisor through its context. The default
        ``shutdown_seconds=inf`` lets it stop its own children within their own deadlines.
        """
        return ChildSpec(
            name or self.name, self.run, restart=restart, shutdown_seconds=shutdown_seconds, wants_context=True
        )

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child to a running supervisor, start it, and return the value it passed to ``started``.

        The child's startup runs in the caller's task (cancelling the caller aborts it); once ready
        it lives in the supervisor's nursery. Raises :class:`StartupError` (and the child is not
        added) if it fails to start, ``ValueError`` if the name is taken. Not from a child's own
        startup: the supervisor may be waiting for that startup while holding the same lock.
        """
        async with self._lock:
            self._require_running()
            if self._find(spec.name) is not None:
                raise ValueError(f"supervisor {self.name!r} already has a child named {spec.name!r}")
            child = _Child(spec)
            self._children.append(child)
            try:
                return await self._start_child(child)
            except BaseException:
                self._children.remove(child)
                raise

    async def terminate_child(self, name: str) -> None:
        """Stop the named child gracefully (as on shutdown) and remove it; ``KeyError`` if unknown.

        Call it from outside that child: the stop waits for the child's task to end.
        """
        async with self._lock:
            self._require_running()
            child = self._find(name)
            if child is None:
                raise KeyError(f"supervisor {self.name!r} has no child named {name!r}")
            await self._stop_child(child)
            self._children.remove(child)

    # -- lifecycle of one run -------------------------------------------------------------------

    @staticmethod
    def _check_unique_names(specs: tuple[ChildSpec, ...]) -> None:
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"child names must be unique, repeated: {duplicates}")

    def _begin_run(self) -> None:
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._state = State.STARTING
        self._children = [_Child(spec) for spec in self._specs]
        self._work_scope = trio.CancelScope()
        self._restart_times.clear()
        self._exit_reports, self._exit_reports_in = trio.open_memory_channel(math.inf)

    async def _stop_when_asked(self, ctx: ChildContext | None) -> None:
        try:
            if ctx is None:
                await trio.sleep_forever()
            else:
                await ctx.stopping.wait()
        finally:  # also on cancellation: that is how outside cancellation becomes a graceful stop
            self.stop()

    async def _supervise(self, task_status: trio.TaskStatus[Supervisor]) -> None:
        # Errors are raised only after the nursery closes, so they come out as plain exceptions.
        failure: SupervisionError | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                with self._work_scope:
                    await self._start_initial_children()
                    self._state = State.RUNNING
                    task_status.started(self)
                    await self._serve_forever()
            except SupervisionError as error:
                failure = error
            finally:
                await self._stop_all_children()
                self._state = State.FAILED if failure else State.STOPPED
        if failure is not None:
            raise failure

    def _require_running(self) -> None:
        if self._state is not State.RUNNING:
            raise RuntimeError(f"supervisor {self.name!r} is {self._state.value}, not running")

    def _find(self, name: str) -> _Child | None:
        return next((child for child in self._children if child.name == name), None)

    def _emit(self, kind: EventKind, child: _Child, **details: Any) -> None:
        if self._on_event is None:
            return
        event = SupervisorEvent(kind, self.name, child.name, trio.current_time(), child.restart_count, **details)
        try:
            self._on_event(event)
        except Exception:
            logger.exception("on_event hook of supervisor %r failed on %r", self.name, event)

    # -- starting -------------------------------------------------------------------------------

    async def _start_initial_children(self) -> None:
        for child in list(self._children):
            await self._start_child(child)

    async def _start_child(self, child: _Child) -> Any:
        """Start one incarnation and wait until it is ready; ``StartupError`` if it fails first."""
        incarnation = _Incarnation(ChildContext(child.name, child.restart_count))
        child.incarnation = incarnation
        child.state = State.STARTING
        assert self._nursery is not None
        try:
            return await self._nursery.start(self._run_incarnation, child, incarnation)
        except BaseException as error:
            child.incarnation = None
            if not isinstance(error, Exception):  # cancelled while starting: not the child's fault
                child.state = State.STOPPED
                raise
            child.state = State.FAILED
            child.last_error = repr(error)
            self._emit(EventKind.START_FAILED, child, error=error)
            raise StartupError(
                f"supervisor {self.name!r}: child {child.name!r} failed to start: {error!r}",
                supervisor=self.name,
                child=child.name,
            ) from error

    async def _run_incarnation(self, child: _Child, incarnation: _Incarnation, task_status: trio.TaskStatus[Any]) -> None:
        """The task of one child run: classifies how it ended and reports it to the serve loop.

        Before the child is ready its errors propagate, so ``nursery.start`` raises them to the
        starter; after, they are recorded and reported, never raised into the nursery.
        """
        relay = _ReadyRelay(lambda: self._mark_ready(child, incarnation), task_status)
        context = {"ctx": incarnation.context} if child.spec.wants_context else {}
        try:
            with incarnation.scope:
                await child.spec.start(task_status=relay, **context)
        except Exception as error:
            if incarnation.ready_at is None:
                raise
            self._record_exit(child, incarnation, ExitReason.ERROR, error)
        except BaseException:
            # Cancellation from outside this child's scope, KeyboardInterrupt...: not a child failure.
            if incarnation.ready_at is not None:
                self._record_exit(child, incarnation, ExitReason.SHUTDOWN, None)
            raise
        else:
            if incarnation.ready_at is not None:
                reason = ExitReason.SHUTDOWN if incarnation.stop_requested else ExitReason.NORMAL
                self._record_exit(child, incarnation, reason, None)
        finally:
            incarnation.done.set()

    def _mark_ready(self, child: _Child, incarnation: _Incarnation) -> None:
        now = trio.current_time()
        incarnation.ready_at = now
        child.started_at = now
        child.state = State.RUNNING
        self._emit(EventKind.RESTARTED if child.restart_count else EventKind.STARTED, child)

    def _record_exit(self, child: _Child, incarnation: _Incarnation, reason: ExitReason, error: Exception | None) -> None:
        incarnation.exit = _Exit(reason, error, incarnation.uptime())
        child.state = State.FAILED if reason is ExitReason.ERROR else State.STOPPED
        if error is not None:
            child.last_error = repr(error)
        self._emit(EventKind.EXITED, child, exit_reason=reason, error=error)
        # Exits the supervisor asked for are handled by whoever asked; the rest go to the serve loop.
        if not incarnation.stop_requested and reason is not ExitReason.SHUTDOWN:
            assert self._exit_reports is not None
            self._exit_reports.send_nowait(incarnation)  # unbounded channel: never blocks

    # -- restarting -----------------------------------------------------------------------------

    async def _serve_forever(self) -> None:
        while True:
            incarnation = await self._next_exit_report()
            async with self._lock:
                if incarnation is not None:
                    await self._handle_exit(incarnation)
                await self._start_due_restarts()

    async def _next_exit_report(self) -> _Incarnation | None:
        """The next unrequested exit, or None when a pending restart falls due first."""
        assert self._exit_reports_in is not None
        with trio.move_on_at(self._next_restart_due()):
            return await self._exit_reports_in.receive()
        return None

    async def _handle_exit(self, incarnation: _Incarnation) -> None:
        child = next((child for child in self._children if child.incarnation is incarnation), None)
        if child is None:
            return  # stale: a group restart or terminate_child already stopped it
        await self._apply_restart_policy(child, incarnation.exit)

    async def _apply_restart_policy(self, child: _Child, exit: _Exit) -> None:
        """Decide what the exit of ``child`` means: forget it, leave it stopped, or restart a group."""
        child.incarnation = None
        if not _should_restart(child.spec.restart, exit.reason):
            if child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)
            return
        self._count_restart(child, exit)
        due = trio.current_time() + self._next_delay(child, exit.uptime)
        group = self._restart_group(child)
        for member in reversed(group):
            await self._stop_child(member)
        for member in group:
            if member.spec.restart is Restart.TEMPORARY:
                self._children.remove(member)  # OTP: a temporary sibling is stopped, never restarted
            else:
                member.schedule_restart(due)

    def _count_restart(self, child: _Child, exit: _Exit) -> None:
        """Record a restart; give up with ``RestartIntensityExceeded`` if it is one too many."""
        now = trio.current_time()
        self._restart_times.append(now)
        while now - self._restart_times[0] >= self.intensity.period_seconds:
            self._restart_times.popleft()
        if len(self._restart_times) <= self.intensity.max_restarts:
            return
        child.state = State.FAILED
        self._emit(EventKind.GAVE_UP, child, exit_reason=exit.reason, error=exit.error)
        raise RestartIntensityExceeded(
            f"supervisor {self.name!r} gave up: more than {self.intensity.max_restarts} restarts in "
            f"{self.intensity.period_seconds}s; last, child {child.name!r} {_describe(exit)}",
            supervisor=self.name,
            child=child.name,
        ) from exit.error

    def _next_delay(self, child: _Child, uptime: float) -> float:
        backoff = child.spec.backoff or self.backoff
        if uptime >= backoff.reset_after:
            child.last_delay = None  # it was healthy for a while: start the backoff over
        child.last_delay = backoff.next_delay(child.last_delay)
        return child.last_delay

    def _restart_group(self, child: _Child) -> list[_Child]:
        """The children that restart with ``child``, in start order."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        siblings = self._children
        if self.strategy is Strategy.REST_FOR_ONE:
            siblings = siblings[siblings.index(child) :]
        return [sibling for sibling in siblings if sibling is child or sibling.is_active]

    def _restart_candidates(self) -> list[_Child]:
        pending = [child for child in self._children if child.state is State.RESTARTING]
        if self.strategy is Strategy.ONE_FOR_ONE:
            return pending
        return pending[:1]  # later children wait for earlier ones: they may depend on them

    def _next_restart_due(self) -> float:
        return min((child.restart_due for child in self._restart_candidates()), default=math.inf)

    async def _start_due_restarts(self) -> None:
        while True:
            now = trio.current_time()
            child = next((c for c in self._restart_candidates() if c.restart_due <= now), None)
            if child is None:
                return
            child.restart_due = None
            child.restart_count += 1
            try:
                await self._start_child(child)
            except StartupError as error:  # a failed restart counts as another abnormal exit
                await self._apply_restart_policy(child, _Exit(ExitReason.ERROR, error.__cause__, 0.0))

    # -- stopping -------------------------------------------------------------------------------

    async def _stop_child(self, child: _Child) -> None:
        """Stop the child's current run: stop signal, grace period, then cancel. Shielded."""
        incarnation = child.incarnation
        if incarnation is None:
            return
        incarnation.stop_requested = True
        if not incarnation.done.is_set():
            child.state = State.STOPPING
        # Shielded: a half-stopped child must not be left behind when our caller is cancelled.
        with trio.CancelScope(shield=True):
            if child.spec.wants_context:
                incarnation.context.stopping.set()
                with trio.move_on_after(child.spec.shutdown_seconds):
                    await incarnation.done.wait()
            incarnation.scope.cancel()
            await incarnation.done.wait()
        child.incarnation = None

    async def _stop_all_children(self) -> None:
        with trio.CancelScope(shield=True):
            async with self._lock:
                self._state = State.STOPPING
                for child in reversed(self._children):
                    await self._stop_child(child)
                    if child.state in (State.RESTARTING, State.STARTING):
                        child.state = State.STOPPED
                        child.restart_due = None


@asynccontextmanager
async def open_supervisor(specs: Iterable[ChildSpec], **options: Any) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of an ``async with`` block.

    Options are :class:`Supervisor`'s keyword arguments. Entering returns once every child is
    ready (or raises :class:`StartupError`). Leaving the block stops the children in reverse order
    within their deadlines and waits for them, also when the block raises or is cancelled. If the
    supervisor gives up, the block is cancelled and :class:`RestartIntensityExceeded` is raised
    from the ``async with`` statement as a plain exception.
    """
    supervisor = Supervisor(specs, **options)
    with unwrap_sole_exception():
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            try:
                yield supervisor
            finally:
                supervisor.stop()
