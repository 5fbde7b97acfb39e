"""The engine's records and messages: jobs, attempts, outcomes, and how they are checked.

Records (jobs, attempts, queue counts) are what the job store keeps and returns; outcomes are what
the worker pool hands to ``JobStore.settle``. All are ``msgspec.Struct`` types tagged by class
name under ``"type"``.

Constraints (lengths, ranges, patterns, time-zone-aware datetimes) live on the types themselves.
msgspec enforces them when it *decodes or converts*, not when Python code constructs a struct, so
every boundary that takes input from outside calls :func:`validated` (or decodes with the type).
All datetimes are time-zone aware; stores keep and return them in UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, TypeVar, Union

import msgspec

from thotto.engine.errors import ValidationError

UTC = timezone.utc

# --- constrained scalar types ---------------------------------------------------------------

AwareDatetime = Annotated[
    datetime, msgspec.Meta(tz=True, description="ISO 8601 date-time with a UTC offset")
]
Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z",
        description="1-64 characters: letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
    ),
]
JobKind = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z",
        description="the handler's name, e.g. 'reddit.submit'",
    ),
]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000, description="higher runs first among jobs due at the same time")]
MaxAttempts = Annotated[int, msgspec.Meta(ge=1, le=1000)]
DedupeKey = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ErrorText = Annotated[str, msgspec.Meta(max_length=4000)]


class Base(msgspec.Struct, tag_field="type", tag=True):
    """Common base: tagged by class name under ``"type"``."""


# --- enums ----------------------------------------------------------------------------------


class JobState(enum.Enum):
    """Where a job is in its life (docs/architecture.md, "The life of a job")."""

    PENDING = "pending"  # waiting for run_at (or due and waiting for a worker)
    PROCESSING = "processing"  # claimed under a lease
    COMPLETED = "completed"
    DEAD = "dead"  # attempts exhausted or a permanent error
    CANCELLED = "cancelled"  # by its owner while pending


class AttemptOutcome(enum.Enum):
    """How one attempt ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    RETRY = "retry"  # failed, will run again later
    DEAD = "dead"  # failed for good
    DEFERRED = "deferred"  # rescheduled without spending the attempt (rate limit, open breaker)
    EXPIRED = "expired"  # lease expired (crash, hang); the attempt counts
    RELEASED = "released"  # handed back by its owner (shutdown); the attempt is refunded


class SettleStatus(enum.Enum):
    """The result of one outcome in a batched settle."""

    OK = "ok"
    ALREADY = "already"  # the same outcome was already recorded (idempotent replay)
    LEASE_LOST = "lease_lost"  # the caller no longer holds the job's lease; nothing changed

# --- jobs -----------------------------------------------------------------------------------


class NewJob(Base, kw_only=True):
    """A job to enqueue.

    ``payload`` is a JSON document (bytes) that the handler for ``kind`` decodes. ``run_at`` of
    None means now. A ``dedupe_key`` is unique among *live* (pending or processing) jobs of the
    same queue: enqueueing a second live job with the same key returns the first one instead.
    """

    queue: Name = "default"
    kind: JobKind
    payload: bytes = b"null"
    priority: Priority = 0
    run_at: AwareDatetime | None = None
    max_attempts: MaxAttempts = 3
    dedupe_key: DedupeKey | None = None


class Job(Base):
    """A stored job. ``attempt`` counts attempts started (a claim starts one)."""

    id: int
    queue: str
    kind: str
    payload: bytes
    priority: int
    run_at: datetime
    state: JobState
    attempt: int
    max_attempts: int
    dedupe_key: str | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    finished_at: datetime | None = None
    last_error: str | None = None


class EnqueueResult(Base):
    """What enqueue did: ``created`` is False when a live job with the dedupe key existed."""

    job_id: int
    created: bool
    run_at: datetime


class Attempt(Base):
    """One attempt of a job, for its history."""

    job_id: int
    attempt: int
    owner: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome
    error: str | None = None


class QueueCount(Base):
    """How many jobs of one queue are in one state."""

    queue: str
    state: JobState
    count: int


class ExpiredLeases(Base):
    """What releasing expired leases did: job ids back to pending, and ids dead-lettered."""

    released: list[int]
    dead: list[int]


# --- job outcomes: what the worker pool reports, the input of JobStore.settle ---------------------


class Completed(Base):
    """The attempt succeeded."""

    job_id: int
    attempt: int


class Retry(Base):
    """The attempt failed; run the job again at ``run_at`` (it spent an attempt).

    If the job has no attempts left the store dead-letters it instead.
    """

    job_id: int
    attempt: int
    run_at: AwareDatetime
    error: ErrorText


class FailureCause(enum.Enum):
    """Why a job died, which says whether running it again can succeed."""

    SYSTEM = "system"
    """Not the job's fault: an outage, a timeout, a crash or an expired lease."""
    REFUSED = "refused"
    """The job can never succeed as it is (e.g. Reddit refused the post's content)."""
    ACCOUNT = "account"
    """Its Reddit account's credentials were refused: it must be linked again first."""


class Dead(Base):
    """The attempt failed permanently: dead-letter the job with ``error`` as the reason and
    ``cause`` as why (see :class:`FailureCause`)."""

    job_id: int
    attempt: int
    error: ErrorText
    cause: FailureCause = FailureCause.REFUSED


class Deferred(Base):
    """Run the job again at ``run_at`` without spending an attempt (rate limit, open breaker)."""

    job_id: int
    attempt: int
    run_at: AwareDatetime
    reason: ErrorText


class Released(Base):
    """Hand the job back at once without spending the attempt (graceful shutdown)."""

    job_id: int
    attempt: int


Outcome = Union[Completed, Retry, Dead, Deferred, Released]


class SettleResult(Base):
    job_id: int
    status: SettleStatus



T = TypeVar("T", bound=msgspec.Struct)


def validated(value: T) -> T:
    """Check a constructed struct against its type's constraints and return it.

    msgspec checks constraints only when decoding or converting from builtins (converting a struct
    to its own type passes it through unchecked), so code that builds structs from Python values
    calls this at the boundary. About 2 µs for a job; see :func:`validated_jobs` for batches.
    Raises :class:`thotto.errors.ValidationError` naming the field and what was wrong.
    """
    builtins = msgspec.to_builtins(value, builtin_types=(datetime, bytes))
    try:
        return msgspec.convert(builtins, type(value))
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), field=_field_of(str(exc))) from exc


def validated_jobs(jobs: Sequence[NewJob]) -> Sequence[NewJob]:
    """Validate a batch of jobs against NewJob's constraints, fast.

    Bulk batches repeat the same queue, kind, priority and limits, so each distinct combination is
    validated fully once and the rest only get the per-job checks (payload type, time zone). The
    constraints stay in one place, on the type.
    """
    seen: set[tuple[Any, ...]] = set()
    for job in jobs:
        shape = (
            job.queue,
            job.kind,
            job.priority,
            job.max_attempts,
            job.dedupe_key,
            type(job.payload),
            job.run_at is None or job.run_at.tzinfo is not None,
        )
        if shape not in seen:
            validated(job)
            seen.add(shape)
    return jobs


def decode_json(data: bytes | str, type: Any) -> Any:
    """Decode JSON into ``type``, raising :class:`ValidationError` with a clear message."""
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        raise ValidationError(str(exc), field=_field_of(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise ValidationError(f"Malformed JSON: {exc}") from exc


def _field_of(message: str) -> str | None:
    """Pull the field path msgspec puts at the end of its messages (``- at `$.title```)."""
    marker = "at `$."
    start = message.rfind(marker)
    if start == -1:
        return None
    return message[start + len(marker) :].rstrip("`")


def utcnow() -> datetime:
    """The current time, time-zone aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return an aware datetime converted to UTC; a naive one is an error, not a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"Datetime {value.isoformat()} has no time zone; give an offset, e.g. 2026-01-01T09:00:00+00:00"
        )
    return value.astimezone(UTC)
