"""The heartbeat port: the UDP sockets of the pair's link, and who may use them.

The heartbeat port under a flood (issue 19). The peer sends from its own heartbeat
socket, so its datagrams come from PeerHost:PeerPort exactly. The port is held by two
sockets: one ``connect()``ed to the peer, which the kernel gives only the peer's
datagrams (a connected socket outscores an unconnected one for its 4-tuple; checked on
Linux 6.18 for wildcard and specific binds, both bind orders, tests/test_heartbeat_port),
and one unconnected, which gets everything else. So a flood from anywhere else fills a
queue no heartbeat or ack is in. The unconnected socket is read in batches at low
priority (after a full batch its reader sleeps ``SHARED_PAUSE``: at most ~128k/s of it is
read and counted as ``reason="source"``, the kernel drops the rest of that queue); a
datagram there *from* the peer's address (a multi-homed host that reached another local
address) is still passed on. ``SO_REUSEADDR`` lets the two sockets share the port and is
cleared once both are bound, so any other bind of the port fails with EADDRINUSE as it
did with one socket. On a connected socket an ICMP port-unreachable (the peer is down)
comes back as ``ConnectionRefusedError`` on the next call: skipped when reading, one
retry when sending. If ``connect`` fails (no route at start) the unconnected socket
alone is used with the same source check in user space, without the separate queue.

Why not the source check alone: it costs ~1 us a datagram but shares the kernel queue,
and a flood faster than we read (one Python flooder does ~400-900k/s on loopback here)
overflows it, dropping heartbeats with the forgeries. Measured with
``bench/hbflood.py`` / tests/e2e/test_heartbeat_flood.py (0.2 s beats, 0.6 s bound, 10 s,
one flooder, 2 cores): before, 5.3 M forged datagrams made 5 takeovers (17 of 50
heartbeats heard, 3.2 s the longest silence); now 8.7 M make none (every heartbeat
heard, the oldest 0.18 s), 0 events lost, ~0.9 M counted as ``source``, 0 HMACs.

What it costs to reject a datagram that does reach the driver (bench/hbflood.py, µs):
magic/short/version ~0.5, unsigned ~0.7, malformed ~0.7-1.3, the replay guard's
``self``/``stale``/``replay``/``sender`` ~1.1-1.3, the HMAC ~4-5.8 (before: decode with
the HMAC first ~2.7, plus ~1.3 for the labelled counter and an ``await`` per datagram).

A flood that claims the peer's own address and port (raw packets: root on a host or
on the path) lands in the peer's queue, and the kernel cannot sort it out. A blind
forger cannot know the peer's current boot id (4 random bytes), so its datagrams carry
unknown boot ids, and those get at most ``NEW_BOOT_MACS`` HMACs a second (reason
``unverified`` past it): the rest cost the cheap checks. The bound is then the read
rate: the standby read ~200k/s of a 607k/s spoofed flood (2.0 M ``unverified``, 2,058
``mac`` in 10 s), the kernel dropped the rest of that queue, heartbeats included:
about half of them arrived, the longest silence was 0.99 s, and with a 0.6 s bound
(three 0.2 s beats) the standby took over 4 times (0 events lost: a takeover flushes
only unacked events). Under a spoofed flood of F/s a datagram of the peer's survives
with probability about min(1, 200k/F), so a bound of k beats is missed with about
(1 - 200k/F)^k: give BeatThreshold + HeartbeatTimeout several beats where such floods
are possible. A peer that restarts during such a flood is heard only after it (its new
boot id competes for the budget). A forger who has seen the current boot id on the wire
pays the HMAC per datagram (~60k/s read, measured before the budget).
"""

from __future__ import annotations

import logging
import math
import socket
from collections import deque
from collections.abc import Callable
from typing import NoReturn

import trio

from probepair.sockopts import raise_rcvbuf

__all__ = ["UdpLink"]

logger = logging.getLogger("probepair.pair.driver")  # one logger for the pair link, as before

RECV_SIZE = 2048  # bytes: every valid datagram is <= wire.MAX_DATAGRAM (1400)
# Datagrams read per turn before a schedule point (DESIGN.md: draining 256-1024
# non-blocking recvs per turn costs ~1.1 us a datagram against ~6 us for one await each).
BATCH = 256
INBOX_BATCHES = 4  # batches read but not yet handled; then the kernel queue holds the rest
# After a full batch from the shared socket (a flood from elsewhere) its reader pauses:
# at most BATCH / SHARED_PAUSE datagrams/s of it are read and counted (~128k/s).
SHARED_PAUSE = 0.002  # seconds
SHARED_RCVBUF = 1 << 20  # bytes: only strays and floods queue there; overflow is harmless
DIRECT_RCVBUF = 4 * 1024 * 1024  # bytes: the peer's own queue (an ack backlog after a stall)
DEFAULT_LOG_INTERVAL = 10.0  # seconds between two log lines about the same bad input


class _RateLimitedLog:
    """Logs a given key at most once per interval, with the count it suppressed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: object) -> None:
        now = trio.current_time()
        if now - self._last.get(key, -math.inf) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d more since the last report)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)


class UdpLink:
    """The heartbeat port: UDP sockets bound to ``listen_host:listen_port``.

    Start it with ``local = await nursery.start(link.serve)``: ``serve`` binds, resolves
    the peer, reports the bound address and runs the readers until cancelled. Only
    datagrams from the peer's address and port come out of ``receive``; the others are
    counted through ``on_foreign`` (``reason="source"``) and dropped unread by anything
    else. See the module docstring for the two sockets and why.

    Args:
        on_foreign: called with the number of datagrams dropped for their source, once
            per batch read (never per datagram).
        log_interval: seconds between two log lines about foreign datagrams.
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        peer_host: str,
        peer_port: int,
        *,
        on_foreign: Callable[[int], None] | None = None,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.peer_host = peer_host
        self.peer_port = peer_port
        self.on_foreign = on_foreign
        self.foreign = 0  # datagrams dropped for their source address, in all
        self._shared: socket.socket | None = None  # bound, unconnected: everyone else
        self._direct: socket.socket | None = None  # the same port, connected to the peer
        self._peer: tuple[object, ...] | None = None  # the peer's sockaddr
        self._peer_key: tuple[object, ...] | None = None  # what recvfrom says for the peer
        self._direct_ready = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[list[tuple[bytes, object]]](
            INBOX_BATCHES
        )
        self._batch: deque[tuple[bytes, object]] = deque()
        self._log = _RateLimitedLog(log_interval)

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound (host, port); only valid once ``serve`` has started."""
        if self._shared is None:
            raise RuntimeError("UdpLink is not bound; start serve() first")
        host, port = self._shared.getsockname()[:2]
        return host, port

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Bind, then read the sockets until cancelled."""
        infos = await trio.socket.getaddrinfo(
            self.listen_host or None,
            self.listen_port,
            type=socket.SOCK_DGRAM,
            flags=socket.AI_PASSIVE,
        )
        family, type_, proto, _, sockaddr = infos[0]
        with socket.socket(family, type_, proto) as shared:
            shared.setblocking(False)
            # Set only until the connected socket has joined this port (set_peer):
            # then cleared on both, so any other bind fails with EADDRINUSE as before.
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            raise_rcvbuf(shared, SHARED_RCVBUF)
            shared.bind(sockaddr)
            self._shared = shared
            try:
                if self.peer_host and self.peer_port:
                    await self.set_peer(self.peer_host, self.peer_port)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_direct, name="peer:direct")
                    nursery.start_soon(self._read_shared, shared, name="peer:shared")
                    task_status.started(self.local_address)
            finally:
                self._shared = None
                if self._direct is not None:
                    self._direct.close()
                    self._direct = None
        raise AssertionError("unreachable")  # pragma: no cover

    async def set_peer(self, host: str, port: int) -> None:
        """Send to and hear from ``host:port`` from now on (resolved once, here)."""
        shared = self._shared
        if shared is None:
            raise trio.ClosedResourceError("UdpLink is not bound")
        infos = await trio.socket.getaddrinfo(
            host, port, family=shared.family, type=socket.SOCK_DGRAM
        )
        peer = tuple(infos[0][4])
        self.peer_host, self.peer_port = host, port
        self._peer, self._peer_key = peer, peer[:2]
        direct = self._direct
        if direct is None:
            direct = socket.socket(shared.family, socket.SOCK_DGRAM)
            direct.setblocking(False)
            direct.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Acks arrive in bursts (a peer back from a stall sends its backlog): a
            # datagram the kernel drops here costs a duplicate or a resend.
            raise_rcvbuf(direct, DIRECT_RCVBUF)
            try:
                direct.bind(shared.getsockname())
            except OSError:
                direct.close()
                raise
        try:
            direct.connect(peer)
        except OSError as exc:
            # No route yet, say: the shared socket hears the peer too (filtered by
            # address, in user space), only without a queue of its own.
            logger.warning(
                "cannot connect the heartbeat socket to %s:%s (%s): the peer's "
                "datagrams share a queue with everyone else's",
                host, port, exc.strerror,
            )
            direct.close()
            self._direct = None
            return
        for sock in (shared, direct):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        self._direct = direct
        self._direct_ready.set()

    async def send(self, data: bytes) -> None:
        """Send ``data`` to the peer; a no-op while no peer address is known.

        Raises:
            OSError: the kernel refused it (e.g. ``ConnectionRefusedError`` twice in a
                row: the peer's port is closed).
        """
        shared = self._shared
        if shared is None:
            raise trio.ClosedResourceError("UdpLink is not bound")
        await trio.lowlevel.checkpoint()
        if self._peer is None:
            return
        direct = self._direct
        refused = False
        while True:
            try:
                if direct is not None:
                    direct.send(data)
                else:
                    shared.sendto(data, self._peer)
                return
            except ConnectionRefusedError:
                # A connected socket reports an earlier datagram's ICMP port-unreachable
                # on the next call, which then sends nothing: once is that, not this one.
                if refused:
                    raise
                refused = True
            except BlockingIOError:
                await trio.lowlevel.wait_writable(direct if direct is not None else shared)

    async def receive(self) -> tuple[bytes, object]:
        """The next datagram from the peer and its source address.

        Datagrams come in batches of up to ``BATCH``: between two of one batch there is
        no schedule point (the batch is the unit of fairness, as in the feeds).
        """
        if self._shared is None:
            raise trio.ClosedResourceError("UdpLink is not bound")
        if not self._batch:
            self._batch.extend(await self._inbox.receive())
        return self._batch.popleft()

    async def _read_direct(self) -> NoReturn:
        await self._direct_ready.wait()
        sock = self._direct
        assert sock is not None
        recv, source, inbox = sock.recv, self._peer, self._inbox_send
        while True:
            batch: list[tuple[bytes, object]] = []
            empty = True
            for _ in range(BATCH):
                try:
                    batch.append((recv(RECV_SIZE), source))
                except BlockingIOError:
                    break
                except (ConnectionRefusedError, ConnectionResetError):
                    continue  # ICMP for an earlier send (peer down): reported once, harmless
            else:
                empty = False
            if batch:
                try:
                    inbox.send_nowait(batch)
                except trio.WouldBlock:
                    await inbox.send(batch)  # the driver is behind: the kernel queue waits
            if empty:
                await trio.lowlevel.wait_readable(sock)
            else:
                await trio.lowlevel.checkpoint()

    async def _read_shared(self, sock: socket.socket) -> NoReturn:
        recvfrom, inbox = sock.recvfrom, self._inbox_send
        while True:
            batch: list[tuple[bytes, object]] = []
            foreign = 0
            last: object = None
            empty = True
            key = self._peer_key
            for _ in range(BATCH):
                try:
                    data, address = recvfrom(RECV_SIZE)
                except BlockingIOError:
                    break
                except (ConnectionRefusedError, ConnectionResetError):
                    continue
                if key is None or address[:2] == key:
                    batch.append((data, address))  # the peer, to another local address
                else:
                    foreign += 1
                    last = address
            else:
                empty = False
            if foreign:
                self.foreign += foreign
                if self.on_foreign is not None:
                    self.on_foreign(foreign)
                self._log(
                    "source",
                    logging.WARNING,
                    "dropped datagrams not from PeerHost %s:%s (%d in one read, the last from %s)",
                    self.peer_host, self.peer_port, foreign, last,
                )
            if batch:
                try:
                    inbox.send_nowait(batch)
                except trio.WouldBlock:
                    await inbox.send(batch)
            if empty:
                await trio.lowlevel.wait_readable(sock)
            else:
                # Low priority: a full batch means a flood (the peer has its own queue).
                # Pausing caps what it costs us; meanwhile the kernel drops the rest of
                # it from this socket's queue, which no heartbeat shares.
                await trio.sleep(SHARED_PAUSE)
