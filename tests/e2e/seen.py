"""What the e2e tests saw running probes export: every /metrics sample they scraped.

``procs.parse_metrics`` records each sample here, and a probe's ``stop()`` scrapes once
more before SIGTERM, so a run of the whole e2e suite knows which values each metric
family took in real probes. ``tests/e2e/test_metrics_seen.py`` (run last) holds that
against the README's metrics table: every metric it documents must have moved.
"""

from __future__ import annotations

import re

# series name (with labels) -> distinct values seen (a few are enough to tell "moved")
SEEN: dict[str, set[float]] = {}
_KEEP = 4
_LABELS = re.compile(r"\{.*\}$")
_PARTS = ("_bucket", "_count", "_sum")


def record(samples: dict[str, float]) -> None:
    for series, value in samples.items():
        values = SEEN.setdefault(series, set())
        if len(values) < _KEEP:
            values.add(value)


def family(series: str) -> str | None:
    """The metric a sample belongs to (None: the client's ``_created`` timestamps)."""
    name = _LABELS.sub("", series)
    if name.endswith("_created"):
        return None  # a counter's creation time: nonzero, and says nothing
    for part in _PARTS:
        if name.endswith(part):
            return name[: -len(part)]
    return name


def moved() -> dict[str, bool]:
    """Per metric family: was some series of it seen nonzero? (Counters start at 0 and
    labelled series appear at their first increment, so nonzero is "it moved"; a gauge
    seen nonzero was set.)"""
    out: dict[str, bool] = {}
    for series, values in SEEN.items():
        name = family(series)
        if name is not None:
            out[name] = out.get(name, False) or any(v != 0 for v in values)
    return out
