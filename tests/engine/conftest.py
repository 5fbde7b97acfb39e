"""Engine fixtures: a real SQLite file, virtual time that the store shares.

Time tests use :func:`tests.support.clock.thread_aware_mock_clock`, which jumps virtual time
forward only while no store call is in flight (see its docstring).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone

import pytest

from tests.support.clock import thread_aware_mock_clock
from thotto.app import open_app
from thotto.config import Settings
from thotto.engine.clock import TrioClock

EPOCH = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # a Monday, noon UTC


@pytest.fixture
def mock_clock():
    """Overrides pytest-trio's. pytest-trio only uses a clock a test takes as a direct argument,
    so every engine test names ``mock_clock`` in its signature."""
    return thread_aware_mock_clock()


@pytest.fixture
def settings(tmp_path):
    # Long lease, sweep and monitor periods keep timer wake-ups rare in tests that are not about them.
    return Settings(data_dir=str(tmp_path), workers=4, lease_seconds=1800.0,
                    shutdown_grace_seconds=5.0, sweep_interval_seconds=1800.0,
                    monitor_interval_seconds=1800.0)


@pytest.fixture
def open_test_app(mock_clock, settings):
    """``async with open_test_app(epoch=..., **setting_overrides) as (engine, clock):``"""

    @contextlib.asynccontextmanager
    async def opener(epoch: datetime = EPOCH, run_workers: bool = True, **overrides):
        clock = TrioClock(epoch)
        chosen = settings if not overrides else Settings(**{**_as_dict(settings), **overrides})
        async with open_app(chosen, clock=clock, run_workers=run_workers) as app:
            yield app, clock

    return opener


def _as_dict(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}
