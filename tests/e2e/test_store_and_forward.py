"""Store-and-forward in a running probe (README "Sinks"): a real TCP sink server that is
not there, then there. SIGTERM spools what the sink could not take (a drain that really
has work to do), the spool grows while the sink is down, and everything is replayed in
order: by a running probe when the sink returns, and by the next start after a kill -9
in mid-spool.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import ProbeProcess, free_port, kill9, scrape, start_probe, wait_metric

pytestmark = pytest.mark.e2e

EVENTS = 300


def _send(address: tuple[str, int], lines: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line, address)


def _lines(tag: str, n: int) -> list[bytes]:
    return [b"%s %d" % (tag.encode(), i) for i in range(n)]


class TcpSinkServer:
    """A newline-JSON receiver on a fixed loopback port, started when the test wants."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.alerts: list[dict[str, object]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        async for chunk in stream:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            self.alerts.extend(json.loads(x) for x in lines if x)

    def summaries(self) -> list[str]:
        return [str(a["Line"]) for a in self.alerts if a.get("Manager") != "ProbeWatch"]

    async def wait_for(self, n: int, timeout: float = 20.0) -> None:
        with trio.fail_after(timeout):
            while len(self.summaries()) < n:
                await trio.sleep(0.05)


def _args(tmp_path: Path, sink_port: int) -> list[str]:
    return ["--name", "saf", "--feedport", "0", "--feedformat", "line",
            "--rulesfile", "", "--sinktype", "tcp", "--sinkaddress", f"127.0.0.1:{sink_port}",
            "--saffilename", str(tmp_path / "spool.saf"),
            "--metricsport", str(free_port(socket.SOCK_STREAM)), "--batchlatency", "0"]


async def _feed_and_wait_accepted(probe: ProbeProcess, lines: list[bytes]) -> None:
    for i in range(0, len(lines), 50):
        _send(probe.address("feed"), lines[i:i + 50])
        await trio.sleep(0.01)  # paced: loopback UDP drops a burst into a full buffer
    await wait_metric(probe, "probepair_events_received_total", len(lines), timeout=20)


async def test_sigterm_spools_what_the_sink_refused_and_the_next_start_replays_it_in_order(
        tmp_path: Path) -> None:
    sink_port = free_port(socket.SOCK_STREAM)
    server = TcpSinkServer(sink_port)
    sent = _lines("down", EVENTS)
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, _args(tmp_path, sink_port), cwd=tmp_path)
        await _feed_and_wait_accepted(probe, sent)
        metrics = await scrape(probe)
        assert metrics["probepair_sink_healthy"] == 0  # nobody listens: the sink fails
        assert await probe.stop() == 0  # SIGTERM: accepted events go to the spool first
        spool = tmp_path / "spool.saf"
        assert spool.exists() and spool.stat().st_size > 0
        await nursery.start(server.run)
        probe = await start_probe(nursery, _args(tmp_path, sink_port), cwd=tmp_path)
        await server.wait_for(EVENTS)
        assert server.summaries()[:EVENTS] == [x.decode() for x in sent]  # in order
        await wait_metric(probe, "probepair_spool_bytes", 0, timeout=10)
        assert await probe.stop() == 0
        nursery.cancel_scope.cancel()
    assert server.summaries() == [x.decode() for x in sent]  # once each


async def test_a_running_probe_spools_while_the_sink_is_down_and_a_kill9_mid_spool_loses_nothing(
        tmp_path: Path) -> None:
    sink_port = free_port(socket.SOCK_STREAM)
    server = TcpSinkServer(sink_port)
    first, second = _lines("one", EVENTS), _lines("two", EVENTS)
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, _args(tmp_path, sink_port), cwd=tmp_path)
        await _feed_and_wait_accepted(probe, first)
        # The spool grows while the sink is down (fsynced, README "Sinks").
        with trio.fail_after(20):
            while (await scrape(probe)).get("probepair_spool_bytes", 0) == 0:
                await trio.sleep(0.05)
        await kill9(probe)  # mid-spool: no drain, no clean stop
        probe = await start_probe(nursery, _args(tmp_path, sink_port), cwd=tmp_path)
        await _feed_and_wait_accepted(probe, second)
        grown = (await scrape(probe))["probepair_spool_bytes"]
        assert grown > 0
        # The sink returns while the probe runs: replay in order, then live delivery.
        await nursery.start(server.run)
        await server.wait_for(2 * EVENTS)
        await wait_metric(probe, "probepair_spool_bytes", 0, timeout=10)
        assert (await scrape(probe))["probepair_sink_healthy"] == 1
        assert await probe.stop() == 0
        nursery.cancel_scope.cancel()
    got = server.summaries()
    assert got == [x.decode() for x in first + second]
