"""Syslog over TCP and TLS from real senders to a pair, and through kill -9 (issue 23).

- A real rsyslogd forwards to both probes of a pair with ``TCP_Framing="octet-counted"``,
  in clear and over TLS with the ``gtls`` and ``ossl`` stream drivers (a CA made in the
  test; the probes require client certificates, FeedTLSCA). A second sender sends the
  same bytes to both: ``logger --tcp --octet-count`` in clear, ``openssl s_client`` over
  TLS (and one without a client certificate, refused). Every message is one event,
  multi-line ones intact, and the standby held exactly the keys the master delivered.
- A pair fed by rsyslog over TCP (and TLS) through kill -9 cycles of the master: what
  rsyslog wrote while the master was down reached a sink (the slave had it), nothing
  is lost; what rsyslog replays into the restarted master is counted (duplicates).
- One probe alone, killed under the same sender: what TCP had acked but the probe had
  not delivered is lost. That is what a pair covers and TCP cannot promise.

Loopback only; real clock, every wait bounded.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from probepair.events import key_of
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    kill9,
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.rsyslog import RsyslogFeeder, config, need_driver, start_rsyslog
from tests.e2e.scenarios import kill_cycles
from tests.e2e.sinkcheck import count, wait_delivered
from tests.net import free_tcp_port
from tests.servers import need
from tests.tlscerts import CertAuthority

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
TOOL_TIMEOUT = 20.0
RECEIVED = "probepair_events_received_total"
OCTET = 'probepair_feed_framing_detected_total{framing="octet-counted"}'
NEWLINE = 'probepair_feed_framing_detected_total{framing="newline"}'
CERT_FAILED = 'probepair_feed_tls_handshake_failures_total{reason="certificate"}'
TRACE = (b"<11>Oct 11 22:14:15 app1 java[9]: Exception in thread main\n"
         b"\tat A.b(A.java:1)\n\tat C.d(C.java:2)")


def tcp_pair(tmp_path: Path) -> tuple[PairSide, PairSide]:
    m, s = loopback_pair(tmp_path)
    return replace(m, feed_port=free_tcp_port()), replace(s, feed_port=free_tcp_port())


class Tls:
    """The test CA, the probes' certificate and rsyslog's client certificate."""

    def __init__(self, directory: Path) -> None:
        self.ca = CertAuthority(directory)
        self.server = self.ca.issue("localhost")
        self.client = self.ca.issue("rsyslog", client=True)

    def args(self) -> list[str]:
        return ["--feedtlscert", str(self.server.cert), "--feedtlskey", str(self.server.key),
                "--feedtlsca", str(self.ca.pem)]


def fed(sink: Path) -> list[dict[str, str]]:
    if not sink.exists():
        return []
    data = sink.read_bytes()
    alerts = [json.loads(x) for x in data[: data.rfind(b"\n") + 1].splitlines()]
    return [a for a in alerts if a.get("Manager") != "ProbeWatch"]


async def run_tool(*cmd: str, stdin: bytes = b"") -> trio.CompletedProcess[bytes]:
    with trio.fail_after(TOOL_TIMEOUT):
        return await trio.run_process(list(cmd), stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False)


async def second_sender(transport: str, port: int, tls: Tls | None, text: bytes) -> None:
    """``text`` to the probe on ``port`` once, octet-counted: logger, or s_client."""
    if tls is None:
        logger = need("logger", "bsdutils")
        # No timestamp, no time quality: the same bytes to both probes, the same key.
        done = await run_tool(logger, "--tcp", "--octet-count", "--rfc5424=notime,notq",
                              "-n", "127.0.0.1", "-P", str(port), "-t", "second", text.decode())
    else:
        openssl = need("openssl", "openssl")
        frame = b"%d %s" % (len(text), text)
        done = await run_tool(openssl, "s_client", "-connect", f"127.0.0.1:{port}",
                              "-servername", "localhost", "-verify_return_error",
                              "-CAfile", str(tls.ca.pem), "-cert", str(tls.client.cert),
                              "-key", str(tls.client.key), "-no_ign_eof", stdin=frame)
    assert done.returncode == 0, done.stderr.decode()


async def refused_s_client(port: int, tls: Tls) -> None:
    """s_client without a client certificate: the probe refuses the handshake."""
    openssl = need("openssl", "openssl")
    await run_tool(openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                   "localhost", "-CAfile", str(tls.ca.pem), "-no_ign_eof",
                   stdin=b"11 <13>refused")


@pytest.mark.parametrize("transport", ["tcp", "gtls", "ossl"])
async def test_rsyslog_and_a_second_sender_to_both_probes_of_a_pair(
        tmp_path: Path, transport: str) -> None:
    tls = None
    if transport != "tcp":
        need_driver(transport)
        tls = Tls(tmp_path)
    m, s = tcp_pair(tmp_path)
    extra = ["--feedtype", "tcp", *(tls.args() if tls else [])]
    in_port = free_tcp_port()
    messages = [b"<13>Oct 11 22:14:15 web1 app[7]: %s message %d" % (transport.encode(), i)
                for i in range(50)] + [TRACE]
    second = f"second sender over {transport}\nits second line".encode()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, TIMINGS, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, TIMINGS, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        rsyslog = await start_rsyslog(nursery, tmp_path, in_port, config(
            tmp_path / "rsyslog", in_port, [("127.0.0.1", m.feed_port), ("127.0.0.1", s.feed_port)],
            driver="" if tls is None else transport, ca=tls and tls.ca,
            client=tls and tls.client))
        source = await trio.open_tcp_stream("127.0.0.1", in_port)
        async with source:  # octet-counted into rsyslog too: the trace keeps its lines
            await source.send_all(b"".join(b"%d %s" % (len(x), x) for x in messages))
        for side in (m, s):
            await second_sender(transport, side.feed_port, tls, second)
            if tls is not None:
                await refused_s_client(side.feed_port, tls)
        expected = len(messages) + 1
        with trio.fail_after(DELIVERY_TIMEOUT):
            while len(fed(m.sink)) < expected:  # noqa: ASYNC110 (a file other processes write)
                await trio.sleep(0.05)
        # The slave held the very keys the master delivered: every one acked away.
        await wait_metric(slave, "probepair_duplicates_avoided_total", expected, DELIVERY_TIMEOUT)
        await wait_metric(slave, "probepair_buffer_depth", 0, 5)
        samples = [await scrape(p) for p in (master, slave)]
        rsyslog.terminate()
        assert await slave.stop() == 0
        assert await master.stop() == 0
    alerts = fed(m.sink)
    lines = [a["Line"].encode() for a in alerts]
    assert len(lines) == len(messages) + 1
    assert sorted(x for x in lines if x in messages) == sorted(messages)  # each once
    assert TRACE in lines  # one event, its lines intact
    (from_second,) = [x for x in lines if x not in messages]
    assert from_second.endswith(second) and b"\n" in from_second
    assert all(a["EventKey"] == key_of(x).hex() for a, x in zip(alerts, lines, strict=True))
    assert fed(s.sink) == []
    for got in samples:
        assert got[RECEIVED] == expected
        assert (got[OCTET], got[NEWLINE]) == (2, 0)  # rsyslog's connection and the second's
        assert sum(v for k, v in got.items()
                   if k.startswith("probepair_feed_frames_rejected_total")) == 0
        assert got["probepair_gap_fills_total"] == 0
        assert got.get(CERT_FAILED, 0) == (0 if tls is None else 1)


# -- kill -9 -------------------------------------------------------------------------

RATE = 500  # messages per second into rsyslog
CYCLES = 3


def tally(sinks: list[Path], feeder: RsyslogFeeder) -> tuple[int, list[int], int]:
    """(lines written, seqs missing, keys written more than once) of this run."""
    result = count(feeder.keys(), sinks)
    return sum(result.per_file), feeder.seqs(result.lost), result.duplicates


@pytest.mark.parametrize("transport", ["tcp", "ossl"])
async def test_a_pair_fed_by_rsyslog_through_kill9_cycles_loses_nothing(
        tmp_path: Path, transport: str) -> None:
    tls = None
    if transport != "tcp":
        need_driver(transport)
        tls = Tls(tmp_path)
    m, s = tcp_pair(tmp_path)
    extra = ["--feedtype", "tcp", *(tls.args() if tls else [])]
    in_port = free_tcp_port()
    feeder = RsyslogFeeder([("127.0.0.1", in_port)], rate=RATE)

    async def start(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
        return await start_probe(nursery, side.args(peer, TIMINGS, extra=extra), cwd=side.cwd)

    async with trio.open_nursery() as nursery:
        master = await start(nursery, m, s)
        slave = await start(nursery, s, m)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        rsyslog = await start_rsyslog(nursery, tmp_path, in_port, config(
            tmp_path / "rsyslog", in_port, [("127.0.0.1", m.feed_port), ("127.0.0.1", s.feed_port)],
            driver="" if tls is None else transport, ca=tls and tls.ca,
            client=tls and tls.client))
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        cycles = await kill_cycles(lambda: start(nursery, m, s), master, slave, feeder,
                                   CYCLES, TIMINGS)
        await feeder.wait_traffic(1.0)
        feeder.stop()
        result = await wait_delivered(feeder.keys(), [m.sink, s.sink], DELIVERY_TIMEOUT)
        # rsyslog replays its queue into each restarted master: let that finish too.
        with trio.move_on_after(5):
            while (await scrape(slave))[RECEIVED] < feeder.sent:  # noqa: ASYNC110 (another process)
                await trio.sleep(0.1)
        await trio.sleep(2.0)  # the replay's duplicates, if any, land meanwhile
        got = [await scrape(p) for p in (cycles.master, slave)]
        rsyslog.terminate()
        assert await slave.stop() == 0
        assert await cycles.master.stop() == 0
    written, missing, duplicates = tally([m.sink, s.sink], feeder)
    print(f"\nrsyslog -> pair over {transport}, {RATE} msg/s, {CYCLES} kill -9 cycles: "
          f"sent {feeder.sent}, written {written}, missing {len(missing)}, written twice "
          f"{duplicates}; slave received {got[1][RECEIVED]:.0f}, last master received "
          f"{got[0][RECEIVED]:.0f}; takeovers {', '.join(f'{t:.2f}' for t in cycles.takeovers)}"
          f" s, failbacks {', '.join(f'{t:.2f}' for t in cycles.failbacks)} s")
    assert missing == [], missing
    assert result.unexpected == 0
    assert got[1][RECEIVED] == feeder.sent  # the slave's connection never broke


async def test_one_probe_alone_killed_under_rsyslog_loses_only_what_tcp_had_acked(
        tmp_path: Path) -> None:
    """The bound of what TCP promises: rsyslog queues and replays what it could not
    write, but what the kernel had acked for the dead probe is gone."""
    m, _ = tcp_pair(tmp_path)
    args = ["--name", "alone", "--feedtype", "tcp", "--feedaddress", "127.0.0.1",
            "--feedport", str(m.feed_port), "--feedformat", "line", "--rulesfile", "",
            "--sinkfile", str(m.sink), "--messagelog", str(m.log),
            "--metricsaddress", "127.0.0.1", "--metricsport", str(m.metrics_port)]
    in_port = free_tcp_port()
    feeder = RsyslogFeeder([("127.0.0.1", in_port)], rate=RATE)
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, args, cwd=m.cwd)
        rsyslog = await start_rsyslog(nursery, tmp_path, in_port, config(
            tmp_path / "rsyslog", in_port, [("127.0.0.1", m.feed_port)]))
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(1.0)
        at_kill = feeder.sent
        await kill9(probe)
        await feeder.wait_traffic(1.0)  # down for a second, rsyslog goes on writing
        at_restart = feeder.sent
        probe = await start_probe(nursery, args, cwd=m.cwd)
        await feeder.wait_traffic(1.0)
        feeder.stop()
        await wait_delivered(feeder.keys(at_restart), [m.sink], DELIVERY_TIMEOUT)
        await trio.sleep(1.0)
        rsyslog.terminate()
        assert await probe.stop() == 0
    written, missing, duplicates = tally([m.sink], feeder)
    span = f"seq {missing[0]}-{missing[-1]}" if missing else "none"
    print(f"\nrsyslog -> one probe over tcp, {RATE} msg/s, one kill -9 for 1 s: sent "
          f"{feeder.sent}, written {written}, missing {len(missing)} ({span}; killed at "
          f"seq {at_kill}, restarted at {at_restart}), written twice {duplicates}")
    # Everything rsyslog wrote after the probe was back arrived; what is missing was
    # accepted by the dead probe's kernel, or queued in it, around the kill.
    assert all(seq < at_restart for seq in missing), missing
