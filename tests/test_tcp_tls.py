"""TLS on the tcp feed (RFC 5425): FeedTLSCert, FeedTLSKey, FeedTLSCA.

Certificates come from a CA made in each test (tests/tlscerts.py). The promises that
need a kernel and OpenSSL on both ends run over loopback with the real clock, each
bounded; the handshake deadline runs on memory streams under ``autojump_clock``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from probepair.config import props
from probepair.errors import ConfigError
from probepair.events import Batch, key_of
from probepair.feeds import make_feed
from probepair.feeds.tcp import TcpFeed
from probepair.feeds.tls import HANDSHAKE_TIMEOUT
from probepair.metrics import Metrics
from tests.tlscerts import CertAuthority, Pem

Clock = Callable[[], float]
OPEN = "probepair_feed_connections"
FAILED = "probepair_feed_tls_handshake_failures_total"
TIMEOUT = 10.0  # seconds for one loopback exchange; far more than a handshake takes


def make_tls(metrics: Metrics, wall_clock: Clock, server: Pem, **values: object) -> TcpFeed:
    p = props.load([("test", {"FeedType": "tcp", "FeedAddress": "127.0.0.1", "FeedPort": 0,
                              "FeedTLSCert": str(server.cert), "FeedTLSKey": str(server.key),
                              **values})])
    feed = make_feed(p, wall_clock, metrics)
    assert isinstance(feed, TcpFeed)
    return feed


def client_context(ca: CertAuthority, cert: Pem | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.pem))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


async def open_tls(address: tuple[str, int],
                   context: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    return await trio.open_ssl_over_tcp_stream(*address, ssl_context=context,
                                               https_compatible=True)


def failures(metrics: Metrics, reason: str) -> float:
    return metrics.count(FAILED, reason=reason)


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll a metric the feed sets from its own task (no event to wait on); callers bound it."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_octet_counted_frames_over_tls_are_one_event_each(
        tmp_path: Path, metrics: Metrics, wall_clock: Clock) -> None:
    ca = CertAuthority(tmp_path)
    feed = make_tls(metrics, wall_clock, ca.issue("probe"))
    trace = b"<11>1 - app1 java - - - boom\n\tat A.b(A.java:1)"
    send, recv = trio.open_memory_channel[Batch](16)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(feed.run, send)
            client = await open_tls(address, client_context(ca))
            await client.send_all(b"%d %s5 <13>x" % (len(trace), trace))
            batch = await recv.receive()
            assert [ev.raw for ev in batch] == [trace, b"<13>x"]
            assert [ev.key for ev in batch] == [key_of(trace), key_of(b"<13>x")]
            await client.aclose()
            await wait_for(lambda: metrics.count(OPEN) == 0)
            nursery.cancel_scope.cancel()
    assert metrics.count("probepair_feed_framing_detected_total", framing="octet-counted") == 1
    assert sum(failures(metrics, r) for r in ("timeout", "certificate", "protocol", "closed")) == 0


async def test_with_feedtlsca_only_clients_with_a_certificate_it_signed_are_served(
        tmp_path: Path, metrics: Metrics, wall_clock: Clock) -> None:
    ca = CertAuthority(tmp_path)
    other = CertAuthority(tmp_path, "another CA")
    feed = make_tls(metrics, wall_clock, ca.issue("probe"), FeedTLSCA=str(ca.pem))
    send, recv = trio.open_memory_channel[Batch](16)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(feed.run, send)
            for n, cert in enumerate([None, other.issue("stranger", client=True)], 1):
                # TLS 1.3: the client may finish its handshake before the probe refuses
                # its certificate; then its first read sees the alert.
                stranger = await open_tls(address, client_context(ca, cert))
                with pytest.raises(trio.BrokenResourceError):
                    await stranger.send_all(b"<13>not for this probe\n")
                    while await stranger.receive_some():
                        pass
                    raise trio.BrokenResourceError  # closed without data: refused too
                await trio.aclose_forcefully(stranger)
                await wait_for(lambda n=n: failures(metrics, "certificate") == n)  # type: ignore[misc]
            sender = await open_tls(address, client_context(ca, ca.issue("fw1", client=True)))
            await sender.send_all(b"<13>from a known sender\n")
            assert [ev.raw for ev in await recv.receive()] == [b"<13>from a known sender"]
            await sender.aclose()
            nursery.cancel_scope.cancel()
    with pytest.raises(trio.WouldBlock):
        recv.receive_nowait()  # nothing from the refused ones


async def test_plain_tcp_to_a_tls_feed_is_a_protocol_failure(
        tmp_path: Path, metrics: Metrics, wall_clock: Clock) -> None:
    ca = CertAuthority(tmp_path)
    feed = make_tls(metrics, wall_clock, ca.issue("probe"))
    send, recv = trio.open_memory_channel[Batch](16)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(feed.run, send)
            plain = await trio.open_tcp_stream(*address)
            await plain.send_all(b"<13>Oct 11 22:14:15 web1 app: in clear\n")
            await wait_for(lambda: failures(metrics, "protocol") == 1)
            await wait_for(lambda: metrics.count(OPEN) == 0)
            await plain.aclose()
            nursery.cancel_scope.cancel()
    with pytest.raises(trio.WouldBlock):
        recv.receive_nowait()


async def test_a_client_that_stalls_mid_handshake_loses_its_slot_after_the_timeout(
        tmp_path: Path, metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    ca = CertAuthority(tmp_path)
    feed = make_tls(metrics, wall_clock, ca.issue("probe"), FeedMaxConnections=1)
    send, _recv = trio.open_memory_channel[Batch](16)
    client, server = trio.testing.memory_stream_pair()

    async def serve() -> None:
        try:
            await feed.serve(send, server)
        finally:
            await trio.aclose_forcefully(server)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        # Half a ClientHello, then nothing: the slot is held ...
        await client.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        await trio.testing.wait_all_tasks_blocked()
        assert metrics.count(OPEN) == 1
        # ... until the handshake deadline, not the 300 s FeedIdleTimeout.
        assert await client.receive_some() == b""
        assert trio.current_time() == HANDSHAKE_TIMEOUT
        await trio.testing.wait_all_tasks_blocked()
        assert (failures(metrics, "timeout"), metrics.count(OPEN)) == (1, 0)
        nursery.cancel_scope.cancel()


def test_tls_files_that_cannot_be_loaded_stop_the_start(
        tmp_path: Path, metrics: Metrics, wall_clock: Clock) -> None:
    ca = CertAuthority(tmp_path)
    server = ca.issue("probe")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=re.escape(
            f"{missing}: FeedTLSCert: cannot read it: No such file or directory") + "$"):
        make_tls(metrics, wall_clock, Pem(missing, server.key), FeedTLSKey="")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(ca.key_pem))}: FeedTLSKey: "
                                          r"cannot load it as the key of FeedTLSCert "
                                          rf"{re.escape(repr(str(server.cert)))}: "
                                          r"key values mismatch$"):
        make_tls(metrics, wall_clock, Pem(server.cert, ca.key_pem))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(server.key))}: FeedTLSCA: "
                                          r"cannot load a CA bundle from it: "):
        make_tls(metrics, wall_clock, server, FeedTLSCA=str(server.key))
    # A certificate file holding its key too needs no FeedTLSKey.
    both = tmp_path / "both.pem"
    both.write_bytes(server.cert.read_bytes() + server.key.read_bytes())
    make_tls(metrics, wall_clock, Pem(both, server.key), FeedTLSKey="")


@pytest.mark.parametrize(("values", "message"), [
    ({"FeedType": "tcp", "FeedTLSKey": "/k.pem"}, "t: FeedTLSKey: needs FeedTLSCert: the "
     "feed's certificate"),
    ({"FeedType": "tcp", "FeedTLSCA": "/ca.pem"}, "t: FeedTLSCA: needs FeedTLSCert: the feed's "
     "certificate"),
    ({"FeedType": "udp", "FeedTLSCert": "/c.pem"}, "t: FeedTLSCert: needs FeedType tcp, got "
     "'udp'"),
])
def test_tls_properties_that_make_no_sense_together_are_refused(
        values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        props.load([("t", values)])


def test_every_tls_property_is_in_dumpprops_and_on_the_command_line() -> None:
    from probepair.cli import build_parser

    dumped = props.dumpprops(props.Props())
    for name in ("FeedTLSCert", "FeedTLSKey", "FeedTLSCA"):
        assert re.search(rf"^{name}: '' # STRING \(tcp feed: ", dumped, re.M), name
    args = build_parser().parse_args(["run", "--feedtlscert", "/c", "--feedtlskey", "/k",
                                      "--feedtlsca", "/a"])
    assert (args.prop_FeedTLSCert, args.prop_FeedTLSKey, args.prop_FeedTLSCA) == (
        "/c", "/k", "/a")
