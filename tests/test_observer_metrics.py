"""The pair observer turns the machine's split-brain reports into the gauge and counter.

The gauge is 1 only between detection and verdict, which takes one round trip: no e2e
scrape catches it (``tests/e2e/test_metrics_seen.py`` names it), so it is held here.
"""

from __future__ import annotations

import trio

from probepair.failover import FailoverConfig, FailoverMachine, Mode
from probepair.metrics import Metrics
from probepair.failover.wire import make_boot_id
from probepair.pair.observer import PairObserver


def test_a_split_brain_sets_the_gauge_until_resolved_and_counts_once() -> None:
    metrics = Metrics()
    send, _recv = trio.open_memory_channel[list[tuple[bytes, bytes]]](1)
    config = FailoverConfig(mode=Mode.MASTER, node_id=1, boot_id=make_boot_id(1, b"test"))
    machine = FailoverMachine(config, now=0.0)
    observer = PairObserver(metrics, machine, send)
    assert metrics.count("probepair_split_brain") == 0
    observer.on_split_brain(True, "peer 2 is also active")
    assert metrics.count("probepair_split_brain") == 1
    assert metrics.count("probepair_split_brains_total") == 1
    observer.on_split_brain(False, "resolved: the peer stepped down")
    assert metrics.count("probepair_split_brain") == 0
    assert metrics.count("probepair_split_brains_total") == 1
