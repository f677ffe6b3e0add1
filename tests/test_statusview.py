"""The status table and its verdicts, from plain status dicts; fetch_status over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from probepair.metrics import Metrics
from probepair.ops.control import ControlError
from probepair.ops.endpoint import serve_metrics
from probepair.ops.status import fetch_status, render_table, status_url, verdict

RULES = "3f2a9c0b1d2e4455aa"


def _status(**changes: Any) -> dict[str, Any]:
    """A master's status as Probe.status() builds it (plus the events keys)."""
    status: dict[str, Any] = {
        "name": "m", "version": "0.1.0", "mode": "master", "role": "master", "active": True,
        "addresses": {}, "rules": RULES, "epoch": 1, "buffer_depth": 0, "beat_interval": 2.0,
        "peer_role": "slave-standby", "peer_heard_seconds_ago": 0.42, "split_brain": False,
        "config_drift": False, "events_in": 1000, "events_out": 998,
        "allow_insecure_heartbeats": False,
    }
    status.update(changes)
    return status


SLAVE = {"name": "s", "mode": "slave", "role": "slave-standby", "active": False,
         "peer_role": "master", "peer_heard_seconds_ago": 1.25, "buffer_depth": 17,
         "events_out": 0}


def test_master_and_standby_slave() -> None:
    table = render_table(_status(), _status(**SLAVE))
    assert table == (
        "                  this probe        peer\n"
        "name              m                 s\n"
        "mode              master            slave\n"
        "role              master            slave-standby\n"
        "active            yes               no\n"
        "epoch             1                 1\n"
        "peer last heard   0.4 s ago         1.2 s ago\n"
        "buffer depth      0                 17\n"
        "events in         1000              1000\n"
        "events out        998               0\n"
        "config digest     match             match\n"
        "rules digest      3f2a9c0b1d2e      3f2a9c0b1d2e (match)\n"
        "insecure beats    no                no\n"
        "ready             -                 -\n"
        "failback window   -                 -\n"
        "sink              -                 -\n"
        "gap fills         -                 -\n"
        "pair OK: one active (m)\n"
    )


def test_sink_health_and_gap_fills_show_per_side() -> None:
    local = _status(sink_healthy=False, spool_bytes=40960, gap_fills=0)
    peer = _status(**SLAVE, sink_healthy=True, sink_verified_seconds_ago=2.4, gap_fills=1932)
    lines = render_table(local, peer).splitlines()
    # The columns widen to the longest value: compare without the padding.
    rows = {line.split()[0]: line.split(None, 1)[1].split() for line in lines[1:-1]}
    # a standby's sink is not delivering: it "works", as its last check showed
    assert rows["sink"] == ["FAILING,", "spool", "40960", "B", "works", "(verified", "2", "s",
                            "ago)"]
    never = _status(**SLAVE, sink_healthy=True, sink_verified_seconds_ago=None)
    assert "works (never verified)" in render_table(local, never)
    assert [line.split() for line in lines if line.startswith("gap fills")] == [
        ["gap", "fills", "0", "1932"]]


def test_both_active_is_split_brain() -> None:
    peer = _status(**{**SLAVE, "role": "slave-active", "active": True})
    assert render_table(_status(), peer).splitlines()[-1] == "WARNING: both active (split brain)"
    # the local flag alone is enough (the peer's last status may predate it)
    assert verdict(_status(split_brain=True), _status(**SLAVE)) == [
        "WARNING: both active (split brain)"]


def test_no_probe_active() -> None:
    local = _status(role="master-pending", active=False)
    assert verdict(local, _status(**SLAVE)) == ["WARNING: no probe active"]


def test_peer_unreachable_shows_the_error() -> None:
    error = "http://10.0.0.2:9100/status: no probe answers"
    lines = render_table(_status(), None, error).splitlines()
    assert lines[1] == "name              m                 (unreachable)"
    assert lines[7] == "buffer depth      0                 -"
    assert lines[-2] == f"peer: {error}"
    assert lines[-1] == "WARNING: peer status unavailable; this probe is active"


def test_config_drift_and_different_rules() -> None:
    table = render_table(_status(config_drift=True),
                         _status(**SLAVE, config_drift=True, rules="99" * 16))
    lines = table.splitlines()
    assert lines[10] == "config digest     DRIFT             DRIFT"
    assert lines[11] == "rules digest      3f2a9c0b1d2e      999999999999 (DIFFERENT)"
    assert lines[-1] == "WARNING: config drift between peers (rules digests differ)"


def test_allow_insecure_heartbeats_shows_and_warns() -> None:
    peer = _status(**SLAVE, allow_insecure_heartbeats=True)
    lines = render_table(_status(), peer).splitlines()
    assert lines[12] == "insecure beats    no                ALLOWED"
    assert lines[-1] == (
        "WARNING: AllowInsecureHeartbeats on s: heartbeats and acks may be forged")
    both = verdict(_status(allow_insecure_heartbeats=True), peer)
    assert both == ["WARNING: AllowInsecureHeartbeats on m, s: heartbeats and acks may be forged"]


def test_several_warnings_are_all_shown() -> None:
    peer = _status(**{**SLAVE, "active": True, "config_drift": True})
    assert verdict(_status(config_drift=True), peer) == [
        "WARNING: both active (split brain)", "WARNING: config drift between peers"]


def test_missing_keys_show_as_unknown() -> None:
    old = {"name": "s", "mode": "slave", "role": "slave-standby", "active": False}
    lines = render_table(_status(), old).splitlines()
    assert lines[5] == "epoch             1                 -"
    assert lines[8] == "events in         1000              -"
    assert lines[11] == "rules digest      3f2a9c0b1d2e      -"
    assert lines[12] == "insecure beats    no                -"


def test_standard_probe_and_never_heard_peer() -> None:
    standard = {"name": "solo", "mode": "standard", "role": "standard", "active": True,
                "rules": ""}
    lines = render_table(standard, None, "Mode standard has no peer").splitlines()
    assert lines[6] == "peer last heard   n/a               -"
    assert lines[11] == "rules digest      (no rules)        -"
    assert lines[12] == "insecure beats    n/a               -"
    assert lines[-1] == "standard probe (no failover peer): active"
    fresh = render_table(_status(peer_heard_seconds_ago=None, peer_role=None), None, "x")
    assert "peer last heard   never" in fresh


def test_status_url() -> None:
    assert status_url("127.0.0.1", 9100) == "http://127.0.0.1:9100/status"
    assert status_url("::1", 9100) == "http://[::1]:9100/status"


async def test_fetch_status_from_a_metrics_endpoint() -> None:
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_metrics, Metrics(), "127.0.0.1", 0,
                                         lambda: _status())
        status = await trio.to_thread.run_sync(fetch_status, status_url(host, port))
        assert status == _status()
        bad = f"http://{host}:{port}/nothing"
        with pytest.raises(ControlError, match="expected HTTP 200, got 404") as info:
            await trio.to_thread.run_sync(fetch_status, bad)
        assert info.value.where == bad
        nursery.cancel_scope.cancel()


def test_fetch_status_nobody_listening(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = status_url("127.0.0.1", port)
    with pytest.raises(ControlError) as info:
        fetch_status(url, timeout=2.0)
    assert str(info.value) == f"{url}: no probe answers (is its MetricsPort set and reachable?)"


def test_readiness_and_the_failback_window_rows() -> None:
    local = _status(ready=True, desynchronised=[], failback_window="0 2 * * *",
                    failback_window_open=False, next_window_in_seconds=3 * 3600 + 61)
    peer = _status(**SLAVE, ready=False, desynchronised=["rules"], failback_window="0 2 * * *",
                   failback_window_open=True)
    lines = render_table(local, peer).splitlines()
    assert lines[13] == "ready             yes               NO: rules"
    assert lines[14] == "failback window   in 3 h 02         open"
    assert lines[-1] == "WARNING: s is desynchronised (rules)"
    assert render_table(_status(failback_window=""), None).splitlines()[14].split()[2:4] == [
        "any", "time"]
