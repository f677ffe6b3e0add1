"""The snmp feed on real loopback sockets (real clock: every wait is under fail_after)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.config import props
from probepair.errors import ConfigError
from probepair.events import Batch, Event, key_of
from probepair.feeds import make_feed
from probepair.feeds.snmp import ber
from probepair.feeds.snmp.feed import SnmpFeed, load_usm
from probepair.metrics import Metrics

Clock = Callable[[], float]
VBS = ber.encode_varbinds([(".1.3.6.1.2.1.1.3.0", ber.TIMETICKS, 100),
                           (".1.3.6.1.6.3.1.1.4.1.0", ber.OID, ".1.3.6.1.6.3.1.1.5.1")])


def make(**values: object) -> props.Props:
    return props.load([("test", {"FeedType": "snmp", "FeedAddress": "127.0.0.1", "FeedPort": 0,
                                 "NoNameResolution": True, "BatchLatency": 0, **values})])


def v2c(tag: int, request_id: int, varbinds: bytes = VBS) -> bytes:
    return ber.encode_message(ber.V2C, b"public", ber.encode_pdu(tag, request_id, varbinds))


async def collect(recv: trio.MemoryReceiveChannel[Batch], n: int) -> list[Event]:
    events: list[Event] = []
    with trio.fail_after(5):
        while len(events) < n:
            events.extend(await recv.receive())
    return events


def test_snmp_defaults_to_port_162_and_validates_protocol() -> None:
    assert props.load([("f", {"FeedType": "snmp"})]).FeedPort == 162
    assert props.load([("f", {"FeedType": "snmp", "FeedPort": 1162})]).FeedPort == 1162
    assert props.load([("f", {"FeedType": "udp"})]).FeedPort == 5514
    with pytest.raises(ConfigError) as info:
        props.load([("conf/snmp.props", {"Protocol": "SCTP"})])
    assert str(info.value).startswith("conf/snmp.props: Protocol: expected one of UDP, TCP")
    with pytest.raises(ConfigError) as info:
        props.load([("conf/snmp.props", {"SnmpEngineID": "0x8000"})])
    assert str(info.value) == (
        "conf/snmp.props: SnmpEngineID: expected 5 to 32 octets in hex, got '0x8000'")
    with pytest.raises(ConfigError) as info:
        props.load([("conf/snmp.props", {"SnmpUser": "x"})])
    assert "conf/snmp.props: SnmpUser: unknown property" in str(info.value)


def test_a_bad_users_file_stops_the_start(tmp_path: Path, wall_clock: Clock) -> None:
    users = tmp_path / "users.conf"
    users.write_text("createUser ok SHA authpass123\ncreateUser bad SHA short\n")
    with pytest.raises(ConfigError) as info:
        make_feed(make(SnmpUsersFile=str(users)), wall_clock)
    assert str(info.value).startswith(f"{users}:2: SnmpUsersFile: line 2: pass phrases")


async def test_traps_informs_and_rejects(wall_clock: Clock) -> None:
    metrics = Metrics()
    feed = make_feed(make(), wall_clock, metrics)
    assert isinstance(feed, SnmpFeed)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            for data in (b"\x30\x03\x02\x01", b"not snmp", v2c(ber.GET, 1),
                         v2c(ber.TRAP_V2, 1), v2c(ber.TRAP_V2, 2)):
                await sock.sendto(data, (host, port))
            await sock.sendto(v2c(ber.INFORM, 77), (host, port))
            with trio.fail_after(5):
                answer, _ = await sock.recvfrom(65535)
            events = await collect(recv, 3)
            # The drop list: discarded unread, counted for the host.
            feed.control.drop_list_add("127.0.0.1")
            await sock.sendto(v2c(ber.TRAP_V2, 3), (host, port))
            with trio.fail_after(5):
                while feed.control.read_drop_count("127.0.0.1") < 1:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    response = ber.decode_message(answer)
    assert isinstance(response, ber.Message)
    assert (response.pdu.tag, response.pdu.request_id) == (ber.RESPONSE, 77)
    assert response.pdu.varbind_list == VBS
    # Two traps identical but for the request-id: the same payload, indexes 0 and 1
    # (the peer probe numbers them alike); the inform's differs by its PDU type.
    material = b"\x01" + ber.decode_message(v2c(ber.TRAP_V2, 1)).pdu.key_material  # type: ignore[union-attr]
    assert [ev.key for ev in events[:2]] == [key_of(material, 0), key_of(material, 1)]
    assert [ev.tokens["ReqId"] for ev in events] == ["1", "2", "77"]
    assert events[0].tokens["generic-trap"] == "0"
    assert metrics.count("probepair_snmp_rejected_total", reason="malformed") == 2
    assert metrics.count("probepair_snmp_rejected_total", reason="not_a_notification") == 1
    assert metrics.count("probepair_snmp_informs_answered_total") == 1
    assert metrics.count("probepair_snmp_dropped_total") == 1
    assert feed.control.get_queue_size() == 3  # nobody took them out


async def test_tcp_frames_and_answers_on_the_connection(wall_clock: Clock) -> None:
    feed = make_feed(make(Protocol="TCP"), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(feed.run, send)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            data = v2c(ber.TRAP_V2, 5) + v2c(ber.INFORM, 6)
            await stream.send_all(data[:7])  # split mid-message
            await stream.send_all(data[7:])
            with trio.fail_after(5):
                answer = await stream.receive_some(65535)
            events = await collect(recv, 2)
        nursery.cancel_scope.cancel()
    assert [ev.tokens["Protocol"] for ev in events] == ["TCP", "TCP"]
    response = ber.decode_message(answer)
    assert isinstance(response, ber.Message) and response.pdu.request_id == 6


async def test_ipv6_udp(wall_clock: Clock) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    feed = make_feed(make(FeedAddress="::1"), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        _host, port = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            await sock.sendto(v2c(ber.TRAP_V2, 1), ("::1", port))
            events = await collect(recv, 1)
        nursery.cancel_scope.cancel()
    assert events[0].tokens["PeerIPaddress"] == "::1"


async def test_names_are_resolved_off_the_event_path_and_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from probepair.feeds.snmp import names

    looked_up: list[str] = []

    def lookup(ip: str) -> str:  # no DNS in tests: a fake resolver
        looked_up.append(ip)
        return {"192.0.2.1": "router1"}.get(ip, ip)

    monkeypatch.setattr(names, "_lookup", lookup)
    cache = names.NameCache(True, 60.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cache.run)
        assert cache.name_of("192.0.2.1") == "192.0.2.1"  # not known yet: the address
        with trio.fail_after(5):
            while cache.name_of("192.0.2.1") != "router1":
                await trio.sleep(0.01)
        assert cache.name_of("192.0.2.1") == "router1"
        nursery.cancel_scope.cancel()
    assert looked_up == ["192.0.2.1"]  # once: then from the cache
    assert names.NameCache(False, 60.0).name_of("192.0.2.1") == "192.0.2.1"


FUZZ_FEED = SnmpFeed(make(), lambda: 0.0)
FUZZ_FEED.usm = load_usm(make(), 0.0, 0.0)
FUZZ_BASES = [v2c(ber.TRAP_V2, 1), v2c(ber.INFORM, 2),
              ber.encode_message(ber.V1, b"p", ber.encode_trap_v1(
                  ".1.3.6.1.4.1.9", b"\x7f\x00\x00\x01", 6, 1, 0, [])),
              ber.encode_v3(1, 7, FUZZ_FEED.usm.engine_id, 1, 0, b"u", bytes(12), bytes(8),
                            ber.tlv(ber.OCTET_STRING, bytes(30)))[0]]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(FUZZ_BASES), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)),
       max_size=4))
async def test_any_datagram_is_accepted_or_counted_never_raised(
    base: bytes, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(base)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    before = sum(s.value for m in FUZZ_FEED.metrics.snmp_rejected.collect() for s in m.samples
                 if s.name.endswith("_total"))
    accepted, _report = FUZZ_FEED.handle(bytes(data), "192.0.2.1", "UDP", 0.0, 0.0)
    after = sum(s.value for m in FUZZ_FEED.metrics.snmp_rejected.collect() for s in m.samples
                if s.name.endswith("_total"))
    reports = FUZZ_FEED.metrics.count("probepair_snmp_reports_total", reason="discovery")
    assert accepted is not None or after == before + 1 or reports
    assert FUZZ_FEED.metrics.count("probepair_snmp_rejected_total", reason="internal") == 0
