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


class Sender(MachineState):
    """Builds every datagram this side sends; each one is recorded for freshness."""

    def _next_seq(self, now: float) -> int:
        self._seq += 1
        self._fresh.sent(self._seq, now)
        return self._seq

    def _beat(
        self, now: float, actions: list[Action], *, regular: bool = True, request: bool = False
    ) -> None:
        flags = Flag.NONE
        if self.config.mode is Mode.MASTER:
            flags |= Flag.CONFIGURED_MASTER
        if isinstance(self._handover, Draining):
            flags |= Flag.HANDING_OVER
        elif isinstance(self._handover, HandedOver):
            flags |= Flag.HANDED_OVER
        # A standby side asks for an echo with every beat and the active side answers at
        # once, so the liveness of the active side is proven each beat period whatever
        # the phase of the two beat timers (else a fresh echo could be BI + RTT old).
        if request or (regular and not self._active and self._role is not Role.STANDARD):
            flags |= Flag.ECHO_REQUEST
        if self._idle():
            if self._pending_acks:  # IDLE covers acks up to acks_sent: send them first
                self._ack_due = INF
                self._send_acks(now, actions)
            flags |= Flag.IDLE
        stream, base = self._stream, self._base_for
        failing = self._sink_failing_since
        c = self.config
        actions.append(
            Send(
                Heartbeat(
                    c.node_id,
                    c.boot_id,
                    self._epoch,
                    self._next_seq(now),
                    self._role,
                    flags,
                    self._beat_interval,
                    c.config_digest,
                    self._acks.serial,
                    self._fresh.echo_boot,
                    self._fresh.echo_seq,
                    base[1] if base is not None and base[0] == self._peer_boot else 0,
                    stream.through or 0 if stream is not None else 0,
                    self._pending(),
                    0.0 if failing is None else max(0.0, now - failing),
                    self._spool_bytes,
                )
            )
        )
        if regular:
            self._next_beat = now + self._beat_interval
            self._standby.prune(now)
            self._acks.prune(now)

    def _extra_beat(self, now: float, actions: list[Action], *, request: bool = False) -> None:
        """An unscheduled beat (answer an echo request, or challenge), rate-limited."""
        if now < self._next_extra[request]:
            return
        self._next_extra[request] = now + self.config.ack_interval
        self._beat(now, actions, regular=False, request=request)

    def _send_acks(self, now: float, actions: list[Action]) -> None:
        keys, self._pending_acks = self._pending_acks, []
        c = self.config
        for start in range(0, len(keys), MAX_ACK_KEYS):
            chunk = tuple(keys[start : start + MAX_ACK_KEYS])
            last = start + MAX_ACK_KEYS >= len(keys)
            seq = self._next_seq(now)
            serial = self._acks.add(chunk, seq, now)
            actions.append(
                Send(
                    Ack(
                        c.node_id,
                        c.boot_id,
                        self._epoch,
                        seq,
                        self._role,
                        serial,
                        chunk,
                        self._fresh.echo_boot,
                        self._fresh.echo_seq,
                        self._pending(),
                        Flag.IDLE if last and self._idle() else Flag.NONE,
                    )
                )
            )

    def _resend(self, entries: list[SentAck], now: float, actions: list[Action]) -> None:
        c = self.config
        for entry in entries:
            entry.seq = self._next_seq(now)
            self.stats.acks_resent += 1
            actions.append(
                Send(
                    Ack(
                        c.node_id,
                        c.boot_id,
                        self._epoch,
                        entry.seq,
                        self._role,
                        entry.serial,
                        entry.keys,
                        self._fresh.echo_boot,
                        self._fresh.echo_seq,
                        self._pending(),
                    )
                )
            )
