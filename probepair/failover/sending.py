"""Composing datagrams: heartbeats, acks and re-sent acks (PURE)."""

from __future__ import annotations

from probepair.failover.acks import SentAck
from probepair.failover.state import (
    INF,
    Draining,
    HandedOver,
    MachineState,
)
from probepair.failover.types import (
    Action,
    Mode,
    Role,
    Send,
)
from probepair.failover.wire import MAX_ACK_KEYS, Ack, Flag, Heartbeat


def heartbeat(m: MachineState, seq: int, flags: Flag, now: float) -> Heartbeat:
    """The heartbeat ``m`` sends now with ``seq`` and ``flags``: a pure function of the
    state (reads only), so what a heartbeat says is written in one place."""
    stream, base = m._stream, m._base_for
    failing, verified = m._sink_failing_since, m._sink_verified_at
    c = m.config
    return Heartbeat(
        c.node_id,
        c.boot_id,
        m._epoch,
        seq,
        m._role,
        flags,
        m._beat_interval,
        c.config_digest,
        m._acks.serial,
        m._fresh.echo_boot,
        m._fresh.echo_seq,
        base[1] if base is not None and base[0] == m._peer_boot else 0,
        stream.through or 0 if stream is not None else 0,
        m._pending(),
        0.0 if failing is None else max(0.0, now - failing),
        m._spool_bytes,
        INF if verified is None else max(0.0, now - verified),
        c.status_port,
        0.0 if (oldest := m._standby.oldest_at()) is None else max(0.0, now - oldest),
    )


def ack(
    m: MachineState, seq: int, serial: int, keys: tuple[bytes, ...], flags: Flag = Flag.NONE
) -> Ack:
    """The ack datagram ``m`` sends with ``seq`` for ack ``serial`` (pure, as above)."""
    c = m.config
    return Ack(
        c.node_id,
        c.boot_id,
        m._epoch,
        seq,
        m._role,
        serial,
        keys,
        m._fresh.echo_boot,
        m._fresh.echo_seq,
        m._pending(),
        flags,
    )


def beat_flags(m: MachineState, *, regular: bool, request: bool) -> Flag:
    """The flags of a heartbeat, but IDLE (which may first need the pending acks sent)."""
    flags = Flag.NONE
    if m.config.mode is Mode.MASTER:
        flags |= Flag.CONFIGURED_MASTER
    if m._request_epoch == m._epoch:
        flags |= Flag.REQUESTED
    if isinstance(m._handover, Draining):
        flags |= Flag.HANDING_OVER
    elif isinstance(m._handover, HandedOver):
        flags |= Flag.HANDED_OVER
    # A standby side asks for an echo with every beat and the active side answers at
    # once, so the liveness of the active side is proven each beat period whatever
    # the phase of the two beat timers (else a fresh echo could be BI + RTT old).
    if request or (regular and not m._active and m._role is not Role.STANDARD):
        flags |= Flag.ECHO_REQUEST
    return flags


class Outbox:
    """Sends every datagram this side sends; each one is numbered and recorded for
    freshness, and built by the pure functions above.

    A component of the machine, not a base class: it reads and writes the state ``m``
    (the machine's MachineState) and nothing else.
    """

    __slots__ = ("m",)

    def __init__(self, m: MachineState) -> None:
        self.m = m

    def next_seq(self, now: float) -> int:
        m = self.m
        m._seq += 1
        m._fresh.sent(m._seq, now)
        return m._seq

    def beat(
        self, now: float, actions: list[Action], *, regular: bool = True, request: bool = False
    ) -> None:
        m = self.m
        flags = beat_flags(m, regular=regular, request=request)
        if m._idle():
            if m._pending_acks:  # IDLE covers acks up to acks_sent: send them first
                m._ack_due = INF
                self.send_acks(now, actions)
            flags |= Flag.IDLE
        actions.append(Send(heartbeat(m, self.next_seq(now), flags, now)))
        m._last_beat = now
        if regular:
            m._next_beat = now + m._beat_interval
            # While our spool holds alerts, the peer's acks for keys we do not hold are
            # what keeps its replay from repeating the peer's deliveries: kept past
            # BufferRetention then (still capped at BufferSize keys).
            m._standby.prune(now, keep_unseen=m._spool_bytes > 0)
            m._acks.prune(now)

    def extra_beat(self, now: float, actions: list[Action], *, request: bool = False) -> None:
        """An unscheduled beat (answer an echo request, or challenge), rate-limited."""
        m = self.m
        if now < m._next_extra[request]:
            return
        m._next_extra[request] = now + m.config.ack_interval
        self.beat(now, actions, regular=False, request=request)

    def report_hole(self, now: float, actions: list[Action]) -> None:
        """Say which acks we hold without a hole (an extra beat: the peer re-sends what
        is missing), and again one ack interval on while it stays open (``run_timers``):
        a report or its re-send may be lost.

        An echo request: the peer re-sends only acks sent before a datagram of its that
        we echo, so its answer lets our next report fetch a re-send that was lost too
        (a peer that only beats, such as one that handed over, sends nothing else).
        """
        self.extra_beat(now, actions, request=True)
        self.m._hole_report_at = self.m._next_extra[True]

    def send_acks(self, now: float, actions: list[Action]) -> None:
        m = self.m
        keys, m._pending_acks = m._pending_acks, []
        for start in range(0, len(keys), MAX_ACK_KEYS):
            chunk = tuple(keys[start : start + MAX_ACK_KEYS])
            last = start + MAX_ACK_KEYS >= len(keys)
            seq = self.next_seq(now)
            serial = m._acks.add(chunk, seq, now)
            flags = Flag.IDLE if last and m._idle() else Flag.NONE
            actions.append(Send(ack(m, seq, serial, chunk, flags)))

    def resend(self, entries: list[SentAck], now: float, actions: list[Action]) -> None:
        m = self.m
        for entry in entries:
            entry.seq = self.next_seq(now)
            m.stats.acks_resent += 1
            actions.append(Send(ack(m, entry.seq, entry.serial, entry.keys)))
