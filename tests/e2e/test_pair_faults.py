"""The pair under partial failures, with real processes: stalls, full sockets, replays,
a dead sink. Each test counts every numbered event at the end (DESIGN.md "Protocol v2").

The promise: an event is lost only if both probes missed it; a failback duplicates
nothing; a replayed datagram changes nothing; a master whose sink is dead is covered.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
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
from tests.e2e.sinkcheck import count, duplicated, read_keys, wait_delivered

pytestmark = pytest.mark.e2e

RATE = 1000  # events per second
FAST = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2, ack_interval=0.1)
# As the issue measured: takeover bound 3 s, so a 2 s stall stays below it.
SLOW = Timings(beat_interval=1.0, beat_threshold=1.0, heartbeat_timeout=1.0, ack_interval=0.1)
SMALL_RCVBUF = ["--feedrcvbuf", "32768"]  # ~50 datagrams: a stall overflows the socket
START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 15.0
# A takeover may duplicate what the master delivered in its last ack period (it could not
# ack it any more); with the drain to the sink and the ack's trip, three periods at most.
TAKEOVER_DUPLICATES = int(RATE * 3 * FAST.ack_interval)
REJECTED = 'probepair_heartbeats_rejected_total{reason="%s"}'


def report(what: str, text: str) -> None:
    print(f"\n{what}: {text}")


async def start_pair(nursery: trio.Nursery, m: PairSide, s: PairSide, timings: Timings,
                     m_extra: list[str] | None = None, s_extra: list[str] | None = None,
                     ) -> tuple[ProbeProcess, ProbeProcess]:
    master = await start_probe(nursery, m.args(s, timings, extra=m_extra or []), cwd=m.cwd)
    slave = await start_probe(nursery, s.args(m, timings, extra=s_extra or []), cwd=s.cwd)
    await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
    await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
    return master, slave


def feeder_for(m: PairSide, s: PairSide, rate: float = RATE) -> Feeder:
    return Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=rate)


async def test_a_stall_below_the_bound_that_overflows_the_masters_socket_loses_nothing(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s, SLOW, m_extra=SMALL_RCVBUF)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        stopped_at = feeder.sent
        master.signal(signal.SIGSTOP)
        await trio.sleep(2.0)  # below the 3 s bound: the slave must not take over
        master.signal(signal.SIGCONT)
        continued_at = feeder.sent
        await feeder.wait_traffic(2.0)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        ms, ss = await scrape(master), await scrape(slave)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    twice = feeder.seqs(duplicated([m.sink, s.sink]))
    report("stall 2 s, full socket", f"SIGSTOP at event {stopped_at}, SIGCONT at "
           f"{continued_at}; duplicated events {twice[:3]}..{twice[-3:]}; master kernel drops "
           f"{ms['probepair_feed_kernel_drops_total']:.0f}, slave gap fills "
           f"{ss['probepair_gap_fills_total']:.0f}; {result}")
    assert ms["probepair_feed_kernel_drops_total"] > 0  # the fault really happened
    assert ss["probepair_failovers_total"] == 0  # no takeover: the stall was short
    assert ss["probepair_gap_fills_total"] >= ms["probepair_feed_kernel_drops_total"]
    assert feeder.seqs(result.lost) == [] and result.unexpected == 0
    # The slave fills only what the master's deliveries passed by: nothing twice.
    assert result.duplicates == 0


async def test_a_12_s_stall_takes_over_fails_back_and_duplicates_nothing_after_it(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s, FAST, m_extra=SMALL_RCVBUF)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        master.signal(signal.SIGSTOP)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        await trio.sleep(12.0)
        resumed_from = feeder.sent
        master.signal(signal.SIGCONT)
        with trio.fail_after(10 * FAST.bound + 5):
            while await active_flags(master, slave) != [1, 0]:
                await trio.sleep(0.02)
        await feeder.wait_traffic(1.0)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        ms, ss = await scrape(master), await scrape(slave)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    after = duplicated([m.sink, s.sink], among=feeder.keys(resumed_from))
    report("stall 12 s", f"{result}; duplicates among events sent from SIGCONT on "
           f"{sum(after.values()) - len(after)}; master kernel drops "
           f"{ms['probepair_feed_kernel_drops_total']:.0f}; slave gap fills "
           f"{ss['probepair_gap_fills_total']:.0f}; split brains "
           f"{ms['probepair_split_brains_total']:.0f}/{ss['probepair_split_brains_total']:.0f}")
    assert feeder.seqs(result.lost) == [] and result.unexpected == 0
    assert after == {}  # the failback duplicates nothing
    assert result.duplicates <= TAKEOVER_DUPLICATES  # only the takeover's last ack period
    assert ms["probepair_split_brains_total"] == ss["probepair_split_brains_total"] == 0
    assert ss['probepair_handovers_total{reason="failback"}'] == 1


async def test_a_failback_after_kill9_duplicates_nothing(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    feeder = feeder_for(m, s)
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, m, s, FAST)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        await feeder.wait_traffic(0.5)
        restart_from = feeder.sent
        master = await start_probe(nursery, m.args(s, FAST), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, 5 * FAST.bound + 5)
        await wait_metric(slave, STANDBY, 1, 5)
        await feeder.wait_traffic(0.5)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    across = duplicated([m.sink, s.sink], among=feeder.keys(restart_from))
    report("kill -9 failback", f"{result}; duplicates across the failback "
           f"{sum(across.values()) - len(across)}")
    assert feeder.seqs(result.lost) == [] and result.unexpected == 0
    assert across == {}
    assert result.duplicates <= TAKEOVER_DUPLICATES


class Relay:
    """UDP relay on the master -> slave heartbeat path that records every datagram and
    can withhold them (captured, never delivered), as an attacker on the link would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.recorded: list[bytes] = []
        self.withheld: list[bytes] = []
        self.withholding = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", self.port))
            task_status.started()
            while True:
                data = await sock.recv(2048)
                if self.withholding:
                    self.withheld.append(data)
                    continue
                self.recorded.append(data)
                await sock.sendto(data, self.target)

    async def replay(self, datagrams: list[bytes]) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in datagrams:
                await sock.sendto(data, self.target)
                await trio.sleep(0.001)


async def test_replayed_datagrams_of_any_boot_delivered_or_not_change_nothing(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    relay = Relay((s.host, s.heartbeat_port))
    via_relay = PairSide(s.name, s.mode, s.host, relay.port, s.feed_port, s.metrics_port, s.cwd)
    feeder = feeder_for(m, s, rate=200)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        master = await start_probe(nursery, m.args(via_relay, FAST), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, FAST), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        # Boot 1: some datagrams are captured and never delivered.
        relay.withholding = True
        await trio.sleep(0.15)
        relay.withholding = False
        await feeder.wait_traffic(0.5)
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        # Boot 2: the master returns, takes the role back, more is captured; it dies.
        master = await start_probe(nursery, m.args(via_relay, FAST), cwd=m.cwd)
        await wait_metric(master, ACTIVE, 1, 5 * FAST.bound + 5)
        await feeder.wait_traffic(0.5)
        boot1_withheld = len(relay.withheld)
        relay.withholding = True
        await trio.sleep(0.15)
        relay.withholding = False
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, FAST.bound + 5)
        before = await scrape(slave)
        captured = relay.recorded + relay.withheld
        await relay.replay(captured)  # everything, of both boots, delivered or not
        await trio.sleep(FAST.bound)  # a replay that counted would have re-armed a timer
        after = await scrape(slave)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        assert await slave.stop() == 0
        nursery.cancel_scope.cancel()  # the relay
    rejected = {r: after[REJECTED % r] - before[REJECTED % r]
                for r in ("replay", "stale", "unfresh")}
    report("replay", f"{len(captured)} datagrams replayed ({len(relay.withheld)} never "
           f"delivered): rejected {rejected}; {result}")
    assert len(relay.withheld) > 0
    assert after[ACTIVE] == 1 and after['probepair_role{role="slave-active"}'] == 1
    assert after["probepair_failovers_total"] == before["probepair_failovers_total"]
    assert after["probepair_heartbeats_received_total"] == before[
        "probepair_heartbeats_received_total"]
    assert sum(rejected.values()) == len(captured)  # every one counted, none accepted
    # Boot 1's are refused as of an older boot; boot 2's never-delivered ones pass the
    # sequence check (never seen) and are refused as not provably fresh.
    assert rejected["unfresh"] >= len(relay.withheld) - boot1_withheld > 0
    assert feeder.seqs(result.lost) == [] and result.unexpected == 0


async def start_http_sink(nursery: trio.Nursery, port: int, path: Path) -> trio.Process:
    cmd = [sys.executable, "-m", "tests.e2e.httpsink", str(port), str(path)]
    process: trio.Process = await nursery.start(lambda task_status: trio.run_process(
        cmd, check=False, stdout=subprocess.PIPE, task_status=task_status))
    assert process.stdout is not None
    with trio.fail_after(10):
        assert (await process.stdout.receive_some(64)).startswith(b"READY")
    return process


async def test_a_master_whose_sink_dies_hands_over_to_the_slave_and_takes_it_back(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    ports = {"m": free_port(socket.SOCK_STREAM), "s": free_port(socket.SOCK_STREAM)}
    files = {"m": tmp_path / "m-server.jsonl", "s": tmp_path / "s-server.jsonl"}

    def http(side: str) -> list[str]:
        return ["--sinktype", "http", "--sinkurl", f"http://127.0.0.1:{ports[side]}/",
                "--sinkfailover", "1.0"]

    feeder = feeder_for(m, s, rate=200)
    async with trio.open_nursery() as nursery:
        servers = {side: await start_http_sink(nursery, ports[side], files[side])
                   for side in ("m", "s")}
        master, slave = await start_pair(nursery, m, s, FAST, http("m"), http("s"))
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        servers["m"].kill()  # the master's sink dies
        await wait_metric(slave, ACTIVE, 1, 10)
        await wait_metric(master, "probepair_sink_healthy", 0, 5)
        ms = await scrape(master)
        assert ms['probepair_handovers_total{reason="sink"}'] == 1
        await feeder.wait_traffic(1.0)
        servers["m"] = await start_http_sink(nursery, ports["m"], files["m"])
        # Healthy again for SinkFailover: the master takes the role back by handshake.
        await wait_metric(master, ACTIVE, 1, 15)
        await wait_metric(slave, STANDBY, 1, 5)
        await feeder.wait_traffic(0.5)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), files.values(), DELIVERY_TIMEOUT)
        ss = await scrape(slave)
        assert await slave.stop() == 0
        assert await master.stop() == 0
        for server in servers.values():
            server.kill()
    report("sink failover", f"{result}; slave handovers {ss}"[:400])
    assert feeder.seqs(result.lost) == [] and result.unexpected == 0
    assert ss['probepair_handovers_total{reason="failback"}'] == 1
    assert read_keys(files["s"])  # the slave's sink took the traffic meanwhile
