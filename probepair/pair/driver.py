"""The trio shell around the failover machine: the only socket code for heartbeats.

``UdpLink`` is the datagram transport; ``PeerDriver`` owns a ``FailoverMachine`` and runs
the drive loop of STYLE.md section 4: sleep until ``next_deadline()`` or until something
arrives, feed the machine with ``trio.current_time()``, and perform the actions it
returns, in order, in one task (so heartbeats, acks and flushes never interleave).
Datagrams are decoded and replay-checked here; bad ones are counted through the
observer, logged at most once per ``log_interval`` per reason, and dropped: they never
end the task.

The heartbeat port's sockets, and why there are two: ``probepair.pair.link``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Final, NoReturn, Protocol

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
from probepair.failover.wire import (
    Heartbeat,
    ReplayGuard,
    boot_id_of,
    decode,
    encode,
    make_boot_id,
    screen,
)
from probepair.pair.link import DEFAULT_LOG_INTERVAL, UdpLink, _RateLimitedLog

__all__ = ["DatagramLink", "NullObserver", "PeerDriver", "PeerObserver", "UdpLink", "new_boot_id"]

logger = logging.getLogger(__name__)

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


# Rejections that mean the two probes are set up differently, not an attack or noise:
# "mac" (another SharedSecret), "unsigned" (the peer has none), "version" (another
# heartbeat format: upgrade both). status shows them (a wrong secret looked like a split
# brain: both active, "peer last heard never").
DIAGNOSED: Final = frozenset({"mac", "unsigned", "version"})


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
        # Flushes the machine asked for and on_flush has not yet handed to the sink, and
        # the event their end sets: live alerts wait behind them (``flushing``).
        self._flushes = 0
        self._flushed = trio.Event()
        # The source address of the peer's newest fresh heartbeat: with the status port
        # it announces, where the peer's /status is (``probepair status``).
        self.peer_host: str | None = None
        # Datagrams refused for a reason an operator must act on (DIAGNOSED): reason ->
        # (trio time of the last, how many, from where). ``probepair status`` says it.
        self.rejections: dict[str, tuple[float, int, str]] = {}
        self._performed = trio.Event()  # set after each round of the drive loop
        self._log = _RateLimitedLog(log_interval)
        self._new_boot = _Budget(NEW_BOOT_MACS, NEW_BOOT_BURST)

    # -- called by the processing task ----------------------------------------------------

    @property
    def flushing(self) -> bool:
        """A takeover's flush is on its way to the sink: alerts forwarded now must go
        behind it (``flushed``). The sink then sees the feed's order across a takeover,
        which the peer's gap fill and spool replay rely on ("passed by" means older)."""
        return self._flushes > 0

    async def flushed(self) -> None:
        """Return once every flush asked for so far is in the sink's channel."""
        while self._flushes > 0:
            await self._flushed.wait()

    def _queue(self, actions: list[Action]) -> None:
        """Actions for the drive loop, counted at once: a Flush must hold back the next
        live alert even before the loop runs (see ``flushing``)."""
        self._count_flushes(actions)
        self._pending.extend(actions)
        self._wake.set()

    def _count_flushes(self, actions: list[Action]) -> None:
        n = sum(1 for action in actions if isinstance(action, Flush))
        if n:
            if self._flushes == 0:
                self._flushed = trio.Event()
            self._flushes += n

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
                self._queue(actions)
        return machine.event, now

    def delivered(self, keys: list[bytes], written_at: float | None = None) -> None:
        """The sink acknowledged ``keys`` (written at trio time ``written_at``); they are
        acked to the peer."""
        machine = self.machine
        before = machine.next_deadline()
        machine.delivered(keys, trio.current_time(), written_at)
        if machine.next_deadline() < before:
            self._wake.set()

    def covered_by_peer(self, keys: list[bytes]) -> set[bytes]:
        """Of undelivered ``keys``, those the peer's sink acked: settled, not replayed."""
        return self.machine.covered_by_peer(keys)

    def spool_replay(self, keys: list[bytes]) -> tuple[set[bytes], bool]:
        """The spool's replay gate (``FailoverMachine.spool_replay``)."""
        return self.machine.spool_replay(keys)

    def bypassed(self, count: int) -> None:
        """``count`` alerts go to the sink without the gate (the probe's own events)."""
        self.machine.bypassed(count)

    def request_mode(self, mode: Mode, reason: HandoverReason = HandoverReason.RULES) -> None:
        """Switch mode now (``%Mode`` in a rules file, or an operator)."""
        actions = self.machine.request_mode(mode, trio.current_time(), reason)
        if actions:
            self._queue(actions)

    def sink_state(self, failing_since: float | None, spool_bytes: int) -> None:
        """The sink runner's health report (trio time the failures began, or None)."""
        self.machine.sink_state(failing_since, spool_bytes, trio.current_time())

    def sink_verified(self, at: float) -> None:
        """The sink runner saw the sink work at ``at`` (a delivery or a check passed)."""
        self.machine.sink_verified(at)

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
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive_loop, name="peer:receive")
                task_status.started()
                await self._drive_loop()
        finally:
            # No flush will come any more: nothing may wait behind one (at shutdown).
            self._flushes = 0
            self._flushed.set()
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
            ticked = machine.tick(trio.current_time())
            self._count_flushes(ticked)
            actions += ticked
            await self._perform(actions)
            self._performed.set()
            self._performed = trio.Event()

    async def acks_sent(self) -> None:
        """Return once every delivery the sink acknowledged so far was acked to the peer
        (callers bound the wait: the drive loop sends acks within AckInterval)."""
        while self.machine.acks_pending:
            await self._performed.wait()

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
                if reason in DIAGNOSED:
                    _, count, _ = self.rejections.get(reason, (0.0, 0, ""))
                    host = str(address[0]) if isinstance(address, tuple) else str(address)
                    self.rejections[reason] = (trio.current_time(), count + 1, host)
                self._log(reason, logging.WARNING, "dropped datagram from %s: %s", address, detail)
                continue
            if self.feed_idle is not None:
                machine.feed_idle(self.feed_idle())
            now = trio.current_time()
            actions = machine.receive(msg, now)
            if isinstance(msg, Heartbeat) and machine.peer_last_heard == now:
                observer.on_heartbeat_received()  # fresh and newest: it counted
                self.peer_host = str(address[0]) if isinstance(address, tuple) else None
            if actions:
                self._queue(actions)

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
                try:
                    await observer.on_flush(action.items)
                finally:
                    self._flushes -= 1
                    if self._flushes == 0:
                        self._flushed.set()
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
