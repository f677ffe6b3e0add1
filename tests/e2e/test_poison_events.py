"""Poisonous events through a running pair: costly rules on hostile lines lose nothing.

Issue 19: one backtracking line and one 60 KB line froze both probes of a pair (6,005
of 9,002 numbered events lost), because both run the same rules on the same datagram.
Here a loopback pair (takeover bound 0.6 s) runs rules with every construct the issue
names (a nested quantifier, a far-scanning regreplace, nvp_add, a nested foreach)
under 1,000 numbered events/s, and both feeds get bursts of poison lines: the
backtracking line, 64 KiB runs that make each of those constructs as costly as it
gets. The pair must lose no numbered event, must not take over, must deliver the
poison lines marked ``@RulesOverBudget`` and count them, and the standby's view of the
master's heartbeats must stay fresh.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.feeder import Feeder
from tests.e2e.procs import ACTIVE, STANDBY, Timings, loopback_pair, scrape, start_probe, wait_metric
from tests.e2e.sinkcheck import count, wait_delivered

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
RATE = 1000
BURSTS = 12  # bursts of poison, one every BURST_GAP seconds
BURST_GAP = 0.5
AGE = "probepair_peer_heartbeat_age_seconds"
OVER = "probepair_rules_over_budget_total"
FAILOVERS = "probepair_failovers_total"

RULES = r"""
array words;
@Identifier = $Line
@Summary = substr($Line, 1, 80)
if (regmatch($Line, "^(\w+\s?)*$")) { @Words = "yes" }
@Tail = regreplace($Line, "a(.*b)?", "x")
@ExtendedAttr = nvp_add("", "line", $Line)
$n = split($Line, words, " ")
foreach (i in words) {
    foreach (j in words) {
        @Pair = words[j]
    }
}
"""

POISON = [
    b"a" * 26 + b"!",  # the backtracking line for the nested quantifier
    b"a" * 65_000,  # regreplace a(.*b)?: every search scans to the end
    b"a " * 32_500,  # 32,500 words: the nested foreach is a billion iterations
    b"k" * 65_000,  # nvp_add on 64 KiB with no "=" (was quadratic): now linear, in budget
]
OVER_KINDS = 2  # the two lines that make regreplace or the loops run past the budget


async def send_poison(targets: list[tuple[str, int]]) -> int:
    """BURSTS bursts of every poison line to every target; returns lines sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(BURSTS):
            for line in POISON:
                for target in targets:
                    sock.sendto(line, target)
                sent += 1
            await trio.sleep(BURST_GAP)
    return sent


def over_budget_lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines()
               if line and "RulesOverBudget" in json.loads(line))


async def test_poison_lines_through_costly_rules_lose_nothing_and_cause_no_takeover(
        tmp_path: Path) -> None:
    rules = tmp_path / "costly.rules"
    rules.write_text(RULES)
    extra = ["--rulesfile", str(rules)]
    m, s = loopback_pair(tmp_path)
    feeds = [(m.host, m.feed_port), (s.host, s.feed_port)]
    feeder = Feeder(feeds, rate=RATE)
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, TIMINGS, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, TIMINGS, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        before = {"master": await scrape(master), "slave": await scrape(slave)}
        max_age = 0.0
        done = trio.Event()

        async def poison() -> None:
            await send_poison(feeds)
            done.set()

        nursery.start_soon(poison)
        with trio.fail_after(BURSTS * BURST_GAP + 30):
            while not done.is_set():
                max_age = max(max_age, (await scrape(slave)).get(AGE, 0.0))
                await trio.sleep(0.05)
        await feeder.wait_traffic(1.0)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], 15)
        after = {"master": await scrape(master), "slave": await scrape(slave)}
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    marked = over_budget_lines(m.sink)
    print(f"\npoison through costly rules: {result}; over budget: master "
          f"{after['master'].get(OVER, 0):.0f}, slave {after['slave'].get(OVER, 0):.0f}; "
          f"marked alerts at the master's sink {marked}; max heartbeat age at the standby "
          f"{max_age:.3f} s (bound {TIMINGS.bound} s)")
    assert result.lost == []
    for name, side in after.items():  # no role changed while the poison went through
        assert side.get(FAILOVERS, 0) == before[name].get(FAILOVERS, 0)
    assert after["slave"].get(ACTIVE) == 0
    for side in after.values():
        assert side.get(OVER, 0) == OVER_KINDS * BURSTS
    assert marked == OVER_KINDS * BURSTS  # delivered, not lost to their cost
    assert max_age < TIMINGS.bound
