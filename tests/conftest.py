"""Shared fixtures of the foundation tests: a fresh Metrics and a fixed wall clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from probepair.metrics import Metrics

WALL_TIME = 1_700_000_000.0  # seconds since the epoch: 2023-11-14T22:13:20Z


@pytest.fixture
def metrics() -> Metrics:
    """A Metrics object on its own registry (never the global one)."""
    return Metrics()


@pytest.fixture
def wall_clock() -> Callable[[], float]:
    """A wall clock that always reads WALL_TIME."""
    return lambda: WALL_TIME
