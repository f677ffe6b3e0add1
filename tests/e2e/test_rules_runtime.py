"""Rules in a running probe: %Mode switches a pair's roles; reloads keep good rules."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    Timings,
    loopback_pair,
    scrape,
    start_probe,
    wait_for_lines,
    wait_metric,
)

pytestmark = pytest.mark.e2e

SWITCH_RULES = """
# The probe named in "switch to NAME" asks to become master (OMNIbus %Mode).
if (match($Line, "switch to " + %Name)) {
    %Mode = "master"
    discard
}
@Summary = $Line
@Identifier = $Line
"""


def _send(address: tuple[str, int], line: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(line, address)


async def test_rules_setting_mode_master_makes_the_slave_active(tmp_path: Path) -> None:
    rules = tmp_path / "switch.rules"
    rules.write_text(SWITCH_RULES)
    timings = Timings()
    m, s = loopback_pair(tmp_path)
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=["--rulesfile", str(rules)]),
                                   cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, extra=["--rulesfile", str(rules)]),
                                  cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, 'probepair_role{role="slave-standby"}', 1, timeout=10)
        start = trio.current_time()
        for probe in (master, slave):
            _send(probe.address("feed"), b"switch to s")
        await wait_metric(slave, ACTIVE, 1, timeout=5)
        took = trio.current_time() - start
        await wait_metric(master, ACTIVE, 0, timeout=5)
        print(f"%Mode = 'master' on s: active after {took:.3f} s (contract: within 1 s)")
        slave_metrics = await scrape(slave)
        assert slave_metrics['probepair_role{role="master"}'] == 1
        assert (await scrape(master))['probepair_role{role="slave-standby"}'] == 1
        nursery.cancel_scope.cancel()


async def test_sighup_reloads_rules_and_a_broken_file_keeps_the_old_ones(tmp_path: Path) -> None:
    rules = tmp_path / "probe.rules"
    rules.write_text('@Summary = "v1: " + $Line\n@Identifier = $Line\n')
    sink = tmp_path / "alerts.jsonl"
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--feedport", "0", "--feedformat", "line", "--rulesfile", str(rules),
             "--sinkfile", str(sink), "--metricsport", str(_free_tcp_port()), "--name", "r"],
            cwd=tmp_path,
        )
        feed = probe.address("feed")

        async def summary_of(line: bytes, count: int) -> str:
            _send(feed, line)
            lines = await wait_for_lines(sink, count)
            alerts = [json.loads(x) for x in lines]
            return str([a for a in alerts if a.get("Manager") != "ProbeWatch"][-1]["Summary"])

        assert await summary_of(b"one", 2) == "v1: one"  # line 1 is "Running ..."
        rules.write_text('@Summary = "v2: " + $Line\n@Identifier = $Line\n')
        probe.signal(signal.SIGHUP)
        await wait_metric(probe, 'probepair_rules_reloads_total{result="success"}', 1, timeout=10)
        assert await summary_of(b"two", 3) == "v2: two"
        rules.write_text('@Summary = nosuchfunction($Line)\n')
        probe.signal(signal.SIGHUP)
        await wait_metric(probe, 'probepair_rules_reloads_total{result="failure"}', 1, timeout=10)
        assert await summary_of(b"three", 4) == "v2: three"
        assert await probe.stop() == 0


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
