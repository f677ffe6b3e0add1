"""Every metric the README documents is seen to move in a running probe.

A metric that no test ever sees change may be exported and dead: declared, never
incremented (or set) by the code path it describes. Every e2e scrape is recorded
(``tests/e2e/seen.py``); this test runs after all the others (``tests/conftest.py``)
and reads the README's metrics table against what they saw: each family must have been
seen nonzero in some series (a counter that rose, a gauge that was set), in real
``probepair run`` processes. It needs the whole e2e suite in the same
session: run alone or with a selection it skips, except under ``CI=true``, where CI runs
everything and a skip would hide a dead metric.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e import seen

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
# Too brief for any scrape: both probes active *and* hearing each other is resolved by
# the verdict within one round trip (a partition hears nothing, so it shows only the
# counter). Its transitions are asserted in tests/test_observer_metrics.py.
BRIEF = {"probepair_split_brain"}


def readme_metrics() -> list[str]:
    """The metric names in the README's metrics table (labels stripped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `probepair_"):
            continue
        first = line.split(" | ", 1)[0]
        for name in re.findall(r"`(probepair_[a-z0-9_]+)", first):
            if name not in names:
                names.append(name)
    return names


def whole_e2e_suite_ran(session: pytest.Session) -> bool:
    ran = {Path(str(item.fspath)).name for item in session.items}
    on_disk = {p.name for p in E2E.glob("test_*.py")}
    return on_disk <= ran and not session.config.stash.get(seen.DESELECTED, False)


def test_the_readme_table_parses() -> None:
    names = readme_metrics()
    assert "probepair_heartbeats_sent_total" in names and "probepair_role" in names
    assert len(names) > 40


def test_every_readme_metric_moves_in_a_running_probe(request: pytest.FixtureRequest) -> None:
    if not whole_e2e_suite_ran(request.session):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the whole e2e suite; this one needs it in the same session")
        pytest.skip("needs the whole e2e suite in this session (it reads what it scraped)")
    dead = [n for n in readme_metrics() if n not in BRIEF and n not in seen.NONZERO]
    never = [n for n in dead if n not in seen.EXPORTED]
    assert not dead, (
        f"{len(dead)} README metrics never moved in any e2e scrape: {', '.join(dead)}"
        + (f" (never exported at all: {', '.join(never)})" if never else "")
    )
