"""SNMP trap feed (``FeedType: snmp``): traps and informs, v1, v2c and v3 (USM).

The trio shell around the pure parts: ``ber`` (the codec), ``usm`` (SNMPv3 security),
``tokens`` (mttrapd's elements) and ``control`` (trap counts, drop list).

Transports: UDP, and TCP as RFC 3430 §2 frames it (one BER message after another on a
stream, answers on the same connection); ``Protocol`` UDP, TCP or ALL (both at once,
mttrapd's property). IPv4 or IPv6 by ``FeedAddress``.

Per datagram, in order: a host on the drop list is counted and dropped unread; the
message is decoded (``ber`` bounds every cost); anything that is not a trap or an
inform, or fails USM, is counted in ``probepair_snmp_rejected_total{reason}`` and
dropped (USM discovery and time-window failures are answered with a Report); an
accepted one becomes an Event whose tokens are mttrapd's elements and whose key is
computed from the PDU less its request-id (``ber.Pdu.key_material``), so the copies a
sender sends to the two probes of a pair get the same key.

Informs are answered with their Response once the batch holding them is in the
channel to the rules (accepted: queued), by both probes of a pair whatever their
role, so a sender never retries into a dead master nor waits on a standby.

The UDP loop drains the socket with non-blocking reads as the udp feed does
(DESIGN.md: ~1 µs a datagram instead of ~6 µs), and after waking from idle waits
``BatchLatency`` for company, so a trickle of traps costs one pipeline wake-up per
window, not per trap.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from probepair.errors import ConfigError, FeedError
from probepair.events import Batch, Event, KeyMaker
from probepair.feeds.base import MAX_BATCH, send_batch
from probepair.feeds.datagrams import Source, source_of
from probepair.feeds.snmp import ber
from probepair.feeds.snmp.control import TrapControl
from probepair.feeds.snmp.names import NameCache
from probepair.feeds.snmp.tokens import trap_tokens
from probepair.feeds.snmp.usm import Opened, UsersFileError, Usm, engine_id_for, parse_users
from probepair.metrics import Metrics
from probepair.sockopts import raise_rcvbuf, readable_now

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

logger = logging.getLogger(__name__)

RECV_SIZE: Final = 65535
BOOTS_EPOCH: Final = 1_600_000_000  # engine boots = seconds since this at start (RFC 3414 §2.2.2)
REJECT_LOG_INTERVAL: Final = 60.0  # seconds between log lines about rejected messages
READ_SIZE: Final = 65536
NOTIFICATIONS: Final = frozenset((ber.TRAP_V1, ber.TRAP_V2, ber.INFORM))

# A decoded notification on its way to a batch: (key material, tokens, answer or None).
Accepted = tuple[bytes, dict[str, str], bytes | None]


def load_usm(props: Props, wall: float, now: float) -> Usm:
    """Our USM engine: users from ``SnmpUsersFile``, engine ID from ``SnmpEngineID``
    (else derived from ``Name``), boots growing with each start.

    Raises:
        ConfigError: the users file is unreadable or has a bad line.
    """
    users = []
    if props.SnmpUsersFile:
        path = props.SnmpUsersFile
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise ConfigError(path, "SnmpUsersFile", f"cannot read it: {exc}") from None
        try:
            users = parse_users(text)
        except UsersFileError as exc:
            raise ConfigError(f"{path}:{exc.line}", "SnmpUsersFile", str(exc)) from None
    if props.SnmpEngineID:  # props.load checked it: 5 to 32 octets of hex
        engine = bytes.fromhex(props.SnmpEngineID.removeprefix("0x").removeprefix("0X"))
    else:
        engine = engine_id_for(props.Name)
    boots = min(max(1, int(wall) - BOOTS_EPOCH), 2**31 - 2)
    return Usm(users, engine, boots, now, salt=int.from_bytes(os.urandom(8), "big"))


class SnmpFeed:
    """Traps on ``FeedAddress:FeedPort`` over ``Protocol`` (UDP, TCP or ALL)."""

    def __init__(
        self,
        props: Props,
        wall_clock: Callable[[], float],
        metrics: Metrics | None = None,
        *,
        keys: KeyMaker | None = None,
        index: int = 0,
    ) -> None:
        self.name = f"snmp:{props.FeedAddress}:{props.FeedPort}"
        self._host = props.FeedAddress
        self._port = props.FeedPort
        self._props = props
        self._wall_clock = wall_clock
        self._keys = keys if keys is not None else KeyMaker(props.KeyWindow)
        self._index = index
        self._rcvbuf = props.FeedRcvBuf
        self._latency = props.BatchLatency / 1000.0
        self._max_clients = props.FeedMaxConnections
        self._idle = props.FeedIdleTimeout or math.inf
        self._udp = props.Protocol in ("UDP", "ALL", "ANY")
        self._tcp = props.Protocol in ("TCP", "ALL", "ANY")
        self.metrics = metrics if metrics is not None else Metrics()
        self.control = TrapControl()
        self.names = NameCache(not props.NoNameResolution, props.ActiveHostnameDuration * 60.0)
        self.usm: Usm | None = None
        self.socket: socket.socket | None = None
        self.port = props.FeedPort
        self._clients = 0
        self._rejected_since_log = 0
        self._rejected_logged = -math.inf
        if props.SnmpUsersFile:  # a bad users file stops the start (exit 2), not the feed
            load_usm(props, 0.0, 0.0)

    def idle(self) -> bool:
        """True if the UDP socket has nothing unread now (see UdpFeed.idle)."""
        sock = self.socket
        if sock is None or self._tcp:
            return False
        return not readable_now(sock)

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.usm = load_usm(self._props, self._wall_clock(), trio.current_time())
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.names.run, name="snmp-names")
            address: tuple[str, int] = (self._host, self._port)
            port = self._port
            sock = None
            if self._udp:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                if self._rcvbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
                else:
                    raise_rcvbuf(sock)
                try:
                    sock.bind(address)
                except OSError as exc:
                    sock.close()
                    raise FeedError(self.name, f"cannot bind udp: {exc.strerror}") from None
                address = sock.getsockname()[:2]
                port = address[1]
                self.socket = sock
            if self._tcp:
                try:
                    # "::" takes IPv4 too, as the UDP socket does (trio's IPv6 listener
                    # is IPv6-only: host None opens one of each family).
                    host = None if self._host == "::" else self._host
                    listeners = await trio.open_tcp_listeners(port, host=host)
                except OSError as exc:
                    raise FeedError(self.name, f"cannot listen on tcp: {exc.strerror}") from None
                address = listeners[0].socket.getsockname()[:2]
                port = address[1]
                await nursery.start(trio.serve_listeners, partial(self._serve, send), listeners)
            self.port = port
            self.name = "snmp:{}:{}".format(*address)
            task_status.started(address)
            if sock is not None:
                with sock:
                    await self._udp_forever(sock, send)

    # -- one message --

    def _reject(self, reason: str) -> None:
        self.metrics.snmp_rejected.labels(reason=reason).inc()
        self._rejected_since_log += 1
        now = trio.current_time()
        if now - self._rejected_logged >= REJECT_LOG_INTERVAL:
            logger.warning(
                "feed %s: dropped %d SNMP message(s), the last one %s (counted in "
                "probepair_snmp_rejected_total, logged every %gs)",
                self.name, self._rejected_since_log, reason, REJECT_LOG_INTERVAL,
            )  # fmt: skip
            self._rejected_since_log, self._rejected_logged = 0, now

    def handle(
        self, data: bytes, ip: str, protocol: str, received: float, now: float
    ) -> tuple[Accepted | None, bytes | None]:
        """One message from ``ip``: (the notification or None, an answer to send now
        (a Report) or None). An inform's Response is in the notification: it is sent
        once the notification is queued."""
        control = self.control
        if ip in control.drop_list:
            control.drop_one(ip)
            self.metrics.snmp_dropped.inc()
            return None, None
        try:
            msg = ber.decode_message(data)
            if isinstance(msg, ber.Message):
                pdu = msg.pdu
                version, community, v3 = msg.version, msg.community, None
                if pdu.tag not in NOTIFICATIONS:
                    self._reject("not_a_notification")
                    return None, None
                answer = None
                if pdu.tag == ber.INFORM:
                    response = ber.encode_pdu(ber.RESPONSE, pdu.request_id, pdu.varbind_list)
                    answer = ber.encode_message(version, community, response)
            else:
                assert self.usm is not None
                opened = self.usm.open(msg, data, now)
                if not isinstance(opened, Opened):
                    if opened.reason == "discovery":
                        self.metrics.snmp_reports.labels(reason="discovery").inc()
                    else:
                        self._reject(opened.reason)
                        if opened.report is not None:
                            self.metrics.snmp_reports.labels(reason=opened.reason).inc()
                    return None, opened.report
                pdu = opened.pdu
                if pdu.tag not in NOTIFICATIONS or pdu.tag == ber.TRAP_V1:
                    self._reject("not_a_notification")
                    return None, None
                version, community = ber.V3, b""
                v3 = (opened.context_engine, msg.engine_id, opened.level, msg.user)
                answer = self.usm.response(opened, now) if pdu.tag == ber.INFORM else None
        except ber.BerError as exc:
            self._reject(exc.reason)
            return None, None
        except Exception:
            # A bug of ours on some input, not the sender's problem: one datagram is
            # dropped, the feed goes on (remote input never stops the probe).
            logger.exception("feed %s: a datagram from %s broke the decoder", self.name, ip)
            self._reject("internal")
            return None, None
        count = control.queue_one(ip)
        tokens = trap_tokens(
            pdu, version=version, community=community, peer_ip=ip, name_of=self.names.name_of,
            protocol=protocol, port=self.port, received=received, event_count=count, v3=v3,
        )  # fmt: skip
        self.metrics.snmp_received.labels(version=tokens["SNMP_Version"]).inc()
        return (bytes((version,)) + pdu.key_material, tokens, answer), None

    def _events(
        self, accepted: list[Accepted], raws: list[bytes], sources: list[Source], received: float
    ) -> Batch:
        """Events whose source is the sender's (``$PeerIPaddress`` and its port), as the
        udp and tcp feeds set it (``$PeerAddress`` stays mttrapd's: a name, see tokens)."""
        keys = self._keys.keys([a[0] for a in accepted], trio.current_time())
        index = self._index
        return [
            Event(raw, key, received, a[1], False, source, index)
            for raw, key, a, source in zip(raws, keys, accepted, sources, strict=True)
        ]

    # -- UDP --

    async def _udp_forever(self, sock: socket.socket, send: SendEnd[Batch]) -> None:
        latency = self._latency
        while True:
            if not await self._drain(sock, send):
                await trio.lowlevel.checkpoint()
                continue
            await trio.lowlevel.wait_readable(sock)
            if latency:
                try:
                    await trio.sleep(latency)  # gather the window's traps into one batch
                except trio.Cancelled:
                    # Stopping: what the kernel queued meanwhile is accepted too (the
                    # batch goes over shielded and bounded, see send_batch).
                    await self._drain(sock, send)
                    raise

    async def _drain(self, sock: socket.socket, send: SendEnd[Batch]) -> bool:
        """Read, decode and queue up to MAX_BATCH datagrams, then answer the informs
        among them; True when the socket is empty."""
        recvfrom = sock.recvfrom
        accepted: list[Accepted] = []
        raws: list[bytes] = []
        peers: list[Any] = []
        sources: list[Source] = []
        now = trio.current_time()
        received = self._wall_clock()
        empty = False
        for _ in range(MAX_BATCH):
            try:
                data, peer = recvfrom(RECV_SIZE)
            except BlockingIOError:
                empty = True
                break
            except OSError:
                continue  # an ICMP error surfacing on the unconnected socket
            source = source_of(peer)
            ip = source[0]
            notification, report = self.handle(data, ip, "UDP", received, now)
            if report is not None:
                self._sendto(sock, report, peer)
            if notification is not None:
                accepted.append(notification)
                raws.append(data)
                peers.append(peer)
                sources.append(source)
        if accepted:
            batch = self._events(accepted, raws, sources, received)
            try:
                send.send_nowait(batch)
            except trio.WouldBlock:
                await send_batch(send, batch)
            for (_, _, answer), peer in zip(accepted, peers, strict=True):
                if answer is not None:  # queued: the sender may stop retrying
                    self._sendto(sock, answer, peer)
                    self.metrics.snmp_informs_answered.inc()
        return empty

    def _sendto(self, sock: socket.socket, data: bytes, peer: Any) -> None:
        try:
            sock.sendto(data, peer)
        except OSError as exc:  # a full send buffer or an unreachable sender: it retries
            logger.debug("feed %s: cannot answer %s: %s", self.name, peer, exc)

    # -- TCP (RFC 3430) --

    async def _serve(self, send: SendEnd[Batch], stream: trio.SocketStream) -> None:
        if self._clients >= self._max_clients:
            self.metrics.feed_connections_refused.inc()
            return  # serve_listeners closes it
        self._clients += 1
        self.metrics.feed_connections.inc()
        try:
            async with stream:
                await self._read_stream(send, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the sender went away: what it sent whole was handled
        finally:
            self._clients -= 1
            self.metrics.feed_connections.dec()

    async def _read_stream(self, send: SendEnd[Batch], stream: trio.SocketStream) -> None:
        source = source_of(stream.socket.getpeername())
        ip = source[0]
        buf = bytearray()
        while True:
            with trio.move_on_after(self._idle) as idle:
                chunk = await stream.receive_some(READ_SIZE)
            if idle.cancelled_caught:
                self.metrics.feed_connections_idle_closed.inc()
                return
            if not chunk:
                return
            buf += chunk
            accepted: list[Accepted] = []
            raws: list[bytes] = []
            received = self._wall_clock()
            now = trio.current_time()
            while True:
                try:
                    size = ber.message_length(buf)
                except ber.BerError as exc:
                    self._reject(exc.reason)
                    return  # no way to find the next frame: close the connection
                if size is None or len(buf) < size:
                    break
                data = bytes(buf[:size])
                del buf[:size]
                notification, report = self.handle(data, ip, "TCP", received, now)
                if report is not None:
                    await stream.send_all(report)
                if notification is not None:
                    accepted.append(notification)
                    raws.append(data)
            if accepted:
                sources = [source] * len(accepted)
                await send_batch(send, self._events(accepted, raws, sources, received))
                for _, _, answer in accepted:
                    if answer is not None:
                        await stream.send_all(answer)
                        self.metrics.snmp_informs_answered.inc()
