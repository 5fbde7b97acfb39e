"""Engine fixtures: a real SQLite file, virtual time that the store shares.

The store's writer thread answers from outside Trio, so a plain ``autojump_clock`` (threshold 0)
would jump virtual time forward while a store call is in flight. This clock jumps only after every
task has been idle for a few real milliseconds: store calls finish well within that, and sleeps
still take no real time beyond it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import pytest
import trio
import trio.testing

from thotto.clock import TrioClock
from thotto.config import Settings
from thotto.engine import open_engine

EPOCH = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # a Monday, noon UTC
AUTOJUMP_AFTER_IDLE_SECONDS = 0.02


@pytest.fixture
def mock_clock():
    """Overrides pytest-trio's. pytest-trio only uses a clock a test takes as a direct argument,
    so every engine test names ``mock_clock`` in its signature."""
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_AFTER_IDLE_SECONDS)


@pytest.fixture
def settings(tmp_path):
    # Long lease and sweep periods: every timer tick costs a real autojump delay, so tests that
    # are not about leases keep them rare.
    return Settings(data_dir=str(tmp_path), workers=4, lease_seconds=1800.0,
                    shutdown_grace_seconds=5.0, sweep_interval_seconds=1800.0)


@pytest.fixture
def open_test_engine(mock_clock, settings):
    """``async with open_test_engine(epoch=..., **setting_overrides) as (engine, clock):``"""

    @contextlib.asynccontextmanager
    async def opener(epoch: datetime = EPOCH, run_workers: bool = True, **overrides):
        clock = TrioClock(epoch)
        chosen = settings if not overrides else Settings(**{**_as_dict(settings), **overrides})
        async with open_engine(chosen, clock=clock, run_workers=run_workers) as engine:
            yield engine, clock

    return opener


def _as_dict(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}
