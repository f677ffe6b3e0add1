"""Pairs writing the shared sinks of a real deployment, through kill -9 and failback.

- PostgreSQL: the master and the slave in two network namespaces (two hosts), both
  writing one database over TCP (the server listens in the root namespace on the
  root end of each namespace's link). Three times the master is killed with SIGKILL, the
  slave takes over, the master is restarted and takes back over by the handshake.
  Every fed event must be in ``alerts_status`` exactly once: the shared, key-aware sink
  turns the pair's at-least-once delivery into exactly once.
- Alertmanager: a pair on loopback posting to one Alertmanager; the master is killed;
  every alert must be held, each once (Alertmanager merges resends by fingerprint).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio

from tests import servers
from tests.e2e import netns
from tests.e2e.feeder import Feeder
from tests.e2e.netns import Topology
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    kill9,
    loopback_pair,
    start_probe,
    wait_metric,
)
from tests.e2e.scenarios import kill_cycles

pytestmark = pytest.mark.e2e

HEARTBEAT_PORT = 7100  # fresh namespaces: fixed ports are free
FEED_PORT = 5514
METRICS_PORT = 9100
TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
RATE = 1000  # events per second
CYCLES = 3  # kill -9 of the master, takeover, restart, failback
START_TIMEOUT = 10.0  # seconds
DELIVERY_TIMEOUT = 20.0  # seconds for the last events to reach the sink

RULES = """
# One alert per fed line: its own Identifier, so each event is one row / one alert.
@Identifier = $Line
@Summary = $Line
@Node = "e2e"
@AlertGroup = "e2e"
@Severity = 3
@Type = 1
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    if not netns.available():
        if os.environ.get("CI") == "true":
            pytest.fail(netns.SKIP_REASON)
        pytest.skip(netns.SKIP_REASON)
    with netns.two_namespaces() as topology:
        yield topology


def report(what: str, text: str) -> None:
    print(f"\n{what}: {text}")  # shown with -s / on failure


def fed_keys_in_db(url: str, feeder: Feeder) -> tuple[int, int, int, set[str]]:
    """(rows, rows with Tally != 1, delivered keys, fed keys missing) for this run's tag."""
    like = f"pp-e2e {feeder.tag} %"
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT EventKey, Tally FROM alerts_status WHERE Identifier LIKE %s", (like,)
        ).fetchall()
        delivered = db.execute("SELECT count(*) FROM delivered_keys").fetchone()
    keys = {str(k) for k, _ in rows}
    return (len(rows), sum(1 for _, t in rows if t != 1), int(delivered[0]) if delivered else 0,
            feeder.keys() - keys)


async def wait_all_in_db(url: str, feeder: Feeder) -> tuple[int, int, int, set[str]]:
    with trio.fail_after(DELIVERY_TIMEOUT):
        while True:
            counts = await trio.to_thread.run_sync(fed_keys_in_db, url, feeder)
            if not counts[3]:
                return counts
            await trio.sleep(0.2)


async def test_pair_in_two_namespaces_writes_one_postgres_exactly_once(
    topo: Topology, tmp_path: Path
) -> None:
    listen = ("127.0.0.1", topo.root_addr("a"), topo.root_addr("b"))
    with servers.postgres(listen) as pg:
        url = pg.create_database("pair")
        pwfile = tmp_path / "pgpass"
        pwfile.write_text(servers.PG_PASSWORD + "\n")
        pwfile.chmod(0o600)
        rules = tmp_path / "e2e.rules"
        rules.write_text(RULES)
        sides: dict[str, PairSide] = {}
        for name, mode, ns in (("m", "master", "a"), ("s", "slave", "b")):
            (tmp_path / name).mkdir()
            sides[ns] = PairSide(name, mode, topo.heartbeat_addr(ns), HEARTBEAT_PORT,
                                 FEED_PORT, METRICS_PORT, tmp_path / name,
                                 feed_host=topo.feed_addr(ns))
        m, s = sides["a"], sides["b"]

        def args(side: PairSide, peer: PairSide, ns: str) -> list[str]:
            # Each host reaches the database over its own link, as two hosts would.
            db = pg.url("pair", host=topo.root_addr(ns), password=False)
            return side.args(peer, TIMINGS, extra=[
                "--sinktype", "postgres", "--sinkurl", db,
                "--sinkpasswordfile", str(pwfile), "--rulesfile", str(rules)])

        async def start(side: PairSide, peer: PairSide, ns: str) -> ProbeProcess:
            return await start_probe(nursery, args(side, peer, ns), cwd=side.cwd,
                                     netns=topo.ns(ns))

        feeder = Feeder([(m.feed_host, m.feed_port), (s.feed_host, s.feed_port)], rate=RATE)
        async with trio.open_nursery() as nursery:
            master = await start(m, s, "a")
            slave = await start(s, m, "b")
            await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
            await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
            nursery.start_soon(feeder.run)
            await feeder.wait_traffic(0.5)
            cycles = await kill_cycles(lambda: start(m, s, "a"), master, slave, feeder,
                                       CYCLES, TIMINGS)
            master, took, failback = cycles.master, cycles.takeovers, cycles.failbacks
            feeder.stop()
            rows, inflated, delivered, missing = await wait_all_in_db(url, feeder)
            assert await slave.stop() == 0
            assert await master.stop() == 0
        # After both stopped: nothing more arrives, so this is the final count.
        rows, inflated, delivered, missing = await trio.to_thread.run_sync(
            fed_keys_in_db, url, feeder)
    report("postgres pair, two namespaces",
           f"{feeder.sent} events, {CYCLES} kill -9 cycles: takeovers "
           f"{', '.join(f'{t:.2f}' for t in took)} s; failbacks "
           f"{', '.join(f'{t:.2f}' for t in failback)} s; rows {rows}, Tally > 1: {inflated}, "
           f"missing {len(missing)}, delivered keys {delivered}")
    assert feeder.seqs(missing) == []
    assert rows == feeder.sent
    assert inflated == 0


async def test_pair_posts_to_alertmanager_through_a_master_kill(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    rules = tmp_path / "e2e.rules"
    rules.write_text(RULES)
    rate = 300  # alerts per second: ~1,500 alerts held by Alertmanager at the end
    with servers.alertmanager() as am:
        extra = ["--sinktype", "alertmanager", "--sinkurl", am.url, "--rulesfile", str(rules)]
        feeder = Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=rate)
        async with trio.open_nursery() as nursery:
            master = await start_probe(nursery, m.args(s, TIMINGS, extra=extra), cwd=m.cwd)
            slave = await start_probe(nursery, s.args(m, TIMINGS, extra=extra), cwd=s.cwd)
            await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
            await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
            nursery.start_soon(feeder.run)
            await feeder.wait_traffic(1.0)
            await kill9(master)
            await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 5)
            await feeder.wait_traffic(2.0)
            feeder.stop()
            prefix = f"pp-e2e {feeder.tag} "

            def ours() -> list[str]:
                return [str(a["labels"]["Identifier"]) for a in am.alerts()  # type: ignore[index]
                        if str(a["labels"].get("Identifier", "")).startswith(prefix)]  # type: ignore[attr-defined]

            with trio.fail_after(DELIVERY_TIMEOUT):
                while len(held := await trio.to_thread.run_sync(ours)) < feeder.sent:
                    await trio.sleep(0.2)
            assert await slave.stop() == 0
        held = await trio.to_thread.run_sync(ours)
    report("alertmanager pair", f"{feeder.sent} events, {len(held)} alerts held, "
           f"{len(set(held))} distinct")
    assert len(held) == len(set(held)) == feeder.sent
