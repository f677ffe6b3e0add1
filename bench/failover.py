"""Takeover time, loss and duplicates over N kill -9 / restart cycles of a loopback pair.

A master and a slave (real ``probepair run`` processes, own working directories) get
the same datagrams at a steady rate. Each cycle waits a random fraction of a beat
interval (so kills land at every phase of the heartbeat), kills the master with
SIGKILL, polls the slave's /metrics every 10 ms until ``probepair_active 1``, lets the
slave forward for a while, restarts the master and waits for the handshake failback
(master active, slave standby). At the end it counts, over the events sent in each
cycle, the keys missing from both sink files (lost) and the extra copies (duplicates).
Progress goes to stderr, with the probes' logs; the results to stdout.

Goal (issue 3): takeover within [bound - BeatInterval, bound + 50 ms], where bound =
BeatInterval + BeatThreshold + HeartbeatTimeout; 0 lost; duplicates <= 100 ms of
traffic.

    .venv/bin/python bench/failover.py [--cycles 5] [--timings both|default|fast]
                                      [--rate 1000] [--seed 1]

``default`` is 2/1/1 s (bound 4 s), ``fast`` is 0.1/0.1/0.1 s (bound 0.3 s). Exits 1
when a goal is missed.

``--faults 1000,20000`` runs the partial-failure scenarios of ``tests/e2e/faults.py``
instead (a stall below the bound that overflows the master's socket, a 12 s stall, kill -9
and restart, a replay of captured datagrams, the master's sink dying) at each rate and
prints one row each: events sent, lost, duplicates (all, and among the events sent after
the fault ended), gap fills, and the time the role change took. Goal (issue 8): 0 lost,
0 duplicates after the fault; exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.feeder import Feeder
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    kill9,
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.sinkcheck import read_keys, wait_delivered

TIMINGS = {
    "default": Timings(beat_interval=2.0, beat_threshold=1.0, heartbeat_timeout=1.0),
    "fast": Timings(beat_interval=0.1, beat_threshold=0.1, heartbeat_timeout=0.1),
}
POLL = 0.01  # seconds between two /metrics reads while waiting for the takeover
UPPER_SLACK = 0.05  # seconds: the goal's "bound + 50 ms"
DUPLICATE_GOAL = 0.1  # seconds of traffic
ACTIVE_FOR = 0.5  # seconds the slave forwards alone before the master restarts
AFTER_FAILBACK = 0.5  # seconds of traffic through the restored master before counting
START_TIMEOUT = 20.0  # seconds
DELIVERY_TIMEOUT = 20.0  # seconds


@dataclass
class Cycle:
    takeover: float
    failback: float
    # Feeder sequence numbers: the cycle's events are [first, end); those from restart
    # on were sent around the failback. Cycles are contiguous.
    first: int
    restart: int
    end: int


async def wait_takeover(slave: ProbeProcess, killed_at: float, timeout: float) -> float:
    """Seconds from ``killed_at`` until the slave's /metrics shows it active."""
    with trio.fail_after(timeout):
        while (await scrape(slave)).get(ACTIVE) != 1:
            await trio.sleep(POLL)
    return trio.current_time() - killed_at


async def start_side(nursery: trio.Nursery, side: PairSide, peer: PairSide,
                     timings: Timings) -> ProbeProcess:
    return await start_probe(nursery, side.args(peer, timings), cwd=side.cwd)


async def run_cycles(timings: Timings, cycles: int, rate: float, rng: random.Random,
                     tmp: Path) -> tuple[list[Cycle], Feeder, list[Path]]:
    """Run the pair through the cycles; the sinks are read only at the end.

    (Reading them between cycles would stall this process's event loop, bunch the
    feeder's datagrams into bursts and so inflate the duplicates it measures.)
    """
    bound = timings.bound
    m, s = loopback_pair(tmp)
    sinks = [m.sink, s.sink]
    feeder = Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=rate)
    results: list[Cycle] = []
    async with trio.open_nursery() as nursery:
        master = await start_side(nursery, m, s, timings)
        slave = await start_side(nursery, s, m, timings)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(max(1.0, 2 * timings.beat_interval))
        first = feeder.sent
        for n in range(1, cycles + 1):
            await trio.sleep(rng.uniform(0, timings.beat_interval))  # kill at any phase
            killed_at = trio.current_time()
            await kill9(master)
            takeover = await wait_takeover(slave, killed_at, bound + 10)
            await feeder.wait_traffic(ACTIVE_FOR)
            restarted_at = trio.current_time()
            restart = feeder.sent
            master = await start_side(nursery, m, s, timings)
            await wait_metric(master, ACTIVE, 1, 5 * bound + 10, poll=POLL)
            failback = trio.current_time() - restarted_at
            await wait_metric(slave, STANDBY, 1, 10)
            # The cycle ends between the failback and the next kill, far enough from
            # both that each one's duplicates fall in its own cycle (a kill duplicates
            # what was sent in the last ack interval before it).
            await feeder.wait_traffic(AFTER_FAILBACK / 2)
            results.append(Cycle(takeover, failback, first, restart, feeder.sent))
            first = feeder.sent
            await feeder.wait_traffic(AFTER_FAILBACK / 2)
            print(f"  cycle {n}: takeover {takeover:.3f} s, failback {failback:.3f} s",
                  file=sys.stderr, flush=True)
        feeder.stop()
        await wait_delivered(feeder.keys(), sinks, DELIVERY_TIMEOUT)
        await slave.stop()
        await master.stop()
    return results, feeder, sinks


async def run_timings(name: str, timings: Timings, cycles: int, rate: float,
                      rng: random.Random) -> bool:
    bound = timings.bound
    low, high = bound - timings.beat_interval, bound + UPPER_SLACK
    max_dups = int(rate * DUPLICATE_GOAL)
    label = f"{timings.beat_interval:g}/{timings.beat_threshold:g}/{timings.heartbeat_timeout:g}"
    print(f"timings {name} {label} s (bound {bound:.3f} s; goal: takeover in "
          f"[{low:.3f}, {high:.3f}] s, 0 lost, duplicates <= {max_dups}); "
          f"rate {rate:g}/s, AckInterval {timings.ack_interval:g} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="pp-bench-failover-") as tmp:
        results, feeder, sinks = await run_cycles(timings, cycles, rate, rng, Path(tmp))
        written: Counter[str] = Counter()
        for path in sinks:
            written.update(read_keys(path))
    met = True
    lost_total = dups_total = worst = 0
    for n, c in enumerate(results, 1):
        keys = feeder.keys(c.first, c.end)
        lost = sum(1 for k in keys if not written[k])
        dups = sum(written[k] - 1 for k in keys if written[k] > 1)
        late = sum(written[k] - 1 for k in feeder.keys(c.restart, c.end) if written[k] > 1)
        ok = low <= c.takeover <= high and lost == 0 and dups <= max_dups
        met = met and ok
        lost_total += lost
        dups_total += dups
        worst = max(worst, dups)
        print(f"  cycle {n}: takeover {c.takeover:.3f} s (bound {bound:.3f} s, "
              f"{c.takeover - bound:+.3f} s) | lost {lost} of {len(keys)} | duplicates {dups} "
              f"({dups / rate * 1000:.0f} ms of traffic; {late} at the failback) | failback "
              f"{c.failback:.3f} s after restart | {'ok' if ok else 'MISSED GOAL'}")
    takeovers = [c.takeover for c in results]
    within = sum(low <= t <= high for t in takeovers)
    print(f"summary {name} {label}: takeover min/median/max {min(takeovers):.3f}/"
          f"{statistics.median(takeovers):.3f}/{max(takeovers):.3f} s against bound "
          f"{bound:.3f} s, {within}/{len(results)} within goal; lost {lost_total}; "
          f"duplicates max {worst} ({worst / rate * 1000:.0f} ms), total {dups_total}; "
          f"goal {'met' if met else 'MISSED'}", flush=True)
    return met


async def run_faults(rates: list[float], only: str = "") -> bool:
    from tests.e2e import faults

    scenarios = [
        ("stall below the bound", faults.stall_below_bound),
        ("stall past the bound", faults.stall_past_bound),
        ("kill -9 and restart", faults.kill9_failback),
        ("replay", faults.replay),
        ("sink failover", faults.sink_failover),
        ("master's sink down 8 s", faults.master_sink_outage),
        ("both sinks down 15 s", faults.both_sinks_down),
    ]
    # A sink-only fault has no partition's overlap: it may duplicate nothing at all.
    sink_only = {faults.master_sink_outage, faults.both_sinks_down}
    if only:
        scenarios = [(label, fn) for label, fn in scenarios if only in label]
    print(faults.HEADER, flush=True)
    met = True
    for rate in rates:
        for label, scenario in scenarios:
            print(f"  running {label} at {rate:g}/s", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="pp-bench-faults-") as tmp:
                result = await scenario(Path(tmp), rate)
            ok = not result.lost and result.duplicates_after == 0 and not result.unexpected
            if scenario in sink_only:
                ok = ok and result.duplicates == 0
            met = met and ok
            notes = ", ".join(f"{k} {v:.3g}" for k, v in result.notes.items())
            print(f"{result.row()}  {'ok' if ok else 'MISSED GOAL'}  {notes}", flush=True)
    return met


async def main(args: argparse.Namespace) -> int:
    if args.faults:
        rates = [float(r) for r in args.faults.split(",")]
        return 0 if await run_faults(rates, args.only) else 1
    rng = random.Random(args.seed)
    names = ["default", "fast"] if args.timings == "both" else [args.timings]
    met = [await run_timings(name, TIMINGS[name], args.cycles, args.rate, rng)
           for name in names]
    return 0 if all(met) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cycles", type=int, default=5, help="kill/restart cycles (5)")
    parser.add_argument("--timings", choices=["both", "default", "fast"], default="both",
                        help="2/1/1 s, 0.1/0.1/0.1 s, or both (default)")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (1000)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill phases (1)")
    parser.add_argument("--faults", default="", metavar="RATES",
                        help="run the fault scenarios at these rates (e.g. 1000,20000)")
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="with --faults: only the scenarios whose name contains TEXT")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_args()))
