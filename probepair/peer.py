"""The trio shell around the failover machine: the only socket code for heartbeats.

``UdpLink`` is the datagram transport; ``PeerDriver`` owns a ``FailoverMachine`` and runs
the drive loop of STYLE.md section 4: sleep until ``next_deadline()`` or until something
arrives, feed the machine with ``trio.current_time()``, and perform the actions it
returns, in order, in one task (so heartbeats, acks and flushes never interleave).
Datagrams are decoded and replay-checked here; bad ones are counted through the
observer, logged at most once per ``log_interval`` per reason, and dropped: they never
end the task.

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
magic/short/version ~0.5, unsigned ~0.75, malformed ~0.7-1.3, the replay guard's
``self``/``stale``/``replay``/``sender`` ~1.2, the HMAC ~4.6-5.8 (it used to be ~2.7 for
decode alone, plus ~1.3 for the labelled counter and an ``await`` per datagram). Only
a flood that claims the peer's own address and port reaches the peer's queue (raw
packets, root on the path or on a host): every one of those that looks fresh costs an
HMAC, so the probe reads ~60k/s of it on a shared core; a 385k/s spoofed flood kept ~55%
of the heartbeats (28 of 50) and, with a 0.6 s bound, forced takeovers. That is the
documented bound: under a spoofed flood of F/s, a heartbeat survives with probability
about min(1, 60k/F); choose BeatThreshold + HeartbeatTimeout for several beats.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import NoReturn, Protocol

import trio

from probepair.errors import HeartbeatDecodeError
from probepair.failover import (
    Action,
    ConfigDrift,
    FailoverMachine,
    Flush,
    GapFill,
    Handover,
    HandoverReason,
    Mode,
    Rejected,
    Role,
    RoleChanged,
    Send,
    SplitBrain,
)
from probepair.sockopts import raise_rcvbuf
from probepair.wire import (
    Heartbeat,
    ReplayGuard,
    boot_id_of,
    decode,
    encode,
    make_boot_id,
    screen,
)

__all__ = ["DatagramLink", "NullObserver", "PeerDriver", "PeerObserver", "UdpLink", "new_boot_id"]

logger = logging.getLogger(__name__)

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
# HMAC checks a second for datagrams carrying a boot id other than the peer's current
# one. The current peer never needs them; a restarted peer (a new boot id) sends a few
# datagrams a second until one is verified. A blind forger, who cannot know the current
# boot id (4 random bytes), can send only these: past the budget they are dropped at the
# cost of the cheap checks (reason "unverified"), not an HMAC each.
NEW_BOOT_MACS = 200.0
NEW_BOOT_BURST = 50.0


def new_boot_id(wall_clock: Callable[[], float] = time.time) -> bytes:
    """A fresh boot id: wall-clock start time plus 4 random bytes."""
    return make_boot_id(wall_clock(), os.urandom(4))


class DatagramLink(Protocol):
    """A datagram transport to the one peer (UDP, or a fake in tests)."""

    async def send(self, data: bytes) -> None:
        """Send one datagram to the peer (may be lost; may raise OSError)."""

    async def receive(self) -> tuple[bytes, object]:
        """The next datagram and its source address."""


class PeerObserver(Protocol):
    """What the runtime learns from the driver: metrics, logs, the sink gate.

    ``on_flush`` must hand the items to the sink in order before returning (it may
    await; the driver performs nothing else meanwhile). The others must not block.
    """

    async def on_flush(self, items: list[tuple[bytes, bytes]]) -> None: ...
    async def on_gap_fill(self, items: list[tuple[bytes, bytes]]) -> None: ...
    def on_handover(self, reason: HandoverReason) -> None: ...
    def on_role_changed(self, old: Role, new: Role, reason: str) -> None: ...
    def on_heartbeat_sent(self) -> None: ...
    def on_heartbeat_received(self) -> None: ...
    def on_rejected(self, reason: str) -> None: ...
    def on_split_brain(self, active: bool, detail: str) -> None: ...
    def on_config_drift(self, local: bytes, peer: bytes) -> None: ...


class NullObserver:
    """Observes nothing. Only for tests and tools: it drops flushed events."""

    async def on_flush(self, items: list[tuple[bytes, bytes]]) -> None:
        """Drop the items."""

    async def on_gap_fill(self, items: list[tuple[bytes, bytes]]) -> None:
        """Drop the items."""

    def on_handover(self, reason: HandoverReason) -> None:
        """Ignore."""

    def on_role_changed(self, old: Role, new: Role, reason: str) -> None:
        """Ignore."""

    def on_heartbeat_sent(self) -> None:
        """Ignore."""

    def on_heartbeat_received(self) -> None:
        """Ignore."""

    def on_rejected(self, reason: str) -> None:
        """Ignore."""

    def on_split_brain(self, active: bool, detail: str) -> None:
        """Ignore."""

    def on_config_drift(self, local: bytes, peer: bytes) -> None:
        """Ignore."""


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


class _Budget:
    """A token bucket: ``rate`` a second, up to ``burst`` at once (times are trio's)."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._at = burst, -math.inf

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


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


class PeerDriver:
    """Runs a ``FailoverMachine`` against a ``DatagramLink`` and the trio clock.

    Args:
        machine: the failover machine (constructed with ``now=trio.current_time()``).
        link: the datagram transport to the peer.
        secret: the SharedSecret (empty: unsigned datagrams; a warning is logged).
        observer: receives flushes, role changes and counts (``NullObserver`` if None).
        log_interval: seconds between two log lines about the same kind of bad datagram.
        feed_idle: tells, without blocking, whether the feed's source and the pipeline
            before the gate are empty now (None: never idle, so no IDLE claims).

    ``event``, ``delivered`` and ``request_mode`` are called by the processing task,
    in the same trio run; ``run`` must be running (in a nursery) for anything to be sent.
    """

    def __init__(
        self,
        machine: FailoverMachine,
        link: DatagramLink,
        secret: bytes,
        observer: PeerObserver | None = None,
        *,
        log_interval: float = DEFAULT_LOG_INTERVAL,
        feed_idle: Callable[[], bool] | None = None,
    ) -> None:
        self.machine = machine
        self.feed_idle = feed_idle
        self.link = link
        self.secret = secret
        self.observer: PeerObserver = observer if observer is not None else NullObserver()
        self.guard = ReplayGuard(machine.config.boot_id)
        self._pending: list[Action] = []
        self._wake = trio.Event()
        self._log = _RateLimitedLog(log_interval)
        self._new_boot = _Budget(NEW_BOOT_MACS, NEW_BOOT_BURST)

    # -- called by the processing task ----------------------------------------------------

    def event(self, key: bytes, payload: bytes) -> bool:
        """True: forward ``payload`` to the sink now; False: held (or already acked)."""
        event, now = self.batch_event()
        return event(key, payload, now)

    def batch_event(self) -> tuple[Callable[[bytes, bytes, float], bool], float]:
        """``FailoverMachine.event`` and the ``now`` for the next batch of events.

        If we were stalled (SIGSTOP, a frozen VM) and the drive loop has not ticked yet,
        the overdue timers run first, so a master that has likely been replaced steps
        down before it forwards its socket backlog again. Once per batch: the tick
        clears ``stall_at``, and a batch is handled without a schedule point.
        """
        machine = self.machine
        now = trio.current_time()
        if now >= machine.stall_at:
            actions = machine.tick(now)
            if actions:
                self._pending.extend(actions)
                self._wake.set()
        return machine.event, now

    def delivered(self, keys: list[bytes]) -> None:
        """The sink acknowledged ``keys``; they are acked to the peer."""
        machine = self.machine
        before = machine.next_deadline()
        machine.delivered(keys, trio.current_time())
        if machine.next_deadline() < before:
            self._wake.set()

    def bypassed(self, count: int) -> None:
        """``count`` alerts go to the sink without the gate (the probe's own events)."""
        self.machine.bypassed(count)

    def request_mode(self, mode: Mode, reason: HandoverReason = HandoverReason.RULES) -> None:
        """Switch mode now (``%Mode`` in a rules file, or an operator)."""
        actions = self.machine.request_mode(mode, trio.current_time(), reason)
        if actions:
            self._pending.extend(actions)
            self._wake.set()

    def sink_state(self, failing_since: float | None, spool_bytes: int) -> None:
        """The sink runner's health report (trio time the failures began, or None)."""
        self.machine.sink_state(failing_since, spool_bytes, trio.current_time())

    # -- the tasks ----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Drive the machine until cancelled."""
        if not self.secret and self.machine.config.mode is not Mode.STANDARD:
            logger.warning(
                "no SharedSecret: heartbeats and acks are not authenticated; "
                "anyone who can reach this port can take over the pair"
            )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop, name="peer:receive")
            task_status.started()
            await self._drive_loop()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _drive_loop(self) -> NoReturn:
        machine = self.machine
        while True:
            if not self._pending:
                with trio.move_on_at(machine.next_deadline()):
                    await self._wake.wait()
            self._wake = trio.Event()
            actions, self._pending = self._pending, []
            if self.feed_idle is not None:
                machine.feed_idle(self.feed_idle())
            actions += machine.tick(trio.current_time())
            await self._perform(actions)

    async def _receive_loop(self) -> NoReturn:
        machine, observer = self.machine, self.observer
        secret, guard = self.secret, self.guard
        while True:
            data, address = await self.link.receive()
            # The cheap checks first, without an exception: a forged datagram that
            # fails them costs well under a microsecond here (bench/hbflood.py).
            reason = screen(data, secret, guard)
            detail: object = reason
            if (
                reason is None
                and boot_id_of(data) != guard.peer_boot_id
                and not self._new_boot.take(trio.current_time())
            ):
                reason = "unverified"  # a flood of unknown boot ids: see NEW_BOOT_MACS
            if reason is None:
                try:
                    msg = decode(data, secret)
                    guard.check(msg)
                except HeartbeatDecodeError as exc:
                    reason, detail = exc.reason, exc
            if reason is not None:
                observer.on_rejected(reason)
                self._log(reason, logging.WARNING, "dropped datagram from %s: %s", address, detail)
                continue
            if self.feed_idle is not None:
                machine.feed_idle(self.feed_idle())
            now = trio.current_time()
            actions = machine.receive(msg, now)
            if isinstance(msg, Heartbeat) and machine.peer_last_heard == now:
                observer.on_heartbeat_received()  # fresh and newest: it counted
            if actions:
                self._pending.extend(actions)
                self._wake.set()

    async def _perform(self, actions: list[Action]) -> None:
        observer = self.observer
        for action in actions:
            if isinstance(action, Send):
                try:
                    await self.link.send(encode(action.msg, self.secret))
                except OSError as exc:
                    self._log("send", logging.WARNING, "cannot send to the peer: %s", exc)
                    continue
                if isinstance(action.msg, Heartbeat):
                    observer.on_heartbeat_sent()
            elif isinstance(action, Flush):
                await observer.on_flush(action.items)
            elif isinstance(action, GapFill):
                logger.warning(
                    "the active peer passed by %d events it did not deliver: delivering them",
                    len(action.items),
                )
                await observer.on_gap_fill(action.items)
            elif isinstance(action, Rejected):
                observer.on_rejected(action.reason)
                self._log(
                    action.reason,
                    logging.WARNING,
                    "ignored a datagram that does not echo a recent one of ours (%s)",
                    action.reason,
                )
            elif isinstance(action, Handover):
                observer.on_handover(action.reason)
            elif isinstance(action, RoleChanged):
                logger.warning(
                    "role %s -> %s: %s", action.old.value, action.new.value, action.reason
                )
                observer.on_role_changed(action.old, action.new, action.reason)
            elif isinstance(action, SplitBrain):
                logger.warning(
                    "split brain %s: %s", "detected" if action.active else "over", action.detail
                )
                observer.on_split_brain(action.active, action.detail)
            elif isinstance(action, ConfigDrift):
                logger.warning(
                    "peer config digest %s differs from ours %s: pair-wide settings disagree",
                    action.peer.hex(),
                    action.local.hex(),
                )
                observer.on_config_drift(action.local, action.peer)
