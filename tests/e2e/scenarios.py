"""The pair scenarios and limits the loopback and the namespace tests share.

``test_pair_loopback.py`` and ``test_pair_netns.py`` run the same pair (two ``probepair
run`` processes, the same timings, rate and limits) on two kinds of network; the kill
-9 + failback scenario was written out in each. It is here once, parametrised by how a
side is started and by what the namespace test checks besides (the takeover's own
count, before the failback muddies it). Each test keeps its own assertions and report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from tests.e2e.feeder import Feeder
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    active_flags,
    kill9,
    reported_silence,
    wait_metric,
)
from tests.e2e.sinkcheck import SinkCount, assert_takeover_tail, count, duplicated, wait_delivered

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
RATE = 1000  # events per second
START_TIMEOUT = 10.0  # seconds for a pair to come up (master active, slave standby)
DELIVERY_TIMEOUT = 10.0  # seconds for the last events to reach a sink
# Takeover is due at the bound. The slave logs the silence it measured on its own clock
# ("master silent for 0.6 s"); a loaded machine may wake it late, never early.
TAKEOVER_SLACK = 0.5  # seconds of scheduling delay the probe's own timer may suffer
# A sanity cap on takeover duplicates (what the master delivered but could not ack any
# more); their shape is asserted exactly by assert_takeover_tail, their span in the
# probe's own time by tests/test_pair_sim.py.
MAX_KILL_DUPLICATES = int(RATE * 3 * TIMINGS.ack_interval)

# How a test starts one side of its pair (on loopback, or in a namespace).
StartSide = Callable[[trio.Nursery, PairSide, PairSide], Awaitable[ProbeProcess]]


def report(what: str, text: str) -> None:
    print(f"\n{what}: {text}")  # shown with -s / on failure: the numbers the issue asks for


def feeder_for(m: PairSide, s: PairSide) -> Feeder:
    """Both probes fed the same datagrams at RATE."""
    return Feeder([(m.feed_host or m.host, m.feed_port), (s.feed_host or s.host, s.feed_port)],
                  rate=RATE)


async def start_pair(nursery: trio.Nursery, start: StartSide, m: PairSide,
                     s: PairSide) -> tuple[ProbeProcess, ProbeProcess]:
    """Both probes running, the master active and the slave in standby."""
    master = await start(nursery, m, s)
    slave = await start(nursery, s, m)
    await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
    await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
    return master, slave


@dataclass
class TakeoverCount:
    """What the namespace test checks at the takeover (``check_takeover``)."""

    took: float  # seconds from the kill until the slave was seen active (test's clock)
    silence: float  # the silence the slave measured (its own clock)
    at_takeover: SinkCount  # everything sent until then, delivered
    tail: int  # the master's unacked tail the slave wrote again (assert_takeover_tail)


@dataclass
class Failback:
    """What one kill -9 + restart + handshake failback did."""

    took: float  # seconds from the master's restart until it was active again
    result: SinkCount  # every event sent, over both sink files
    lost_seqs: list[int]  # the feeder's sequence numbers of result.lost
    across: dict[str, int]  # keys written twice among those sent from the restart on
    takeover: TakeoverCount | None


@dataclass
class Cycles:
    """What ``kill_cycles`` measured, and the master it left running."""

    master: ProbeProcess
    takeovers: list[float]  # seconds from each kill until the slave was seen active
    failbacks: list[float]  # seconds from each restart until the master was active again


async def kill_cycles(restart: Callable[[], Awaitable[ProbeProcess]], master: ProbeProcess,
                      slave: ProbeProcess, feeder: Feeder, cycles: int,
                      timings: Timings = TIMINGS) -> Cycles:
    """``cycles`` times under load: kill -9 the master, wait for the slave to take
    over, restart the master (``restart``) and wait for its failback (bounds from the
    pair's ``timings``)."""
    done = Cycles(master, [], [])
    for _ in range(cycles):
        killed_at = trio.current_time()
        await kill9(done.master)
        await wait_metric(slave, ACTIVE, 1, timings.bound + 5)
        done.takeovers.append(trio.current_time() - killed_at)
        await feeder.wait_traffic(0.5)
        restarted_at = trio.current_time()
        done.master = await restart()
        await wait_metric(done.master, ACTIVE, 1, 5 * timings.bound + 5)
        await wait_metric(slave, STANDBY, 1, 5)
        done.failbacks.append(trio.current_time() - restarted_at)
        await feeder.wait_traffic(0.5)
    return done


async def kill_and_fail_back(start: StartSide, m: PairSide, s: PairSide, *,
                             check_takeover: bool = False) -> Failback:
    """Kill the master under load, let the slave take over, restart the master and let
    it take back over by handshake; stop both and count.

    ``check_takeover``: before the restart, wait for all sent so far to be delivered
    and assert that none of it is lost (the namespace test's extra check).
    """
    feeder = feeder_for(m, s)
    takeover: TakeoverCount | None = None
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, start, m, s)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        killed_at = trio.current_time()
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
        if check_takeover:
            took = trio.current_time() - killed_at
            silence = reported_silence(s.log)
            await feeder.wait_traffic(0.3)
            # No loss across the takeover, before the failback muddies the count.
            restart_from = feeder.sent
            at_takeover = await wait_delivered(feeder.keys(), [m.sink, s.sink],
                                               DELIVERY_TIMEOUT)
            assert feeder.seqs(at_takeover.lost) == []
            tail = assert_takeover_tail(m.sink, s.sink, feeder.keys())
            takeover = TakeoverCount(took, silence, at_takeover, tail)
        else:
            await feeder.wait_traffic(0.5)
            restart_from = feeder.sent  # every event from here on is sent around the failback
        restarted_at = trio.current_time()
        master = await start(nursery, m, s)
        await wait_metric(master, ACTIVE, 1, 5 * TIMINGS.bound + 5)
        failback = trio.current_time() - restarted_at
        await wait_metric(slave, STANDBY, 1, 5)
        assert await active_flags(master, slave) == [1, 0]
        await feeder.wait_traffic(0.5)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    across = duplicated([m.sink, s.sink], among=feeder.keys(restart_from))
    return Failback(failback, result, feeder.seqs(result.lost), across, takeover)
