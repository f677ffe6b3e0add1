"""Shared fixtures of the foundation tests: a fresh Metrics and a fixed wall clock."""

from __future__ import annotations

from collections.abc import Callable

import os

import pytest
from hypothesis import settings

from probepair.metrics import Metrics

# Under CI the property tests are seeded: a run is repeatable, a failure reproducible from
# its log, and a green run is not luck of the draw. Locally they explore new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

WALL_TIME = 1_700_000_000.0  # seconds since the epoch: 2023-11-14T22:13:20Z


@pytest.fixture
def metrics() -> Metrics:
    """A Metrics object on its own registry (never the global one)."""
    return Metrics()


@pytest.fixture
def wall_clock() -> Callable[[], float]:
    """A wall clock that always reads WALL_TIME."""
    return lambda: WALL_TIME
