"""actors: a small Erlang/OTP-style supervision runtime on Trio.

Supervisors start children in order and stop them in reverse, restart them by restart type
(permanent, transient, temporary) and strategy (one_for_one, one_for_all, rest_for_one), back off
between restarts and give up past a restart intensity. Mailboxes give actors bounded queues with
cast and call (request/reply). This package depends on Trio only and never imports ``thotto``.
"""

from actors.errors import (
    ActorsError,
    CallTimeout,
    MailboxClosed,
    MailboxError,
    RestartIntensityExceeded,
    StartupError,
    SupervisionError,
)
from actors.mailbox import Mailbox, Reply, Request
from actors.spec import Backoff, ChildContext, ChildSpec, Intensity, Restart, Strategy
from actors.supervisor import (
    ChildInfo,
    EventKind,
    ExitReason,
    State,
    Supervisor,
    SupervisorEvent,
    open_supervisor,
    unwrap_sole_exception,
)

__all__ = [
    "ActorsError",
    "Backoff",
    "CallTimeout",
    "ChildContext",
    "ChildInfo",
    "ChildSpec",
    "EventKind",
    "ExitReason",
    "Intensity",
    "Mailbox",
    "MailboxClosed",
    "MailboxError",
    "Reply",
    "Request",
    "Restart",
    "RestartIntensityExceeded",
    "StartupError",
    "State",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "SupervisorEvent",
    "open_supervisor",
    "unwrap_sole_exception",
]
