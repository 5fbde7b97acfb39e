"""Thotto's job engine: durable jobs on Trio, embeddable in any Trio program.

    async with thotto.engine.open_engine(settings, store) as engine:
        engine.register_handler("greet", greet)
        await engine.schedule("greet", when, {"name": "world"})

Jobs are stored (SQLite or Postgres), run at their time by a pool of workers, retried with
backoff, deferred, dead-lettered, and survive restarts; cron jobs run on five-field schedules.
The engine imports nothing of the product built on it (the Reddit scheduler, the HTTP API): this
package's modules are private in spirit, and these names are its public surface.
"""

from thotto.engine.clock import Clock, SystemClock, TrioClock
from thotto.engine.config import EngineSettings, ProcessRole
from thotto.engine.cron import CatchUp
from thotto.engine.engine import CronStatus, Engine, open_engine
from thotto.engine.errors import (
    ConfigError,
    DeferJob,
    NotFound,
    PermanentJobError,
    RetryableJobError,
    StoreError,
    StoreUnavailable,
    ThottoError,
    ValidationError,
)
from thotto.engine.handlers import HandlerRegistry, JobContext, RetryPolicy
from thotto.engine.jobs import Attempt, EnqueueResult, Job, JobState, NewJob
from thotto.engine.store.base import JobStore, PausedQueue

__all__ = [
    "Attempt",
    "CatchUp",
    "Clock",
    "ConfigError",
    "CronStatus",
    "DeferJob",
    "EnqueueResult",
    "Engine",
    "EngineSettings",
    "HandlerRegistry",
    "Job",
    "JobContext",
    "JobState",
    "JobStore",
    "NewJob",
    "NotFound",
    "PausedQueue",
    "PermanentJobError",
    "RetryPolicy",
    "RetryableJobError",
    "ProcessRole",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "ThottoError",
    "TrioClock",
    "ValidationError",
    "open_engine",
]
