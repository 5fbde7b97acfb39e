"""The engine fixtures (virtual time, real SQLite files) for the monitor's tests."""

from tests.engine.conftest import mock_clock, open_test_engine, settings  # noqa: F401 (fixtures)
