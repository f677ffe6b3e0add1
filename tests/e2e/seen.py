"""What the e2e tests saw running probes export: every /metrics sample they scraped.

``procs.parse_metrics`` records each sample here, and a probe's ``stop()`` scrapes once
more before SIGTERM, so a run of the whole e2e suite knows which metric families real
probes exported and which of them it saw nonzero. ``tests/e2e/test_metrics_seen.py``
(run last) holds that against the README's metrics table.
"""

from __future__ import annotations

import re

import pytest

EXPORTED: set[str] = set()  # metric families seen in any scrape
NONZERO: set[str] = set()  # ... and seen nonzero in some series: they moved
# Set by tests/conftest.py when a -k or -m selection deselected tests.
DESELECTED = pytest.StashKey[bool]()
_LABELS = re.compile(r"\{.*\}$")
_PARTS = ("_bucket", "_count", "_sum")


def record(samples: dict[str, float]) -> None:
    """Counters start at 0 and labelled series appear at their first increment, so a
    nonzero sample means the family moved; a gauge seen nonzero was set."""
    for series, value in samples.items():
        name = family(series)
        if name is not None:
            EXPORTED.add(name)
            if value != 0:
                NONZERO.add(name)


def family(series: str) -> str | None:
    """The metric a sample belongs to (None: the client's ``_created`` timestamps)."""
    name = _LABELS.sub("", series)
    if name.endswith("_created"):
        return None  # a counter's creation time: nonzero, and says nothing
    for part in _PARTS:
        if name.endswith(part):
            return name[: -len(part)]
    return name
