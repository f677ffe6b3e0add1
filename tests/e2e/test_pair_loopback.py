"""A real master/slave pair on loopback: kill -9, SIGSTOP/SIGCONT and failback under load.

Each test starts two ``probepair run`` processes (own working directory each, so their
spools never meet), feeds both the same datagrams at a steady rate, disturbs the master,
and then counts the union of the two sink files: no sent event may be missing;
duplicates are reported (the file sink is not key-aware, so a takeover may rewrite what
the dead master delivered in its last ack interval).

Roles and activity are read from each probe's /metrics, polled; every wait is bounded.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
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
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.sinkcheck import count, duplicated, wait_delivered

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
RATE = 1000  # events per second
START_TIMEOUT = 10.0  # seconds for a pair to come up (master active, slave standby)
DELIVERY_TIMEOUT = 10.0  # seconds for the last events to reach a sink
# Takeover is due at the bound; a loaded CI machine may wake the slave late. The bench
# (bench/failover.py) holds the tight goal of bound + 50 ms.
# The last heartbeat before a kill left at most one BeatInterval (+ the master's
# scheduling jitter) earlier, so a takeover sooner than bound - BeatInterval is false.
BEAT_JITTER = 0.02  # seconds
TAKEOVER_SLACK = 0.5  # seconds
# Duplicates after a kill: what the master delivered but had not acked yet, i.e. up to
# one ack interval plus the sink's batch and the ack datagram's trip (DESIGN.md point 3).
MAX_KILL_DUPLICATES = int(RATE * 3 * TIMINGS.ack_interval)


async def start_side(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
    return await start_probe(nursery, side.args(peer, TIMINGS), cwd=side.cwd)


async def start_pair(nursery: trio.Nursery, m: PairSide,
                     s: PairSide) -> tuple[ProbeProcess, ProbeProcess]:
    """Both probes running, the master active and the slave in standby."""
    master = await start_side(nursery, m, s)
    slave = await start_side(nursery, s, m)
    await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
    await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
    return master, slave


def report(what: str, text: str) -> None:
    print(f"\n{what}: {text}")  # shown with -s / on failure: the numbers the issue asks for


def feeder_for(m: PairSide, s: PairSide) -> Feeder:
    return Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=RATE)


async def test_kill9_master_under_load_slave_takes_over_without_loss(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        killed_at = trio.current_time()
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
        took = trio.current_time() - killed_at
        assert (await scrape(slave))["probepair_failovers_total"] == 1
        await feeder.wait_traffic(0.5)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    report("kill -9", f"takeover {took:.3f} s (bound {TIMINGS.bound:.1f} s); {result}")
    assert TIMINGS.bound - TIMINGS.beat_interval - BEAT_JITTER <= took
    assert took <= TIMINGS.bound + TAKEOVER_SLACK
    assert feeder.seqs(result.lost) == []
    assert result.unexpected == 0
    assert result.per_file[1] > 0  # the slave did write: it took over
    assert result.duplicates <= MAX_KILL_DUPLICATES


async def test_sigstop_master_slave_takes_over_and_sigcont_converges(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        master.signal(signal.SIGSTOP)
        stopped_at = trio.current_time()
        await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
        took = trio.current_time() - stopped_at
        await feeder.wait_traffic(0.5)
        master.signal(signal.SIGCONT)
        continued_at = trio.current_time()
        # Converge: the configured master wins when both are active (failover.py).
        with trio.fail_after(5 * TIMINGS.bound + 5):
            while await active_flags(master, slave) != [1, 0]:
                await trio.sleep(0.02)
        converged = trio.current_time() - continued_at
        # ... and stays so: watch both for a few beat intervals under load.
        watch_until = trio.current_time() + 3 * TIMINGS.beat_interval
        while trio.current_time() < watch_until:
            assert await active_flags(master, slave) == [1, 0]
            await trio.sleep(0.02)
        assert (await scrape(slave))[STANDBY] == 1
        split = [(await scrape(p)).get("probepair_split_brains_total") for p in (master, slave)]
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    report("SIGSTOP/SIGCONT", f"takeover {took:.3f} s, converged {converged:.3f} s after "
           f"SIGCONT, split brains counted (master, slave) {split}; {result}")
    assert took <= TIMINGS.bound + TAKEOVER_SLACK
    assert feeder.seqs(result.lost) == []
    assert result.unexpected == 0


async def test_restarted_master_takes_back_over_by_handshake(tmp_path: Path) -> None:
    # Known product gap (reported with issue 3): a restarted master beats before its
    # feed is bound, and the active slave stops forwarding at that first heartbeat;
    # events in between reach only the slave's standby buffer. Under CPU load this
    # shows as a few lost sequence numbers just after the slave's last forwarded one.
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
        await feeder.wait_traffic(0.5)
        restart_from = feeder.sent  # every event from here on is sent around the failback
        restarted_at = trio.current_time()
        master = await start_side(nursery, m, s)
        await wait_metric(master, ACTIVE, 1, 5 * TIMINGS.bound + 5)
        took = trio.current_time() - restarted_at
        await wait_metric(slave, STANDBY, 1, 5)
        assert await active_flags(master, slave) == [1, 0]
        await feeder.wait_traffic(0.5)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    across = duplicated([m.sink, s.sink], among=feeder.keys(restart_from))
    report("failback", f"master active {took:.3f} s after its restart; duplicates across "
           f"the failback {sum(across.values()) - len(across)}; {result}")
    assert feeder.seqs(result.lost) == []
    assert result.unexpected == 0
    # The handshake aims at no overlap; its drain wait is bounded (AckInterval +
    # HeartbeatTimeout), so on a loaded machine it may hand over with a few deliveries
    # un-acked: duplicates, never loss. They are reported above and bounded here.
    assert sum(across.values()) - len(across) <= MAX_KILL_DUPLICATES
