"""The /metrics exposition passes ``promtool check metrics`` (format and naming lint),
built in-process and served by a real probe, and the endpoint's other paths."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest
import trio

from probepair import __version__
from probepair.metrics import ROLES, Metrics
from tests.e2e.procs import start_probe
from tests.net import fetch as http_get
from tests.net import free_tcp_port
from tests.servers import need

if TYPE_CHECKING:
    from pathlib import Path

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.usefixtures("_promtool_present")


@pytest.fixture
def _promtool_present() -> None:
    need("promtool", "prometheus")  # a skip locally, a failure under CI=true


def check_metrics(exposition: bytes) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` with the exposition on stdin."""
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def busy_metrics() -> Metrics:
    """A Metrics object with every kind of metric set, labelled ones included."""
    m = Metrics()
    m.set_info("slave", "probe-b")
    m.set_role("slave-active", True)
    m.buffer_depth.set(12)
    m.failovers.inc()
    m.heartbeats_sent.inc(40)
    m.heartbeats_received.inc(38)
    m.heartbeats_rejected.labels(reason="mac").inc(2)
    m.heartbeats_rejected.labels(reason="replay").inc()
    m.events_received.inc(1000)
    m.events_forwarded.inc(990)
    m.events_discarded.labels(reason="rules").inc(10)
    m.duplicates_avoided.inc(5)
    m.peer_heartbeat_age.set(float("inf"))
    m.beat_interval.set(2.0)
    m.takeover_bound.set(4.0)
    m.split_brain.set(0)
    m.split_brains.inc()
    m.rules_reloads.labels(result="success").inc()
    m.rules_errors.inc(3)
    m.sink_errors.inc()
    m.sink_write_seconds.observe(0.004)
    m.sink_write_seconds.observe(0.3)
    m.spool_bytes.set(4096)
    m.kernel_drops = lambda: 7
    m.buffer_limit.set(1_000_000)
    m.config_drift.set(1)
    return m


@needs_promtool
def test_exposition_passes_promtool_lint() -> None:
    result = check_metrics(busy_metrics().exposition())
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool prints one line per lint problem ("name: problem"); none expected.
    assert (result.stdout + result.stderr).strip() == ""


@needs_promtool
def test_fresh_exposition_passes_promtool_lint() -> None:
    result = check_metrics(Metrics().exposition())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""


def test_exposition_holds_the_contract_names() -> None:
    m = busy_metrics()
    m.exposition()
    value = m.registry.get_sample_value
    assert value("probepair_active") == 1
    assert value("probepair_role", {"role": "slave-active"}) == 1
    assert sum(value("probepair_role", {"role": r}) or 0 for r in ROLES) == 1
    assert value("probepair_heartbeats_rejected_total", {"reason": "mac"}) == 2
    assert value("probepair_failovers_total") == 1
    assert (
        value("probepair_info", {"version": __version__, "mode": "slave", "node": "probe-b",
                                 "allow_insecure_heartbeats": "false"}) == 1
    )
    assert value("probepair_sink_write_seconds_count") == 2
    assert value("probepair_feed_kernel_drops_total") == 7
    assert value("probepair_buffer_limit") == 1_000_000
    assert value("probepair_heartbeats_rejected_total", {"reason": "stale"}) == 0  # pre-created


@pytest.mark.e2e
@needs_promtool
async def test_real_probe_serves_metrics_status_and_404(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            [
                "--name",
                "std1",
                "--feedport",
                "0",
                "--rulesfile",
                "",
                "--sinkfile",
                str(tmp_path / "alerts.jsonl"),
                "--metricsport",
                str(free_tcp_port()),
            ],
            cwd=tmp_path,
        )
        try:
            host, port = probe.address("metrics")
            base = f"http://{host}:{port}"
            with trio.fail_after(20):
                metrics = await http_get(f"{base}/metrics")
                status = await http_get(f"{base}/status")
                missing = await http_get(f"{base}/nothing-here")
        finally:
            assert await probe.stop() == 0

    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    result = check_metrics(metrics.content)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
    text = metrics.text
    assert "\nprobepair_active 1.0\n" in text
    assert 'probepair_role{role="standard"} 1.0' in text
    assert 'probepair_info{allow_insecure_heartbeats="false",mode="standard",node="std1"' in text

    assert status.status_code == 200
    assert status.headers["content-type"] == "application/json"
    body = json.loads(status.content)
    assert body["name"] == "std1"
    assert body["mode"] == "standard"
    assert body["active"] is True
    assert body["addresses"]["metrics"] == f"{host}:{port}"

    assert missing.status_code == 404
