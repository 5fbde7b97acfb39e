"""The runtime's own exceptions: one hierarchy under :class:`ActorsError`.

Every error the runtime raises on purpose is a plain exception (never an exception group), so callers
can write ``except RestartIntensityExceeded:``. Where an error has an underlying cause (a child's
crash, a Trio timeout) it is chained with ``raise ... from``.
"""

from __future__ import annotations


class ActorsError(Exception):
    """Base class of every error raised by the ``actors`` runtime."""


class SupervisionError(ActorsError):
    """A supervisor could not keep a child running; ``supervisor`` and ``child`` name them."""

    def __init__(self, message: str, *, supervisor: str, child: str) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child


class StartupError(SupervisionError):
    """A child failed before it signalled ready; ``__cause__`` is what it raised.

    When raised by ``Supervisor.run`` the children started before it have already been stopped.
    """


class RestartIntensityExceeded(SupervisionError):
    """A supervisor saw more restarts than its intensity allows and gave up.

    By the time this is raised every child of the supervisor has been stopped. ``__cause__`` is the
    last child error (``None`` when the last exit was a normal return of a permanent child);
    ``child`` names the child whose exit tripped the limit.
    """


class MailboxError(ActorsError):
    """A mailbox operation failed; ``mailbox`` names the mailbox."""

    def __init__(self, message: str, *, mailbox: str) -> None:
        super().__init__(message)
        self.mailbox = mailbox


class CallTimeout(MailboxError):
    """A ``Mailbox.call`` got no reply (or no room in the mailbox) within its timeout."""


class MailboxClosed(MailboxError):
    """The mailbox was closed: it accepts no more messages (and has none left to receive)."""
