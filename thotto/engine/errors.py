"""The job engine's errors: the base of Thotto's one error hierarchy.

Every error Thotto raises on purpose is a :class:`ThottoError`. Driver errors (sqlite3, asyncpg,
redis) are wrapped with ``raise ... from`` so callers catch one family and still see the cause.
Messages say what was wrong and how to fix it. The product's own errors (Reddit, breakers, the
HTTP API, media) extend these in :mod:`thotto.errors`.
"""

from __future__ import annotations

from datetime import datetime


class ThottoError(Exception):
    """Base of every error Thotto raises on purpose."""


class ConfigError(ThottoError):
    """A setting is missing or invalid; the message names the setting and what is allowed."""


class ValidationError(ThottoError):
    """Input failed validation. ``field`` names the offending field when known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# --- storage -------------------------------------------------------------------------------


class StoreError(ThottoError):
    """A storage operation failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or the connection broke; the operation may be retried.

    A write that raised this may or may not have committed: every store write is idempotent so
    that retrying it is safe.
    """


class StoreLocked(StoreError):
    """Another Thotto process already works this SQLite file (one process per file)."""


class SchemaError(StoreError):
    """The database schema is newer than this Thotto understands, or a migration failed."""


class NotFound(StoreError):
    """The record does not exist (or is not visible to the caller)."""


class Conflict(StoreError):
    """A uniqueness rule was broken, e.g. a user name or token that already exists."""


class InvalidTransition(StoreError):
    """The job is not in a state that allows this operation.

    For example cancelling a job that is running, or rescheduling a completed one. ``state`` is
    the state the job was found in.
    """

    def __init__(self, message: str, job_id: int | None = None, state: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class LeaseLost(InvalidTransition):
    """The caller does not hold the job's lease (it expired and was released, or never held)."""


# --- engine --------------------------------------------------------------------------------


class EngineError(ThottoError):
    """The job engine could not do what was asked."""


# --- raised by job handlers to say how an attempt ended ------------------------------------


class JobError(EngineError):
    """Base of the exceptions a job handler raises to classify its failure.

    Any other exception from a handler counts as retryable.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryableJobError(JobError):
    """The attempt failed for a passing reason (5xx, timeout): retry with backoff.

    ``after_seconds`` overrides the backoff delay when the cause says how long to wait.
    """

    def __init__(self, reason: str, *, after_seconds: float | None = None):
        super().__init__(reason)
        self.after_seconds = after_seconds


class PermanentJobError(JobError):
    """The job can never succeed as it is (its content was refused): dead-letter it now.

    ``cause`` (a :class:`thotto.engine.jobs.FailureCause` value) says whose failure it is:
    ``"refused"`` (the job's own: it must change before it can run again), ``"account"`` (its
    account must be linked again) or ``"system"`` (no fault of the job's: running it again may
    succeed)."""

    cause = "refused"

    def __init__(self, reason: str, *, cause: str | None = None):
        super().__init__(reason)
        if cause is not None:
            self.cause = cause


class DeferJob(JobError):
    """Not now, and not the job's fault (rate limit, open breaker): run it again at ``until``
    without spending an attempt."""

    def __init__(self, reason: str, *, until: datetime):
        super().__init__(reason)
        self.until = until
