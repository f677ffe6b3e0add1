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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The metrics-seen check reads what every other test scraped: it goes last."""
    last = [i for i in items if i.name == "test_every_readme_metric_moves_in_a_running_probe"]
    for item in last:
        items.remove(item)
        items.append(item)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A -k or -m selection: the metrics-seen check cannot see the whole suite."""
    from tests.e2e.seen import DESELECTED

    if items:
        items[0].config.stash[DESELECTED] = True
