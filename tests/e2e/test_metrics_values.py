"""The metrics a running pair reports, checked against what the test did to it (README
"Metrics"): not values a test set itself, but what the probes counted."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
import trio

from probepair.failover.wire import Flag, Heartbeat, config_digest, encode, make_boot_id, node_id_of
from probepair.failover.wire import Role as WireRole
from tests.e2e.faults import SLOW
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    ProbeProcess,
    Timings,
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.sinkcheck import read_keys

pytestmark = pytest.mark.e2e

RULES = """
if (match($Line, "drop")) {
    discard
}
if (match($Line, "err")) {
    @Bad = 1 / int($Line)
}
@Summary = $Line
@Identifier = $Line
"""
DISCARDED = 'probepair_events_discarded_total{reason="rules"}'


def _send(probes: list[ProbeProcess], lines: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for line in lines:
            for probe in probes:
                s.sendto(line, probe.address("feed"))


async def _wait_received(probe: ProbeProcess, total: int) -> None:
    await wait_metric(probe, "probepair_events_received_total", total, timeout=20)


async def test_a_running_pair_counts_what_happened_to_it(tmp_path: Path) -> None:
    rules = tmp_path / "count.rules"
    rules.write_text(RULES)
    m, s = loopback_pair(tmp_path)
    extra = ["--rulesfile", str(rules), "--batchlatency", "0"]
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, SLOW, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, SLOW, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        both = [master, slave]

        ok = [b"ok %d" % i for i in range(20)]
        _send(both, ok + [b"drop"] * 5 + [b"err"] * 3)
        for probe in both:
            await _wait_received(probe, 28)
        # Everything the master delivered is acked: the slave holds nothing and dropped
        # each delivered event from its buffer as a duplicate avoided.
        await wait_metric(slave, "probepair_buffer_depth", 0, 10)
        delivered = len([k for k in read_keys(m.sink)])  # fed alerts only (no ProbeWatch)
        await wait_metric(slave, "probepair_duplicates_avoided_total", delivered, 10)
        assert delivered == 23  # 20 ok + 3 err (a runtime error does not drop the alert)
        for probe in both:
            got = await scrape(probe)
            assert got[DISCARDED] == 5
            assert got["probepair_rules_errors_total"] == 3
            assert got["probepair_config_drift"] == 0
            # Heard within a beat period (plus scheduling), by the probe's own clock.
            assert 0 <= got["probepair_peer_heartbeat_age_seconds"] <= SLOW.bound
        assert (await scrape(master))["probepair_duplicates_avoided_total"] == 0

        # A master frozen for less than the bound: the slave holds exactly what arrives.
        master.signal(signal.SIGSTOP)
        try:
            _send(both, [b"held %d" % i for i in range(10)])
            await _wait_received(slave, 38)
            assert (await scrape(slave))["probepair_buffer_depth"] == 10
        finally:
            master.signal(signal.SIGCONT)
        await wait_metric(slave, "probepair_buffer_depth", 0, 10)
        await wait_metric(slave, "probepair_duplicates_avoided_total", delivered + 10, 10)
        got = await scrape(slave)
        assert got["probepair_failovers_total"] == 0 and got["probepair_gap_fills_total"] == 0
        assert await slave.stop() == 0
        assert await master.stop() == 0


REJECTED = 'probepair_heartbeats_rejected_total{reason="%s"}'


async def test_drift_and_rejected_datagrams_are_counted_by_a_running_pair(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, Timings()), cwd=m.cwd)
        # A pair-wide setting that differs: the heartbeats' config digests differ.
        slave = await start_probe(nursery, s.args(m, Timings(), extra=["--keywindow", "7"]),
                                  cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, 10)
        await wait_metric(slave, STANDBY, 1, 10)
        await wait_metric(slave, "probepair_config_drift", 1, 10)
        await wait_metric(master, "probepair_config_drift", 1, 10)

        # Datagrams to the slave's heartbeat port: one signed with another secret, one
        # unsigned, one too short, one with another magic. Not from PeerHost:PeerPort,
        # they are all counted as "source" and never decoded (issue 19); each reason of
        # a datagram from the peer's own address is counted in tests/test_heartbeat_port.
        forged = Heartbeat(sender=node_id_of("m"), boot_id=make_boot_id(1_700_000_000, b"abcd"),
                           epoch=0, seq=1, role=WireRole.MASTER, flags=Flag(0),
                           beat_interval=0.2, config_digest=config_digest("x"))
        before = await scrape(slave)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            to = (s.host, s.heartbeat_port)
            sock.sendto(encode(forged, b"another secret of the right length......"), to)
            sock.sendto(encode(forged, b""), to)
            sock.sendto(b"PB", to)
            sock.sendto(b"XXXX" + b"\0" * 100, to)
        await wait_metric(slave, REJECTED % "source", before.get(REJECTED % "source", 0) + 4, 10)
        after = await scrape(slave)
        for reason in ("mac", "unsigned", "short", "magic"):
            assert after.get(REJECTED % reason, 0) == before.get(REJECTED % reason, 0)
        assert after[STANDBY] == 1 and after["probepair_failovers_total"] == 0
        nursery.cancel_scope.cancel()
