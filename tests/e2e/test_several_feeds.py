"""A pair whose probes each listen on UDP and TCP at once (``Feeds``, issue 23 item 4).

- **Crossed**: a sender sends the same numbered messages over UDP to the master and
  over TCP to the slave. The key is the payload's, whatever carried it, so both probes
  key each message alike: the master delivers every one, the standby drops them as
  acked, and the two sinks together hold each message exactly once.
- **Both over both**: each message goes over UDP and over TCP to both probes. Each
  probe gets two copies and numbers them 0 and 1 with its one key maker (shared by its
  feeds), as the peer numbers its two copies: the sinks hold each message twice (once
  per copy sent, two keys), each key exactly once. That is the documented rule: a
  sender that sends a message twice sent two events (README "Several feeds").

Each alert also carries ``$PeerAddress`` and ``$PeerPort`` (the rules file below), and
the rule that matches on ``$PeerAddress`` holds for every event. Loopback only; real
clock, every wait bounded.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest
import trio

from probepair.events import key_of
from tests.e2e.procs import (
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    free_port,
    loopback_pair,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.scenarios import start_pair
from tests.e2e.sinkcheck import count, wait_delivered

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
DELIVERY_TIMEOUT = 15.0
COUNT = 300  # messages per scenario
RECEIVED = "probepair_events_received_total"
BUFFERED = "probepair_buffer_depth"
RULES = """\
@Summary = $Line
@PeerAddress = $PeerAddress
@PeerPort = $PeerPort
@FeedType = %FeedType
if (match($PeerAddress, "127.0.0.1")) {
    @FromLoopback = 1
}
"""
# The one-feed options PairSide.args gives, replaced by Feeds in a props file.
SHORTHAND = ("--feedaddress", "--feedport", "--feedformat", "--rulesfile")


def feeds_of(side: PairSide) -> dict[str, int]:
    """The udp and tcp ports of ``side`` (udp: the port loopback_pair chose)."""
    return {"udp": side.feed_port, "tcp": free_port(socket.SOCK_STREAM)}


def side_args(side: PairSide, peer: PairSide, ports: dict[str, int]) -> list[str]:
    args = side.args(peer, TIMINGS)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in SHORTHAND:
            skip = True
        else:
            kept.append(arg)
    rules = side.cwd / "peer.rules"
    rules.write_text(RULES)
    props = side.cwd / "feeds.props"
    props.write_text(
        "Feeds:\n"
        + "".join(f"  - {{FeedType: {kind}, FeedAddress: 127.0.0.1, FeedPort: {port}, "
                  "FeedFormat: line}\n" for kind, port in ports.items())
        + f"RulesFile: {rules}\n"
    )
    return ["--props", str(props), *kept]


def messages(tag: str) -> list[bytes]:
    return [f"<13>Nov 22 10:00:00 host app: {tag} message {i:04d}".encode()
            for i in range(COUNT)]


async def send_udp(port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, payload in enumerate(payloads):
            sock.sendto(payload + b"\n", ("127.0.0.1", port))
            if i % 50 == 49:
                await trio.sleep(0.005)  # paced: loopback never drops, the test is not a flood


async def send_tcp(port: int, payloads: list[bytes]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"".join(p + b"\n" for p in payloads))


async def wait_received(probe: ProbeProcess, value: float) -> None:
    """Until ``probe`` has taken ``value`` events (its own self-events included)."""
    with trio.fail_after(DELIVERY_TIMEOUT):
        while True:
            if (await scrape(probe)).get(RECEIVED, 0) >= value:
                return
            await trio.sleep(0.05)  # polling /metrics: nothing else tells


def alerts(*paths: Path) -> list[dict[str, object]]:
    out = []
    for path in paths:
        if path.exists():
            for line in path.read_text().splitlines():
                alert = json.loads(line)
                if alert.get("Manager") != "ProbeWatch":
                    out.append(alert)
    return out


async def test_the_same_messages_over_udp_to_one_probe_and_tcp_to_the_other(
    tmp_path: Path,
) -> None:
    m, s = loopback_pair(tmp_path)
    ports = {m.name: feeds_of(m), s.name: feeds_of(s)}

    async def start_side(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
        return await start_probe(nursery, side_args(side, peer, ports[side.name]), cwd=side.cwd)

    crossed = messages("crossed")
    both = messages("both")
    async with trio.open_nursery() as nursery:
        master, slave = await start_pair(nursery, start_side, m, s)
        # The READY line lists every feed's address, in Feeds order.
        for probe, side in ((master, m), (slave, s)):
            assert probe.addresses["feed"] == ",".join(
                f"127.0.0.1:{port}" for port in ports[side.name].values())
        base = [(await scrape(p)).get(RECEIVED, 0) for p in (master, slave)]

        # Crossed: UDP to the master, TCP to the slave.
        async with trio.open_nursery() as senders:
            senders.start_soon(send_udp, ports[m.name]["udp"], crossed)
            senders.start_soon(send_tcp, ports[s.name]["tcp"], crossed)
        crossed_keys = [key_of(p).hex() for p in crossed]
        await wait_delivered(crossed_keys, [m.sink, s.sink], DELIVERY_TIMEOUT)
        await wait_received(slave, base[1] + COUNT)
        await wait_metric(slave, BUFFERED, 0, DELIVERY_TIMEOUT)  # all acked, dropped
        first = count(crossed_keys, [m.sink, s.sink])

        # Both over both: every message over UDP and TCP, to each probe.
        async with trio.open_nursery() as senders:
            for side in (m, s):
                senders.start_soon(send_udp, ports[side.name]["udp"], both)
                senders.start_soon(send_tcp, ports[side.name]["tcp"], both)
        both_keys = [key_of(p, i).hex() for p in both for i in (0, 1)]
        await wait_delivered(both_keys, [m.sink, s.sink], DELIVERY_TIMEOUT)
        await wait_received(slave, base[1] + 3 * COUNT)
        await wait_metric(slave, BUFFERED, 0, DELIVERY_TIMEOUT)
        second = count(crossed_keys + both_keys, [m.sink, s.sink])
        assert (await scrape(slave))[STANDBY] == 1  # no takeover all along
        assert await slave.stop() == 0
        assert await master.stop() == 0

    assert (first.lost, first.duplicates, first.unexpected) == ([], 0, 0), first
    assert (second.lost, second.duplicates, second.unexpected) == ([], 0, 0), second
    written = alerts(m.sink, s.sink)
    # Each message: once when sent once to each probe, twice when sent twice.
    texts = Counter(str(a["Summary"]) for a in written)
    assert {texts[p.decode()] for p in crossed} == {1}
    assert {texts[p.decode()] for p in both} == {2}
    # Every alert knows its sender; the loopback rule held for every one.
    assert {a["PeerAddress"] for a in written} == {"127.0.0.1"}
    assert all(a.get("FromLoopback") == 1 and int(str(a["PeerPort"])) > 0 for a in written)
    assert {a["FeedType"] for a in written} == {"udp", "tcp"}
