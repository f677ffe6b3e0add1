"""``Failback immediate`` and ``manual`` with real processes (README "How failover
behaves"), and what a role change shows outside: ProbeWatch events, NotifyCommand,
``probepair status --peer-url``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    active_flags,
    free_port,
    kill9,
    loopback_pair,
    probepair_cli,
    scrape,
    start_probe,
    wait_metric,
)

pytestmark = pytest.mark.e2e

TIMINGS = Timings()  # 0.2 + 0.2 + 0.2: bound 0.6 s
PENDING = 'probepair_role{role="master-pending"}'
NOTIFY = """#!/bin/sh
echo "$PROBEPAIR_NAME $PROBEPAIR_ROLE" >> "$(dirname "$0")/notify.txt"
"""


async def _start(nursery: trio.Nursery, side: PairSide, peer: PairSide,
                 extra: list[str]) -> ProbeProcess:
    return await start_probe(nursery, side.args(peer, TIMINGS, extra=extra), cwd=side.cwd)


async def _cli(side: PairSide, peer: PairSide, *args: str) -> str:
    # The peer's metrics port is left unset (a free port nobody serves): the status of
    # the peer comes by --peer-url or not at all.
    return await probepair_cli(side, peer, *args, metrics_port=free_port(socket.SOCK_STREAM))


def _watch_events(sink: Path) -> list[str]:
    alerts = [json.loads(x) for x in sink.read_bytes().splitlines() if x]
    return [str(a["Summary"]) for a in alerts if a.get("Manager") == "ProbeWatch"]


async def _kill_and_take_over(nursery: trio.Nursery, m: PairSide, s: PairSide,
                              extra: list[str]) -> tuple[ProbeProcess, ProbeProcess]:
    master = await _start(nursery, m, s, extra)
    slave = await _start(nursery, s, m, extra)
    await wait_metric(master, ACTIVE, 1, 10)
    await wait_metric(slave, STANDBY, 1, 10)
    await kill9(master)
    await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + 10)
    return master, slave


async def test_failback_manual_waits_for_the_operator(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    notify = s.cwd / "notify.sh"
    notify.write_text(NOTIFY)
    notify.chmod(0o755)
    async with trio.open_nursery() as nursery:
        _, slave = await _kill_and_take_over(
            nursery, m, s, ["--failback", "manual", "--notifycommand", str(notify)])
        master = await _start(nursery, m, s, ["--failback", "manual"])
        await wait_metric(master, PENDING, 1, 10)
        # The returning master beats and buffers; the slave keeps the role, for as long
        # as we watch (here five takeover bounds).
        watch_until = trio.current_time() + 5 * TIMINGS.bound
        while trio.current_time() < watch_until:
            assert await active_flags(master, slave) == [0, 1]
            await trio.sleep(0.05)
        # status of this probe and, by --peer-url, of the other one.
        status = json.loads(await _cli(
            m, s, "status", "--json", "--peer-url",
            f"http://{s.host}:{s.metrics_port}/status"))
        assert status["peer_error"] is None
        assert status["peer"]["name"] == "s" and status["peer"]["role"] == "slave-active"
        assert status["peer"]["peer_role"] == "master-pending"
        assert "now master" in await _cli(m, s, "takeover")
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    events = _watch_events(s.sink)
    assert [e.split(" ")[1] for e in events if e.startswith("Became")] == ["active", "standby"]
    # Both probes ran the script; it writes beside itself. The slave's role changes, in
    # order.
    def of_slave() -> list[str]:
        lines = (s.cwd / "notify.txt").read_text().splitlines()
        return [x for x in lines if x.startswith("s ")]

    with trio.fail_after(10):
        while len(of_slave()) < 2:
            await trio.sleep(0.05)
    assert of_slave() == ["s slave-active", "s slave-standby"]


async def test_failback_immediate_stops_the_slave_at_the_first_heartbeat(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    async with trio.open_nursery() as nursery:
        _, slave = await _kill_and_take_over(nursery, m, s, ["--failback", "immediate"])
        master = await _start(nursery, m, s, ["--failback", "immediate"])
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        got = [await scrape(p) for p in (master, slave)]
        # README: counted as a short split brain; no handshake hand-over. Exact per side:
        # the slave loses the verdict once; the master counts it only if the slave's
        # active heartbeat reached it before the slave stepped down (one beat's race).
        split = [g["probepair_split_brains_total"] for g in got]
        assert split[1] == 1 and split[0] in (0, 1)
        assert got[1].get('probepair_handovers_total{reason="failback"}', 0) == 0
        assert await slave.stop() == 0
        assert await master.stop() == 0
