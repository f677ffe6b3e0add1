"""Fault scenarios for a real loopback pair, shared by the e2e tests and bench/failover.py.

Each scenario starts two ``probepair run`` processes, feeds both the same numbered
events, breaks the pair the way production does (a stall, a full socket, kill -9, a
replay, a dead sink), and counts every event at the end. The tests assert on the
result; the bench prints it as a row.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.e2e.feeder import Feeder
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
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.sinkcheck import count, duplicated, wait_delivered

FAST = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2, ack_interval=0.1)
# As the issue measured: takeover bound 3 s (1.5 s stalls stay below it, see stall_below_bound).
SLOW = Timings(beat_interval=1.0, beat_threshold=1.0, heartbeat_timeout=1.0, ack_interval=0.1)
SMALL_RCVBUF = ["--feedrcvbuf", "32768"]  # ~50 datagrams: a stall overflows the socket
START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
REJECTED = 'probepair_heartbeats_rejected_total{reason="%s"}'


@dataclass
class FaultResult:
    """What a scenario did and what the sinks hold at the end.

    Attributes:
        name: the scenario.
        rate: events per second sent to both probes.
        sent: events sent.
        lost: sequence numbers of sent events in no sink.
        duplicates: extra copies over all events.
        duplicates_after: extra copies among the events sent after the fault ended
            (a failback or resumption must add none).
        switch: seconds the role change took (takeover, handover), or None.
        master, slave: each probe's /metrics samples at the end.
        notes: what else the scenario measured.
    """

    name: str
    rate: float
    sent: int = 0
    lost: list[int] = field(default_factory=list)
    duplicates: int = 0
    duplicates_after: int = 0
    unexpected: int = 0
    switch: float | None = None
    master: dict[str, float] = field(default_factory=dict)
    slave: dict[str, float] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def gap_fills(self) -> float:
        return self.master.get("probepair_gap_fills_total", 0) + self.slave.get(
            "probepair_gap_fills_total", 0)

    def row(self) -> str:
        switch = "-" if self.switch is None else f"{self.switch:.3f}"
        return (f"{self.name:<28} {self.rate:>7.0f} {self.sent:>7} {len(self.lost):>5} "
                f"{self.duplicates:>6} {self.duplicates_after:>6} {self.gap_fills:>7.0f} "
                f"{switch:>7}")


HEADER = (f"{'fault':<28} {'rate/s':>7} {'sent':>7} {'lost':>5} {'dups':>6} {'after':>6} "
          f"{'gapfill':>7} {'switch':>7}")


async def _start_pair(nursery: trio.Nursery, m: PairSide, s: PairSide, timings: Timings,
                      m_extra: list[str] | None = None, s_extra: list[str] | None = None,
                      ) -> tuple[ProbeProcess, ProbeProcess]:
    master = await start_probe(nursery, m.args(s, timings, extra=m_extra or []), cwd=m.cwd)
    slave = await start_probe(nursery, s.args(m, timings, extra=s_extra or []), cwd=s.cwd)
    await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
    await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
    return master, slave


def _feeder(m: PairSide, s: PairSide, rate: float) -> Feeder:
    return Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=rate)


def _count(result: FaultResult, feeder: Feeder, sinks: list[Path], after: int) -> None:
    counted = count(feeder.keys(), sinks)
    again = duplicated(sinks, among=feeder.keys(after))
    result.sent = counted.sent
    result.lost = feeder.seqs(counted.lost)
    result.duplicates = counted.duplicates
    result.duplicates_after = sum(again.values()) - len(again)
    result.unexpected = counted.unexpected


async def _settle(master: ProbeProcess, slave: ProbeProcess, feeder: Feeder,
                  sinks: list[Path], result: FaultResult) -> None:
    feeder.stop()
    await wait_delivered(feeder.keys(), sinks, DELIVERY_TIMEOUT)
    result.master, result.slave = await scrape(master), await scrape(slave)


async def stall_below_bound(tmp: Path, rate: float = 1000, stall: float = 1.5) -> FaultResult:
    """SIGSTOP the master for less than the bound while its socket overflows.

    The slave's silence counts from the master's last beat, up to a BeatInterval before
    the stop: a stall of bound - BeatInterval - 0.5 s never reaches the bound.
    """
    result = FaultResult(f"stall {stall:g} s < bound", rate)
    m, s = loopback_pair(tmp)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        master, slave = await _start_pair(nursery, m, s, SLOW, m_extra=SMALL_RCVBUF)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        master.signal(signal.SIGSTOP)
        await trio.sleep(stall)
        master.signal(signal.SIGCONT)
        after = feeder.sent
        await feeder.wait_traffic(2.0)
        await _settle(master, slave, feeder, [m.sink, s.sink], result)
        await slave.stop()
        await master.stop()
    _count(result, feeder, [m.sink, s.sink], after)
    return result


async def stall_past_bound(tmp: Path, rate: float = 1000, stall: float = 12.0) -> FaultResult:
    """SIGSTOP the master far past the bound: takeover, then the failback at SIGCONT."""
    result = FaultResult(f"stall {stall:g} s > bound", rate)
    m, s = loopback_pair(tmp)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        master, slave = await _start_pair(nursery, m, s, FAST, m_extra=SMALL_RCVBUF)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        stopped_at = trio.current_time()
        master.signal(signal.SIGSTOP)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        result.switch = trio.current_time() - stopped_at
        await trio.sleep(max(0.0, stall - result.switch))
        after = feeder.sent
        continued_at = trio.current_time()
        master.signal(signal.SIGCONT)
        with trio.fail_after(10 * FAST.bound + 5):
            while await active_flags(master, slave) != [1, 0]:
                await trio.sleep(0.02)
        result.notes["failback"] = trio.current_time() - continued_at
        await feeder.wait_traffic(1.0)
        await _settle(master, slave, feeder, [m.sink, s.sink], result)
        await slave.stop()
        await master.stop()
    _count(result, feeder, [m.sink, s.sink], after)
    return result


async def kill9_failback(tmp: Path, rate: float = 1000) -> FaultResult:
    """kill -9 the master under load, then restart it: takeover and handshake failback."""
    result = FaultResult("kill -9, restart", rate)
    m, s = loopback_pair(tmp)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        master, slave = await _start_pair(nursery, m, s, FAST)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        killed_at = trio.current_time()
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        result.switch = trio.current_time() - killed_at
        await feeder.wait_traffic(0.5)
        after = feeder.sent
        restarted_at = trio.current_time()
        master = await start_probe(nursery, m.args(s, FAST), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, 5 * FAST.bound + 5)
        await wait_metric(slave, STANDBY, 1, 5)
        result.notes["failback"] = trio.current_time() - restarted_at
        await feeder.wait_traffic(0.5)
        await _settle(master, slave, feeder, [m.sink, s.sink], result)
        await slave.stop()
        await master.stop()
    _count(result, feeder, [m.sink, s.sink], after)
    return result


class Relay:
    """UDP relay on the heartbeat path between master and slave that records every
    datagram of the master's and can withhold them (captured, never delivered), as an
    attacker on the link would. Both probes have it as their PeerHost:PeerPort: a probe
    hears only datagrams from its peer's address (issue 19), and the relay's is the
    address the slave hears the master from, replays included."""

    def __init__(self, target: tuple[str, int], master: tuple[str, int]) -> None:
        self.target = target
        self.master = master
        self.port = free_port()
        self.recorded: list[bytes] = []
        self.withheld: list[bytes] = []
        self.withholding = False
        self._sock: trio.socket.SocketType | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", self.port))
            self._sock = sock
            task_status.started()
            while True:
                try:
                    data, source = await sock.recvfrom(2048)
                except ConnectionRefusedError:
                    continue  # a probe was down when we forwarded to it
                if tuple(source) == self.target:
                    await sock.sendto(data, self.master)
                    continue
                if self.withholding:
                    self.withheld.append(data)
                    continue
                self.recorded.append(data)
                await sock.sendto(data, self.target)

    async def withhold(self, seconds: float) -> None:
        self.withholding = True
        await trio.sleep(seconds)
        self.withholding = False

    async def replay(self, datagrams: list[bytes]) -> None:
        assert self._sock is not None
        for data in datagrams:
            await self._sock.sendto(data, self.target)
            await trio.sleep(0.001)


async def replay(tmp: Path, rate: float = 200) -> FaultResult:
    """Capture the master's datagrams over two boots (some never delivered), kill it,
    and replay everything at the slave that took over: nothing may change."""
    result = FaultResult("replay of 2 boots", rate)
    m, s = loopback_pair(tmp)
    relay = Relay((s.host, s.heartbeat_port), (m.host, m.heartbeat_port))
    via_relay = PairSide(s.name, s.mode, s.host, relay.port, s.feed_port, s.metrics_port, s.cwd)
    m_via_relay = PairSide(m.name, m.mode, m.host, relay.port, m.feed_port, m.metrics_port,
                           m.cwd)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        master, slave = await _start_pair_via(nursery, m, s, via_relay, m_via_relay)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        await relay.withhold(0.15)  # boot 1: captured, never delivered
        await feeder.wait_traffic(0.5)
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        master = await start_probe(nursery, m.args(via_relay, FAST), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, 5 * FAST.bound + 5)
        await feeder.wait_traffic(0.5)
        boot1_withheld = len(relay.withheld)
        await relay.withhold(0.15)  # boot 2: captured, never delivered
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        before = await scrape(slave)
        captured = relay.recorded + relay.withheld
        await relay.replay(captured)  # everything, of both boots, delivered or not
        await trio.sleep(FAST.bound)  # a replay that counted would have re-armed a timer
        after_replay = await scrape(slave)
        feeder.stop()
        await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        result.slave = after_replay
        await slave.stop()
        nursery.cancel_scope.cancel()  # the relay
    _count(result, feeder, [m.sink, s.sink], feeder.sent)
    for reason in ("replay", "stale", "unfresh"):
        result.notes[reason] = after_replay[REJECTED % reason] - before[REJECTED % reason]
    for name in ("probepair_failovers_total", "probepair_heartbeats_received_total"):
        result.notes[f"{name} changed"] = after_replay[name] - before[name]
    result.notes["replayed"] = len(captured)
    result.notes["withheld boot 2"] = len(relay.withheld) - boot1_withheld
    return result


async def _start_pair_via(nursery: trio.Nursery, m: PairSide, s: PairSide, via: PairSide,
                          m_via: PairSide) -> tuple[ProbeProcess, ProbeProcess]:
    master = await start_probe(nursery, m.args(via, FAST), cwd=m.cwd)
    slave = await start_probe(nursery, s.args(m_via, FAST), cwd=s.cwd)
    await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
    await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
    return master, slave


async def start_http_sink(nursery: trio.Nursery, port: int, path: Path,
                          delay: float = 0.0) -> trio.Process:
    """``tests/e2e/httpsink.py`` on ``port`` appending to ``path``; answers each POST
    ``delay`` seconds late (a slow sink). Ready when this returns."""
    cmd = [sys.executable, "-m", "tests.e2e.httpsink", str(port), str(path), str(delay)]
    process: trio.Process = await nursery.start(lambda task_status: trio.run_process(
        cmd, check=False, stdout=subprocess.PIPE, task_status=task_status))
    assert process.stdout is not None
    with trio.fail_after(10):
        assert (await process.stdout.receive_some(64)).startswith(b"READY")
    return process


def sink_down(server: trio.Process) -> None:
    """The collector refuses every POST from now on (503, nothing stored): a sink that is
    down, as opposed to one that crashes with a POST it stored but never answered, which
    any plain sink may then get twice (the probe cannot know it was stored)."""
    server.send_signal(signal.SIGUSR1)


def sink_up(server: trio.Process) -> None:
    server.send_signal(signal.SIGUSR2)


async def sink_failover(tmp: Path, rate: float = 200) -> FaultResult:
    """Each probe posts to its own HTTP sink server; the master's dies, later returns."""
    result = FaultResult("master's sink dies", rate)
    m, s = loopback_pair(tmp)
    ports, files = _http_sinks(tmp)

    def http(side: str) -> list[str]:
        return _http_args(ports[side], 1.0)

    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        servers = {side: await start_http_sink(nursery, ports[side], files[side])
                   for side in ("m", "s")}
        master, slave = await _start_pair(nursery, m, s, FAST, http("m"), http("s"))
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        died_at = trio.current_time()
        servers["m"].kill()  # the master's sink dies
        await wait_metric(slave, ACTIVE, 1, 10)
        result.switch = trio.current_time() - died_at
        result.notes["handovers(sink) at switch"] = (await scrape(master))[
            'probepair_handovers_total{reason="sink"}']
        await feeder.wait_traffic(1.0)
        servers["m"] = await start_http_sink(nursery, ports["m"], files["m"])
        back_at = trio.current_time()
        await wait_metric(master, ACTIVE, 1, 15)  # healthy for SinkFailover: takes it back
        await wait_metric(slave, STANDBY, 1, 5)
        result.notes["taken back after sink returned"] = trio.current_time() - back_at
        after = feeder.sent
        await feeder.wait_traffic(0.5)
        sinks = list(files.values())
        await _settle(master, slave, feeder, sinks, result)
        await slave.stop()
        await master.stop()
        for server in servers.values():
            server.kill()
    _count(result, feeder, list(files.values()), after)
    return result


def _http_sinks(tmp: Path) -> tuple[dict[str, int], dict[str, Path]]:
    ports = {"m": free_port(socket.SOCK_STREAM), "s": free_port(socket.SOCK_STREAM)}
    return ports, {"m": tmp / "m-server.jsonl", "s": tmp / "s-server.jsonl"}


def _http_args(port: int, sink_failover: float) -> list[str]:
    return ["--sinktype", "http", "--sinkurl", f"http://127.0.0.1:{port}/",
            "--sinkfailover", str(sink_failover)]


async def _http_pair(nursery: trio.Nursery, m: PairSide, s: PairSide,
                     ports: dict[str, int], files: dict[str, Path], feeder: Feeder,
                     sink_failover: float,
                     ) -> tuple[dict[str, trio.Process], ProbeProcess, ProbeProcess]:
    """An http collector per probe, the pair posting to them, the feed running (1 s)."""
    servers = {side: await start_http_sink(nursery, ports[side], files[side])
               for side in ("m", "s")}
    master, slave = await _start_pair(
        nursery, m, s, FAST, _http_args(ports["m"], sink_failover),
        _http_args(ports["s"], sink_failover))
    nursery.start_soon(feeder.run)
    await feeder.wait_traffic(1.0)
    return servers, master, slave


async def master_sink_outage(tmp: Path, rate: float = 1000, outage: float = 8.0,
                             sink_failover: float = 3.0) -> FaultResult:
    """Issue 21: the master's sink is down ``outage`` s while the slave's works. The
    master hands over after SinkFailover, the slave flushes and delivers; the master's
    spool then holds what the slave delivered, and its replay must skip it."""
    result = FaultResult(f"master's sink down {outage:g}s", rate)
    m, s = loopback_pair(tmp)
    ports, files = _http_sinks(tmp)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        servers, master, slave = await _http_pair(nursery, m, s, ports, files, feeder,
                                                  sink_failover)
        died_at = trio.current_time()
        sink_down(servers["m"])
        await wait_metric(slave, ACTIVE, 1, sink_failover + 5)
        result.switch = trio.current_time() - died_at
        await trio.sleep_until(died_at + outage)
        sink_up(servers["m"])
        await wait_metric(master, ACTIVE, 1, sink_failover + 10)  # failback
        await feeder.wait_traffic(1.0)
        await _settle(master, slave, feeder, list(files.values()), result)
        result.notes["replay skipped"] = result.master.get("probepair_replay_skipped_total", 0)
        result.notes["handovers(sink)"] = result.master.get(
            'probepair_handovers_total{reason="sink"}', 0)
        await slave.stop()
        await master.stop()
        for server in servers.values():
            server.kill()
    _count(result, feeder, list(files.values()), 0)
    return result


async def both_sinks_down(tmp: Path, rate: float = 1000, outage: float = 15.0,
                          sink_failover: float = 3.0) -> FaultResult:
    """Issue 21: both sinks down ``outage`` s. The standby's checks find its own sink
    failing, so the master does not hand over into it (suppressed, counted); when the
    sinks return, the master replays its spool and the slave drops what it acked."""
    result = FaultResult(f"both sinks down {outage:g}s", rate)
    m, s = loopback_pair(tmp)
    ports, files = _http_sinks(tmp)
    feeder = _feeder(m, s, rate)
    async with trio.open_nursery() as nursery:
        servers, master, slave = await _http_pair(nursery, m, s, ports, files, feeder,
                                                  sink_failover)
        died_at = trio.current_time()
        for server in servers.values():
            sink_down(server)
        await trio.sleep_until(died_at + outage)
        result.notes["slave sink healthy while down"] = (await scrape(slave))[
            "probepair_sink_healthy"]
        for server in servers.values():
            sink_up(server)
        await feeder.wait_traffic(2.0)
        await _settle(master, slave, feeder, list(files.values()), result)
        result.notes["handovers(sink)"] = result.master.get(
            'probepair_handovers_total{reason="sink"}', 0)
        result.notes["suppressed"] = result.master.get(
            'probepair_handovers_suppressed_total{reason="peer_sink"}', 0)
        result.notes["master active at end"] = result.master.get(ACTIVE, 0)
        await slave.stop()
        await master.stop()
        for server in servers.values():
            server.kill()
    _count(result, feeder, list(files.values()), 0)
    return result
