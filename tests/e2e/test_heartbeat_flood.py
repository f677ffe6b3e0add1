"""A forged-heartbeat flood at the standby's heartbeat port while a numbered feed runs.

A real loopback pair (the fast timings of test_pair_loopback: a 0.6 s takeover bound)
gets 1,000 numbered events/s on both feeds; a Python flooder (tests/e2e/hbflooder.py, a
tight non-blocking ``sendto`` loop, ~400k datagrams/s on one core here) sends forged
heartbeats at the standby's heartbeat port for 10 s from another port of 127.0.0.1.
The standby must not take over, no event may be lost, and the flood must be counted
under ``reason="source"``. The standby's /metrics is polled throughout: the age of the
newest real heartbeat it shows must stay below the bound.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from probepair.pair import link as hbport
from tests.e2e.feeder import Feeder
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    Timings,
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.sinkcheck import count, wait_delivered

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
RATE = 1000  # events per second
FLOOD_SECONDS = 10.0
POLL = 0.05  # seconds between two scrapes of the standby during the flood
SOURCE = 'probepair_heartbeats_rejected_total{reason="source"}'
MAC = 'probepair_heartbeats_rejected_total{reason="mac"}'
UNVERIFIED = 'probepair_heartbeats_rejected_total{reason="unverified"}'
RECEIVED = "probepair_heartbeats_received_total"
AGE = "probepair_peer_heartbeat_age_seconds"


@dataclass
class FloodResult:
    sent: int  # forged datagrams the flooders sent
    seconds: float
    source: float  # counted by the standby under reason="source"
    mac: float  # counted under reason="mac" (what reached the HMAC)
    unverified: float  # counted under reason="unverified" (past the new-boot HMAC budget)
    beats: float  # real heartbeats the standby counted during the flood
    expected: float  # FLOOD_SECONDS / BeatInterval
    max_age: float  # the largest heartbeat age seen in the polls
    failovers: float
    lost: int
    events: int

    def __str__(self) -> str:
        return (f"flood {self.sent:,} datagrams in {self.seconds:.1f} s "
                f"({self.sent / self.seconds:,.0f}/s); standby counted source={self.source:,.0f} "
                f"mac={self.mac:,.0f} unverified={self.unverified:,.0f}; "
                f"real heartbeats {self.beats:.0f} of {self.expected:.0f} "
                f"expected, max heartbeat age {self.max_age:.3f} s (bound {TIMINGS.bound} s); "
                f"failovers {self.failovers:.0f}; events lost {self.lost} of {self.events}")


async def flood(tmp_path: Path, *, seconds: float = FLOOD_SECONDS, flooders: int = 1,
                spoof: bool = False) -> FloodResult:
    """Run a pair, flood the standby, and count (see the module docstring)."""
    m, s = loopback_pair(tmp_path)
    feeder = Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=RATE)
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, TIMINGS), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, TIMINGS), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        before = await scrape(slave)
        cmd = [sys.executable, "-m", "tests.e2e.hbflooder", s.host, str(s.heartbeat_port),
               str(seconds)]
        if spoof:
            cmd.append(str(m.heartbeat_port))
        procs = [await nursery.start(lambda task_status, c=cmd: trio.run_process(  # noqa: ASYNC105 (polls a socket or process, nothing to wait on)
            c, check=True, stdout=subprocess.PIPE, task_status=task_status))
            for _ in range(flooders)]
        max_age = 0.0
        with trio.fail_after(seconds + 30):
            while any(p.returncode is None for p in procs):
                max_age = max(max_age, (await scrape(slave)).get(AGE, 0.0))
                await trio.sleep(POLL)
        sent = took = 0.0
        for p in procs:
            assert p.stdout is not None
            words = (await p.stdout.receive_some(200)).decode().split()
            sent += int(words[1])
            took = max(took, float(words[2]))
        await trio.sleep(0.5)  # the counts of what is still queued
        after = await scrape(slave)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], 10)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    return FloodResult(
        sent=int(sent), seconds=took,
        source=after.get(SOURCE, 0) - before.get(SOURCE, 0),
        mac=after.get(MAC, 0) - before.get(MAC, 0),
        unverified=after.get(UNVERIFIED, 0) - before.get(UNVERIFIED, 0),
        beats=after[RECEIVED] - before[RECEIVED], expected=took / TIMINGS.beat_interval,
        max_age=max_age, failovers=after.get("probepair_failovers_total", 0),
        lost=len(result.lost), events=len(feeder.keys()),
    )


async def test_flood_from_another_source_causes_no_takeover_and_no_loss(
        tmp_path: Path) -> None:
    result = await flood(tmp_path)
    print(f"\nforged-heartbeat flood at the standby: {result}")
    assert result.failovers == 0
    assert result.lost == 0
    # Read and counted up to the shared reader's cap; the kernel drops the rest of that
    # queue (no heartbeat is in it).
    cap = result.seconds * hbport.BATCH / hbport.SHARED_PAUSE
    assert min(result.sent, 0.25 * cap) <= result.source <= result.sent
    assert result.mac == 0  # not one of them reached the HMAC
    assert result.max_age < TIMINGS.bound
    assert result.beats >= 0.8 * result.expected
