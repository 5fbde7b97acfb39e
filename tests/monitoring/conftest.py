"""Fixtures: the engine ones (virtual time, real SQLite files) for the monitor's tests, and
Thotto serving its API over real HTTP (with the Reddit sandbox) for the endpoint tests."""

import pytest

from tests.api.conftest import api_settings, serving
from tests.engine.conftest import mock_clock, open_test_app, settings  # noqa: F401 (fixtures)
from tests.reddit.conftest import sandbox  # noqa: F401 (a fixture)


@pytest.fixture
async def api(sandbox, tmp_path):  # noqa: F811
    """The API with users (see tests/api/conftest.py); the monitor snapshots every 0.2 s."""
    async with serving(api_settings(tmp_path, sandbox.url, monitor_interval_seconds=0.2)) as api:
        yield api
