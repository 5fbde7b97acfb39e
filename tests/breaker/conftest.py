"""Breaker fixtures."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def namespace():
    """A Redis key namespace of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}"
