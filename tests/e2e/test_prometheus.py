"""A real Prometheus server scrapes a real pair; probepair_active read through its API
flips from the master to the slave when the master is killed with SIGKILL."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from tests.e2e.procs import ProbeProcess, start_probe, write_secret_file
from tests.net import fetch as http_get
from tests.net import free_port
from tests.servers import need

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e

PROMETHEUS = shutil.which("prometheus")
ALERTS = Path(__file__).resolve().parents[2] / "conf" / "prometheus" / "alerts.yml"
SCRAPE_INTERVAL = 1.0  # seconds; Prometheus' minimum practical interval
READY_TIMEOUT = 15.0  # seconds for Prometheus to open its TSDB and serve /-/ready
# Seconds for a value to show in a query: one scrape interval, plus the scrape itself
# and a takeover bound of 0.6 s, with CI slack.
QUERY_TIMEOUT = 10.0

PAIR_TIMING = [
    "--beatinterval",
    "0.2",
    "--beatthreshold",
    "0.2",
    "--heartbeattimeout",
    "0.2",
]


def write_config(path: Path, targets: list[str]) -> None:
    quoted = ", ".join(f'"{t}"' for t in targets)
    path.write_text(
        f"global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL:g}s\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL:g}s\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL:g}s\n"
        f'rule_files: ["{ALERTS}"]\n'
        f"scrape_configs:\n"
        f"  - job_name: probepair\n"
        f"    static_configs:\n"
        f"      - targets: [{quoted}]\n"
        f"        labels: {{pair: e2e}}\n"
    )


@asynccontextmanager
async def prometheus_server(tmp_path: Path, targets: list[str]) -> AsyncIterator[str]:
    """A Prometheus on loopback scraping ``targets``; yields its base URL once ready."""
    assert PROMETHEUS is not None
    config = tmp_path / "prometheus.yml"
    write_config(config, targets)
    port = free_port(socket.SOCK_STREAM)
    log_path = tmp_path / "prometheus.log"
    cmd = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    cmd,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            )
            try:
                with trio.fail_after(READY_TIMEOUT):
                    while True:
                        if process.returncode is not None:
                            raise AssertionError(
                                f"prometheus exited with {process.returncode}:\n"
                                + log_path.read_text()
                            )
                        try:
                            if (await http_get(f"{base}/-/ready")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await trio.sleep(0.1)
                yield base
            finally:
                # SIGTERM for a clean TSDB close, then the nursery's cancel kills if needed.
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await process.wait()
                nursery.cancel_scope.cancel(reason="test over")


async def query_active(base: str) -> dict[str, float]:
    """``probepair_active`` by instance, from Prometheus' HTTP API."""
    response = await http_get(f"{base}/api/v1/query?query=probepair_active")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return {r["metric"]["instance"]: float(r["value"][1]) for r in body["data"]["result"]}


async def wait_active(base: str, expected: dict[str, float | None]) -> dict[str, float]:
    """Poll until each instance reads as expected (None: no live series)."""
    seen: dict[str, float] = {}
    try:
        with trio.fail_after(QUERY_TIMEOUT):
            while True:
                seen = await query_active(base)
                if all(seen.get(i) == v for i, v in expected.items()):
                    return seen
                await trio.sleep(0.2)
    except trio.TooSlowError:
        raise AssertionError(f"probepair_active: expected {expected}, last saw {seen}") from None


async def start_pair(nursery: trio.Nursery, tmp_path: Path) -> tuple[ProbeProcess, ProbeProcess]:
    port_a, port_b = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    procs = []
    for name, mode, peer, listen in (
        ("m", "master", port_b, port_a),
        ("s", "slave", port_a, port_b),
    ):
        cwd = tmp_path / name
        cwd.mkdir()
        procs.append(
            await start_probe(
                nursery,
                [
                    "--name",
                    name,
                    "--mode",
                    mode,
                    "--peerhost",
                    "127.0.0.1",
                    "--peerport",
                    str(peer),
                    "--listenport",
                    str(listen),
                    "--feedport",
                    "0",
                    "--rulesfile",
                    "",
                    "--sinkfile",
                    f"{name}.jsonl",
                    "--metricsport",
                    str(free_port(socket.SOCK_STREAM)),
                    *PAIR_TIMING,
                    "--sharedsecretfile",
                    str(write_secret_file(cwd / "secret")),
                ],
                cwd=cwd,
            )
        )
    return procs[0], procs[1]


async def test_prometheus_sees_the_slave_take_over(tmp_path: Path) -> None:
    need("prometheus", "prometheus")  # a skip locally, a failure under CI=true
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            master, slave = await start_pair(nursery, tmp_path)
            m_addr, s_addr = master.addresses["metrics"], slave.addresses["metrics"]
            try:
                async with prometheus_server(tmp_path, [m_addr, s_addr]) as base:
                    await wait_active(base, {m_addr: 1.0, s_addr: 0.0})

                    rules = (await http_get(f"{base}/api/v1/rules")).json()
                    groups = {g["name"] for g in rules["data"]["groups"]}
                    assert groups == {"probepair-pair", "probepair-probe"}, rules

                    master.process.kill()  # SIGKILL: no clean stop, no goodbye heartbeat
                    await master.process.wait()
                    # The master's scrape fails and its series go stale: only the slave.
                    await wait_active(base, {s_addr: 1.0, m_addr: None})
            finally:
                if master.process.returncode is None:
                    master.process.kill()
                assert await slave.stop() == 0
                nursery.cancel_scope.cancel(reason="test over")
