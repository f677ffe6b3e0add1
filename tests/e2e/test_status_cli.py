"""``probepair status``, ``takeover`` and ``release`` against a real pair."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    Timings,
    loopback_pair,
    probe_env,
    probepair_cli,
    probepair_cmd,
    scrape,
    start_probe,
    wait_metric,
)

pytestmark = pytest.mark.e2e


async def test_status_shows_both_sides_and_takeover_release_switch_roles(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, 'probepair_role{role="slave-standby"}', 1, timeout=10)

        table = await probepair_cli(m, s, "status")
        print(table)
        lines = {line[:18].strip(): line[18:].split() for line in table.splitlines()}
        assert lines["name"] == ["m", "s"]
        assert lines["role"] == ["master", "slave-standby"]
        assert lines["active"] == ["yes", "no"]
        assert "pair OK: one active (m)" in table

        taken = await probepair_cli(s, m, "takeover")
        assert taken.startswith("s: takeover requested; now master")
        await wait_metric(master, ACTIVE, 0, timeout=5)
        both = json.loads(await probepair_cli(s, m, "status", "--json"))
        assert both["local"]["active"] is True and both["local"]["epoch"] == 1
        assert both["peer"]["role"] == "slave-standby"

        assert "now slave-standby" in await probepair_cli(s, m, "release")
        await wait_metric(master, ACTIVE, 1, timeout=5)
        nursery.cancel_scope.cancel()


async def test_status_on_one_host_asks_the_peer_where_its_heartbeats_say(
        tmp_path: Path) -> None:
    """Issue 25: a loopback pair, each probe with its own MetricsPort. ``status`` with
    the slave's own props (its MetricsPort, not the peer's) used to ask PeerHost at that
    port, i.e. itself, and called a healthy pair a split brain. Heartbeats carry the
    sender's MetricsPort: status asks there, and says so when the peer is not heard."""
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        alone = json.loads(await probepair_cli(m, s, "status", "--json",
                                               metrics_port=m.metrics_port))
        assert alone["peer"] is None and alone["local"]["peer_status_address"] is None
        assert alone["peer_error"].startswith("peer unknown: not heard yet")
        slave = await start_probe(nursery, s.args(m, timings), cwd=s.cwd)
        await wait_metric(slave, 'probepair_role{role="slave-standby"}', 1, timeout=10)
        both = json.loads(await probepair_cli(s, m, "status", "--json",
                                              metrics_port=s.metrics_port))
        assert both["local"]["peer_status_address"] == [m.host, m.metrics_port]
        assert (both["local"]["name"], both["peer"]["name"]) == ("s", "m")
        assert both["peer"]["role"] == "master"
        table = await probepair_cli(s, m, "status", metrics_port=s.metrics_port)
        assert "split brain" not in table and "pair OK: one active (m)" in table
        nursery.cancel_scope.cancel()


async def test_a_wrong_secret_is_named_not_called_a_split_brain(tmp_path: Path) -> None:
    """Issue 25: two probes with different SharedSecrets both go active. Each refuses
    the other's datagrams as bad HMAC; status says so, with the count and the address,
    before anything else (it used to say only "split brain", "last heard never")."""
    m, s = loopback_pair(tmp_path)
    other = "another-" + secrets.token_hex(24)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, secret=other), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, ACTIVE, 1, timeout=10)
        table = await probepair_cli(m, s, "status", metrics_port=m.metrics_port)
        print(table)
        warnings = [line for line in table.splitlines() if line.startswith("WARNING")]
        assert warnings[0].startswith(
            "WARNING: m refuses the peer's datagrams (bad HMAC: the two SharedSecrets "
            "differ; "), warnings
        assert f"from {s.host}" in warnings[0]
        local = json.loads(await probepair_cli(m, s, "status", "--json",
                                               metrics_port=m.metrics_port))["local"]
        assert local["rejected"]["mac"]["count"] >= 1
        assert "authentication" in local["problems"] and "silent" not in local["problems"]
        await wait_metric(master, 'probepair_peer_problem{cause="authentication"}', 1, 5)
        assert (await scrape(master))['probepair_peer_problem{cause="silent"}'] == 0
        nursery.cancel_scope.cancel()


async def test_a_peer_never_heard_is_named_with_the_address_probed(tmp_path: Path) -> None:
    """Issue 25: nothing comes back from PeerHost:PeerPort (no peer runs there: as a
    firewall or a wrong PeerHost looks). Status names the address, the metric the cause."""
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(master, 'probepair_peer_problem{cause="silent"}', 1, 5)
        table = await probepair_cli(m, s, "status", metrics_port=m.metrics_port)
        print(table)
        assert (f"WARNING: m hears nothing from {s.host}:{s.heartbeat_port} (never heard): "
                "firewall, PeerHost or PeerPort, or the peer is down?") in table
        assert (await scrape(master))['probepair_peer_problem{cause="authentication"}'] == 0
        nursery.cancel_scope.cancel()


async def test_drift_is_named_by_property_and_rules_file(tmp_path: Path) -> None:
    """Issue 25: the slave runs another BeatThreshold and another include file. Both
    sides' status name the property (with both values) and the file, not just "drift";
    the slave's readiness says the same, and the metric carries both causes."""
    m, s = loopback_pair(tmp_path)
    for side, text in ((m, "@Summary = $Token1"), (s, "@Summary = $Token2")):
        (side.cwd / "main.rules").write_text('include "inc.rules"\n')
        (side.cwd / "inc.rules").write_text(text + "\n")
    timings = Timings()
    other = Timings(beat_threshold=0.3)
    async with trio.open_nursery() as nursery:
        master = await start_probe(
            nursery, m.args(s, timings, extra=["--rulesfile", str(m.cwd / "main.rules")]),
            cwd=m.cwd)
        slave = await start_probe(
            nursery, s.args(m, other, extra=["--rulesfile", str(s.cwd / "main.rules")]),
            cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, 'probepair_peer_problem{cause="rules_differ"}', 1, 10)
        await wait_metric(slave, 'probepair_peer_problem{cause="config_drift"}', 1, 5)
        table = await probepair_cli(s, m, "status", metrics_port=s.metrics_port)
        print(table)
        assert ("WARNING: config drift between peers: BeatThreshold (0.3 on s, 0.2 on m); "
                "rules file inc.rules") in table
        local = json.loads(await probepair_cli(s, m, "status", "--json",
                                               metrics_port=s.metrics_port))["local"]
        assert local["desynchronised"] == [
            "BeatThreshold (0.3 here, 0.2 on the master)", "rules file inc.rules"]
        assert local["problems"] == ["config_drift", "rules_differ"]
        nursery.cancel_scope.cancel()


def test_status_without_a_running_probe_says_so(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(probepair_cmd("status", "--name", "nobody"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env=probe_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"probepair: {tmp_path}/nobody.sock: no probe is listening")
