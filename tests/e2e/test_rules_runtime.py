"""Rules in a running probe: %Mode switches a pair's roles; reloads keep good rules."""

from __future__ import annotations

import json
import signal
import socket
from datetime import datetime
from pathlib import Path

import pytest
import trio

from probepair.probe import RULES_POLL_INTERVAL
from tests.e2e.procs import (
    ACTIVE,
    Timings,
    http_get,
    loopback_pair,
    scrape,
    start_probe,
    wait_for_lines,
    wait_metric,
)
from tests.net import free_tcp_port

pytestmark = pytest.mark.e2e

SWITCH_RULES = """
# The probe named in "switch to NAME" asks to become master (OMNIbus %Mode).
if (match($Line, "switch to " + %Name)) {
    log(WARNING, "rules ask for master")
    %Mode = "master"
    discard
}
@Summary = $Line
@Identifier = $Line
"""


def _send(address: tuple[str, int], line: bytes, source: str = "") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
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
        for probe in (master, slave):
            _send(probe.address("feed"), b"switch to s")
        await wait_metric(slave, ACTIVE, 1, timeout=10)
        await wait_metric(master, ACTIVE, 0, timeout=10)
        # README: active within 1 s, by the slave's own clock (its log's timestamps).
        asked = _logged_at(s.log, "rules ask for master")
        active = _logged_at(s.log, "-> master: mode set to master")
        print(f"%Mode = 'master' on s: active {active - asked:.3f} s after the rules asked")
        assert 0 <= active - asked <= 1.0
        slave_metrics = await scrape(slave)
        assert slave_metrics['probepair_role{role="master"}'] == 1
        assert (await scrape(master))['probepair_role{role="slave-standby"}'] == 1
        nursery.cancel_scope.cancel()


async def test_sighup_reloads_rules_and_a_broken_file_keeps_the_old_ones(tmp_path: Path) -> None:
    # The probe also reloads when RulesFile's mtime changes (polled every 2 s). To test
    # SIGHUP alone the rules live in an included file: the poll watches RulesFile only,
    # so nothing but SIGHUP can reload a change there.
    rules = tmp_path / "probe.rules"
    rules.write_text('include "body.rules"\n')
    body = tmp_path / "body.rules"
    body.write_text('@Summary = "v1: " + $Line\n@Identifier = $Line\n')
    sink = tmp_path / "alerts.jsonl"
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--feedport", "0", "--feedformat", "line", "--rulesfile", str(rules),
             "--sinkfile", str(sink), "--metricsport", str(free_tcp_port()), "--name", "r"],
            cwd=tmp_path,
        )
        feed = probe.address("feed")
        seen = 1  # line 1 is "Running ..."

        async def summary_of(line: bytes) -> str:
            nonlocal seen
            seen += 1
            _send(feed, line)
            lines = await wait_for_lines(sink, seen)
            alerts = [json.loads(x) for x in lines]
            return str([a for a in alerts if a.get("Manager") != "ProbeWatch"][-1]["Summary"])

        async def reloads() -> tuple[float, float]:
            got = await scrape(probe)
            return (got.get('probepair_rules_reloads_total{result="success"}', 0.0),
                    got.get('probepair_rules_reloads_total{result="failure"}', 0.0))

        assert await summary_of(b"one") == "v1: one"
        body.write_text('@Summary = "v2: " + $Line\n@Identifier = $Line\n')
        # Past a poll interval (and its scheduling slack): no reload without the signal.
        await trio.sleep(RULES_POLL_INTERVAL * 1.5)
        assert await summary_of(b"still") == "v1: still"
        assert await reloads() == (0, 0)
        probe.signal(signal.SIGHUP)
        await wait_metric(probe, 'probepair_rules_reloads_total{result="success"}', 1, timeout=10)
        assert await summary_of(b"two") == "v2: two"
        assert await reloads() == (1, 0)
        body.write_text('@Summary = nosuchfunction($Line)\n')
        probe.signal(signal.SIGHUP)
        await wait_metric(probe, 'probepair_rules_reloads_total{result="failure"}', 1, timeout=10)
        assert await summary_of(b"three") == "v2: three"
        assert await reloads() == (1, 1)
        assert await probe.stop() == 0


def _logged_at(log: Path, text: str) -> float:
    """The probe's own timestamp (``2026-01-02 03:04:05,678 ...``) of the one line holding
    ``text`` in its MessageLog."""
    lines = [x for x in log.read_text().splitlines() if text in x]
    assert len(lines) == 1, lines
    stamp = datetime.strptime(lines[0][:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


async def test_a_spoofed_mode_line_with_the_shipped_example_changes_nothing(
        tmp_path: Path) -> None:
    """rules/mode-switch-example.rules on a udp (syslog) feed: a request from any sender
    but this host's own 127.0.0.1 (here 127.0.0.2, standing in for another host) is an
    ordinary event."""
    import platform

    shipped = Path(__file__).resolve().parents[2] / "rules" / "mode-switch-example.rules"
    timings = Timings()
    m, s = loopback_pair(tmp_path)
    extra = ["--rulesfile", str(shipped), "--feedformat", "syslog"]
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, 'probepair_role{role="slave-standby"}', 1, timeout=10)
        spoofed = f"<13>Nov 22 04:04:33 evil admin: probepair take over {platform.node()}"
        for probe in (master, slave):
            _send(probe.address("feed"), spoofed.encode(), source="127.0.0.2")
        # Both ran the rules on it: the master delivered it as an ordinary alert, and the
        # slave dropped it as acked.
        with trio.fail_after(10):
            while not any(b"probepair take over" in line for line in
                          await wait_for_lines(m.sink, 0)):
                await trio.sleep(0.05)
        await wait_metric(slave, "probepair_events_received_total", 1, timeout=10)
        await wait_metric(slave, "probepair_buffer_depth", 0, timeout=10)
        for probe, active in ((master, 1), (slave, 0)):
            metrics = await scrape(probe)
            assert metrics[ACTIVE] == active
            status = json.loads(await http_get(probe.address("metrics"), "/status"))
            assert status["epoch"] == 0
        assert "switching to master" not in s.log.read_text() + m.log.read_text()
        nursery.cancel_scope.cancel()
