"""The processing stage under costly events: budget per event, slices per batch.

Spec (issue 19 items 2 and 3): an event over ``RulesTimeBudget`` is delivered marked,
counted in ``probepair_rules_over_budget_total`` and logged once per interval with its
location; a batch is worked in slices so that other tasks (heartbeats, acks, timers)
run between them. Clocks are injected: a tick counter, and trio's MockClock.
"""

from __future__ import annotations

import logging
import math

import orjson
import pytest
import trio
import trio.testing

from probepair.config import props
from probepair.events import Event, key_of
from probepair.metrics import Metrics
from probepair.pipeline.processor import RULES_SLICE, AlwaysForward, Processor, rules_budget
from probepair.rules import OVER_BUDGET_FIELD, compile_rules

OVER = "probepair_rules_over_budget_total"
SPIN = 'array l;\n$n = split($Line, l, " ")\nforeach (i in l) { @Seen = l[i] }\n'


class Ticks:
    """One unit of time per read: each event costs exactly its clock reads."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def load(**values: object) -> props.Props:
    return props.load([("test", {"FeedPort": 0, "FeedFormat": "line", **values})])


def event(text: str) -> Event:
    raw = text.encode()
    return Event(raw, key_of(raw), 1.0)


def test_default_budget_and_the_pair_clamp(caplog: pytest.LogCaptureFixture) -> None:
    assert rules_budget(load()) == pytest.approx(0.020)
    assert rules_budget(load(RulesTimeBudget=0)) == math.inf
    pair = {"Mode": "master", "PeerHost": "127.0.0.1", "PeerPort": 9999}
    assert rules_budget(load(**pair, BeatInterval=2.0)) == pytest.approx(0.020)
    with caplog.at_level(logging.WARNING):
        assert rules_budget(load(**pair, BeatInterval=0.08)) == pytest.approx(0.010)
    assert "more than BeatInterval / 8" in caplog.text
    assert rules_budget(load(**pair, RulesTimeBudget=0, BeatInterval=0.8)) == pytest.approx(0.1)


async def test_over_budget_event_is_delivered_marked_counted_and_logged_once(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    p = load(RulesTimeBudget=1000)  # 1 s of budget = 1,000 ticks of 1 ms
    proc = Processor(p, compile_rules(SPIN, source="spin.rules"), AlwaysForward(), metrics,
                     lambda: 1.0, clock=Ticks(0.001))
    long_line, short_line = " ".join(["w"] * 5000), "a b c"
    with caplog.at_level(logging.WARNING):
        out = proc.process([event(long_line), event(short_line), event(long_line)])
    alerts = [orjson.loads(payload) for _, payload in out]
    assert [OVER_BUDGET_FIELD in a for a in alerts] == [True, False, True]
    assert alerts[0][OVER_BUDGET_FIELD] == "spin.rules:3:1"
    assert alerts[0]["Seen"] == "w" and alerts[1]["Seen"] == "c"
    assert metrics.count(OVER) == 2
    assert metrics.count("probepair_events_received_total") == 3
    logged = [r for r in caplog.records if "RulesTimeBudget" in r.getMessage()]
    assert len(logged) == 1 and "spin.rules:3:1" in logged[0].getMessage()


def test_a_batch_is_processed_in_slices_and_none_is_lost(metrics: Metrics) -> None:
    ticks = Ticks(RULES_SLICE / 16)  # an event costs 3 reads: its start, 2 loop checks
    proc = Processor(load(), compile_rules(SPIN), AlwaysForward(), metrics, lambda: 1.0,
                     clock=ticks)
    batch = [event(f"e{i} x") for i in range(100)]
    delivered: list[bytes] = []
    slices = 0
    rest = batch
    while rest:
        out, rest = proc.process_some(rest, ticks() + RULES_SLICE)
        delivered += [key for key, _ in out]
        slices += 1
    assert delivered == [ev.key for ev in batch]
    assert 15 <= slices <= 25  # ~5 events a slice, and every event exactly once
    assert metrics.count("probepair_events_received_total") == 100


async def test_run_lets_other_tasks_in_between_slices(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    """A task that wants to run (a heartbeat) runs between the slices of one batch."""
    ticks = Ticks(RULES_SLICE / 2)  # an event of "e<i>" costs a slice: one a slice
    proc = Processor(load(), compile_rules(SPIN), AlwaysForward(), metrics, lambda: 1.0,
                     clock=ticks)
    send_in, recv_in = trio.open_memory_channel[list[Event]](1)
    send_out, recv_out = trio.open_memory_channel[list[tuple[bytes, bytes]]](100)
    seen_by_beats: list[int] = []  # events processed when the "heartbeat" task ran
    received = "probepair_events_received_total"

    async def beat() -> None:
        for _ in range(4):
            await trio.lowlevel.checkpoint()
            seen_by_beats.append(int(metrics.count(received)))

    await send_in.send([event(f"e{i}") for i in range(6)])
    await send_in.aclose()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        async with send_out:
            await proc.run(recv_in, send_out)
    alerts = [item async for out in recv_out for item in out]
    assert len(alerts) == 6
    assert any(0 < seen < 6 for seen in seen_by_beats), seen_by_beats
