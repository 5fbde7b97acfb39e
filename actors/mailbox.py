"""Bounded mailboxes for actors: cast (fire a message) and call (request/reply with a timeout).

A :class:`Mailbox` is one ``trio.open_memory_channel(capacity)`` pair. Senders ``cast`` or ``call``;
the actor owning it iterates ``async for message in mailbox`` (or ``receive``) and answers each
:class:`Request` with ``request.reply.set(value)`` or ``request.reply.fail(exc)``. The mailbox
usually outlives the actor: a restarted actor keeps serving the same mailbox.

A call costs one :class:`Request` and one :class:`Reply` (four slots) and no extra task.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

import trio

from actors.errors import CallTimeout, MailboxClosed

T = TypeVar("T")
R = TypeVar("R")

_SEND_CLOSED = (trio.ClosedResourceError, trio.BrokenResourceError)


class Reply(Generic[R]):
    """A one-shot reply slot: the actor sets a value or an exception exactly once; one caller waits.

    Answer it from the Trio thread. Answering after the caller gave up (timed out or was
    cancelled) is harmless: nobody reads it. Parks the waiting task directly instead of using a
    ``trio.Event``, which saves a scheduling pass per call.
    """

    __slots__ = ("_answered", "_value", "_error", "_waiter")

    def __init__(self) -> None:
        self._answered = False
        self._value: R | None = None
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        """True once a value or an exception has been set."""
        return self._answered

    def set(self, value: R) -> None:
        """Answer with ``value``; ``RuntimeError`` if already answered."""
        self._answer(value, None)

    def fail(self, error: BaseException) -> None:
        """Answer with ``error``, which the caller's ``call`` re-raises; ``RuntimeError`` if answered."""
        self._answer(None, error)

    async def wait(self) -> R:
        """Wait for the answer; return the value or raise the exception set by the actor."""
        if self._answered:
            await trio.lowlevel.checkpoint()
        else:
            await self._wait_answered()
        return self._result()

    def _answer(self, value: R | None, error: BaseException | None) -> None:
        if self._answered:
            raise RuntimeError("this reply has already been answered")
        self._answered, self._value, self._error = True, value, error
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def _wait_answered(self) -> None:
        if self._waiter is not None:
            raise RuntimeError("only one task may wait for a reply")
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:  # cancelled: stop waiting, a late answer is dropped
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _result(self) -> R:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Request(Generic[T, R]):
    """A message that wants an answer: ``payload`` for the actor, ``reply`` for the answer."""

    __slots__ = ("payload", "reply")
    __match_args__ = ("payload", "reply")

    def __init__(self, payload: T, reply: Reply[R]) -> None:
        self.payload = payload
        self.reply = reply

    def __repr__(self) -> str:
        return f"Request({self.payload!r})"


class Mailbox(Generic[T]):
    """A bounded, named queue of messages for one actor.

    Holds no resource beyond memory. :meth:`close` ends it: later sends raise :class:`MailboxClosed`,
    while the receiver still gets the messages already queued, then its iteration ends.
    Cancelling a blocked ``send``/``call`` leaves the mailbox intact (a cancelled ``send`` did not
    enqueue; a cancelled ``call`` may have, and its late reply is dropped).
    """

    def __init__(self, capacity: int, *, name: str = "mailbox") -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"mailbox {name!r}: capacity must be an int >= 0, got {capacity!r}")
        self.name = name
        self.capacity = capacity
        self._sender, self._receiver = trio.open_memory_channel[Any](capacity)

    def __repr__(self) -> str:
        return f"<Mailbox {self.name!r} {self.queued}/{self.capacity}>"

    @property
    def queued(self) -> int:
        """How many messages wait in the mailbox (for queue-depth metrics)."""
        return self._sender.statistics().current_buffer_used

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, message: T) -> None:
        """Enqueue ``message``, waiting while the mailbox is full (backpressure).

        Raises :class:`MailboxClosed` if the mailbox is closed.
        """
        try:
            await self._sender.send(message)
        except _SEND_CLOSED:
            raise self._closed() from None

    cast = send  # the OTP name for a fire-and-forget message

    def try_cast(self, message: T) -> bool:
        """Enqueue ``message`` without waiting; False if the mailbox is full. ``MailboxClosed`` if closed."""
        try:
            self._sender.send_nowait(message)
        except trio.WouldBlock:
            return False
        except _SEND_CLOSED:
            raise self._closed() from None
        return True

    async def call(self, payload: Any, *, timeout: float = 5.0) -> Any:
        """Send ``Request(payload, reply)`` and return the actor's answer.

        ``timeout`` bounds the whole call, waiting for room included: past it, :class:`CallTimeout`.
        An exception the actor sets with ``reply.fail`` is raised here; :class:`MailboxClosed` if the
        mailbox is closed.
        """
        reply: Reply[Any] = Reply()
        return await self._call(Request(payload, reply), reply, timeout)

    async def call_with(self, make_message: Callable[[Reply[Any]], T], *, timeout: float = 5.0) -> Any:
        """Like :meth:`call`, for messages that carry their reply slot themselves.

        ``make_message(reply)`` builds the message (e.g. a Struct with a ``reply`` field); the actor
        answers through that slot.
        """
        reply: Reply[Any] = Reply()
        return await self._call(make_message(reply), reply, timeout)

    async def _call(self, message: Any, reply: Reply[Any], timeout: float) -> Any:
        deadline = trio.current_time() + timeout
        if not self.try_cast(message):  # full: wait for room, within the deadline
            with trio.CancelScope(deadline=deadline) as scope:
                await self.send(message)
            if scope.cancelled_caught:
                raise self._timed_out(timeout, "found no room")
        # The call's checkpoint, plus one more scheduling pass if needed: an idle actor answers
        # within these, and then the call skips the timeout scope, which costs more than a pass.
        await trio.lowlevel.checkpoint()
        if not reply.done:
            await trio.lowlevel.cancel_shielded_checkpoint()
        if not reply.done:
            with trio.CancelScope(deadline=deadline) as scope:
                await reply._wait_answered()
            if scope.cancelled_caught:
                raise self._timed_out(timeout, "got no reply")
        return reply._result()

    def _timed_out(self, timeout: float, what: str) -> CallTimeout:
        return CallTimeout(
            f"call to mailbox {self.name!r} {what} within {timeout}s ({self.queued}/{self.capacity} queued)",
            mailbox=self.name,
        )

    # -- receiving --------------------------------------------------------------------------------

    async def receive(self) -> T:
        """The next message, waiting for one; :class:`MailboxClosed` once closed and drained."""
        try:
            return await self._receiver.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._closed() from None

    def __aiter__(self) -> Mailbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receiver.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Accept no more messages. Queued ones are still delivered; then receiving ends. Idempotent."""
        self._sender.close()

    def _closed(self) -> MailboxClosed:
        return MailboxClosed(f"mailbox {self.name!r} is closed", mailbox=self.name)
