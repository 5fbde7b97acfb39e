"""Thotto: a self-hosted Reddit post scheduler on a durable, embeddable Trio job engine.

The embedding API: ``async with thotto.open_engine(thotto.Settings(...)) as engine:``.
"""

__version__ = "0.1.0"

from thotto.config import Settings, load_settings
from thotto.cron import CatchUp
from thotto.engine import Engine, open_engine
from thotto.errors import (
    DeferJob,
    PermanentJobError,
    RetryableJobError,
    ThottoError,
    ValidationError,
)
from thotto.handlers import JobContext, RetryPolicy
from thotto.messages import Job, JobState, NewJob

__all__ = [
    "CatchUp",
    "DeferJob",
    "Engine",
    "Job",
    "JobContext",
    "JobState",
    "NewJob",
    "PermanentJobError",
    "RetryPolicy",
    "RetryableJobError",
    "Settings",
    "ThottoError",
    "ValidationError",
    "load_settings",
    "open_engine",
]
