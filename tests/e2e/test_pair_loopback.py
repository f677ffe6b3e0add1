"""A real master/slave pair on loopback: kill -9, SIGSTOP/SIGCONT and failback under load.

Each test starts two ``probepair run`` processes (own working directory each, so their
spools never meet), feeds both the same datagrams at a steady rate, disturbs the master,
and then counts the union of the two sink files: no sent event may be missing;
duplicates are reported (the file sink is not key-aware, so a takeover may rewrite what
the dead master delivered in its last ack interval).

Roles and activity are read from each probe's /metrics, polled; every wait is bounded.
Timing is judged by the probe's own clock (the silence it reports in its log when it
takes over), never by how long the test waited: a loaded machine delays the test too.
The exact "one ack period" of takeover duplicates is held by the MockClock simulation
(tests/test_pair_sim.py); here the duplicates must be what that claim describes: the
tail of the master's file that it could no longer ack.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from tests.e2e import scenarios
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    active_flags,
    kill9,
    loopback_pair,
    reported_silence,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.scenarios import (
    DELIVERY_TIMEOUT,
    MAX_KILL_DUPLICATES,
    TAKEOVER_SLACK,
    TIMINGS,
    feeder_for,
    kill_and_fail_back,
    report,
)
from tests.e2e.sinkcheck import assert_takeover_tail, count, duplicated, wait_delivered

pytestmark = pytest.mark.e2e


async def start_side(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
    return await start_probe(nursery, side.args(peer, TIMINGS), cwd=side.cwd)


async def start_pair(nursery: trio.Nursery, m: PairSide,
                     s: PairSide) -> tuple[ProbeProcess, ProbeProcess]:
    """Both probes running, the master active and the slave in standby."""
    return await scenarios.start_pair(nursery, start_side, m, s)


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
        silence = reported_silence(s.log)
        assert (await scrape(slave))["probepair_failovers_total"] == 1
        await feeder.wait_traffic(0.5)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    report("kill -9", f"takeover seen {took:.3f} s after the kill, after {silence} s of "
           f"silence by the slave's clock (bound {TIMINGS.bound:.1f} s); {result}")
    # The slave's own clock: not before the bound (to its 0.1 s rounding), and late only
    # by scheduling.
    assert TIMINGS.bound - 0.05 <= silence <= TIMINGS.bound + TAKEOVER_SLACK
    assert feeder.seqs(result.lost) == []
    assert result.unexpected == 0
    assert result.per_file[1] > 0  # the slave did write: it took over
    assert assert_takeover_tail(m.sink, s.sink, feeder.keys()) == result.duplicates
    assert result.duplicates <= MAX_KILL_DUPLICATES


async def test_sigstop_master_slave_takes_over_and_sigcont_converges(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        master.signal(signal.SIGSTOP)
        await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
        silence = reported_silence(s.log)
        await feeder.wait_traffic(0.5)
        resumed_from = feeder.sent  # events from here on are sent after the takeover
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
        handovers = (await scrape(slave))['probepair_handovers_total{reason="failback"}']
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    result = count(feeder.keys(), [m.sink, s.sink])
    after = duplicated([m.sink, s.sink], among=feeder.keys(resumed_from))
    report("SIGSTOP/SIGCONT", f"takeover after {silence} s of silence (slave's clock), "
           f"converged {converged:.3f} s after SIGCONT, split brains counted (master, "
           f"slave) {split}; duplicates after the takeover {sum(after.values()) - len(after)}; "
           f"{result}")
    assert TIMINGS.bound - 0.05 <= silence <= TIMINGS.bound + TAKEOVER_SLACK
    assert feeder.seqs(result.lost) == []
    assert result.unexpected == 0
    # Frozen past the bound, the master comes back as a returning master and goes through
    # the handshake (README "Stalls"): no split brain, nothing delivered twice after it.
    assert split == [0, 0]
    assert handovers == 1
    assert after == {}
    assert result.duplicates <= MAX_KILL_DUPLICATES  # only the takeover's unacked tail


async def test_restarted_master_takes_back_over_by_handshake(tmp_path: Path) -> None:
    # README "Failback": handshake, no gap, no overlap. What the restarted master's feed
    # missed while it started is delivered by the slave (gap fill).
    m, s = loopback_pair(tmp_path)
    run = await kill_and_fail_back(start_side, m, s)
    report("failback", f"master active {run.took:.3f} s after its restart; duplicates across "
           f"the failback {sum(run.across.values()) - len(run.across)}; {run.result}")
    assert run.lost_seqs == []
    assert run.result.unexpected == 0
    assert run.across == {}  # the handshake failback duplicates nothing
