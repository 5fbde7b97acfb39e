"""The handler registry: what runs a job of each kind, with its timeout and retry policy.

A handler is ``async def handler(ctx: JobContext) -> None``. Returning completes the job; raising
:class:`~thotto.errors.RetryableJobError` (or any unclassified exception, or running past the
timeout) retries it with backoff; :class:`~thotto.errors.PermanentJobError` dead-letters it;
:class:`~thotto.errors.DeferJob` reschedules it without spending an attempt.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec

from thotto.engine.errors import ValidationError
from thotto.engine.jobs import Job

T = TypeVar("T")
_RANDOM = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2^(n-1)))."""

    max_attempts: int = 3
    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError("max_attempts must be at least 1", field="max_attempts")
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise ValidationError("need 0 < base_seconds <= cap_seconds", field="base_seconds")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(attempt - 1, 60))
        return (rng or _RANDOM).uniform(0, ceiling)


@dataclass
class JobContext:
    """What a handler gets: the job, its attempt, and helpers. Cheap to build (hot path)."""

    job: Job
    now: Callable[[], datetime]

    @property
    def attempt(self) -> int:
        return self.job.attempt

    def payload(self, type: type[T] = Any) -> T:  # type: ignore[assignment]
        """Decode the JSON payload, into ``type`` when given (validated by msgspec)."""
        try:
            return msgspec.json.decode(self.job.payload, type=type)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"job {self.job.id} payload: {exc}") from exc


Handler = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    """A registered handler. ``timeout_seconds=None`` lets it run as long as it takes.
    ``io_bound`` handlers spend their time waiting on the network (a Reddit submission, a
    webhook): the pool runs them on its I/O workers, many at once, so they never queue behind
    the few workers that CPU-bound jobs get (see :class:`thotto.engine.workers.WorkerPool`)."""

    kind: str
    handler: Handler
    timeout_seconds: float | None = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    io_bound: bool = False

    def retry_at(self, attempt: int, now: datetime, after_seconds: float | None = None) -> datetime:
        delay = self.retry.delay(attempt) if after_seconds is None else after_seconds
        return now + timedelta(seconds=delay)


class HandlerRegistry:
    """Handlers by job kind. Registering the same kind again replaces the handler."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self.io_kinds: set[str] = set()
        """The kinds registered ``io_bound`` (read by the pool for every claimed batch)."""

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        timeout_seconds: float | None = 300.0,
        retry: RetryPolicy | None = None,
        io_bound: bool = False,
    ) -> HandlerSpec:
        spec = HandlerSpec(kind, handler, timeout_seconds, retry or RetryPolicy(), io_bound)
        self._specs[kind] = spec
        if io_bound:
            self.io_kinds.add(kind)
        else:
            self.io_kinds.discard(kind)
        return spec

    def get(self, kind: str) -> HandlerSpec | None:
        return self._specs.get(kind)

    def kinds(self) -> list[str]:
        """The registered kinds, sorted (what an embedder's engine will run)."""
        return sorted(self._specs)
