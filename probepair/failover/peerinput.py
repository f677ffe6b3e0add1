"""What a fresh datagram from the peer changes: acks, heartbeats, split brain (PURE)."""

from __future__ import annotations

from probepair.failover.precedence import MASTER_ROLES, Precedence, of_heartbeat, verdict
from probepair.failover.roles import Roles
from probepair.failover.state import (
    _HANDOVER_FLAGS,
    ACTIVE_ROLES,
    INF,
    Awaiting,
    Idle,
)
from probepair.failover.transitions import Trigger
from probepair.failover.types import (
    Action,
    ConfigDrift,
    Failback,
    Flush,
    HandoverReason,
    Mode,
    Role,
    SplitBrain,
)
from probepair.failover.wire import Ack, Flag, Heartbeat


class PeerInput(Roles):
    """Handles datagrams that ``FailoverMachine.receive`` has proven fresh."""

    def _on_ack(self, msg: Ack, now: float, actions: list[Action]) -> None:
        stream = self._stream_for(msg.boot_id)
        if not stream.receive(msg.serial):
            return  # a re-sent ack we already had
        newest = self._standby.ack(msg.keys, now)
        if not self._active and msg.role in ACTIVE_ROLES:
            gap = self.config.gap_timeout
            if newest is not None:
                self._gap_marks.append((msg.serial, newest - gap))
            if msg.flags & Flag.IDLE:
                self._gap_marks.append((msg.serial, now - gap))
        stream.advance(now, self._bound())
        if stream.has_hole:
            # Say at once which acks we hold without a hole: the peer re-sends what is
            # missing now rather than at our next beat (a lost ack that waits a beat
            # period could be lost for good with the peer, and duplicated at takeover).
            self._extra_beat(now, actions)
        self._maybe_take_over_from_handover(now, actions)

    def _precedence(self) -> Precedence:
        c = self.config
        return (
            self._epoch,
            self._role in MASTER_ROLES,
            c.mode is Mode.MASTER,
            c.node_id,
            c.boot_id,
        )

    def _on_heartbeat(self, hb: Heartbeat, newest: bool, now: float, actions: list[Action]) -> None:
        known = hb.boot_id == self._peer_boot
        if not known:
            self._peer = hb  # a new boot's first fresh heartbeat is its newest
            self._awaiting = None
            # Acks of the last bound may concern events the new boot holds: re-send them.
            base = self._acks.base(now, self._bound())
            self._base_for = (hb.boot_id, base)
            self._resend(self._acks.since(base), now, actions)
        else:
            assert self._base_for is not None
            heard = max(hb.acks_heard, self._base_for[1] - 1)
            self._resend(self._acks.missing(heard, hb.echo_seq), now, actions)
        stream = self._stream_for(hb.boot_id)
        if hb.ack_base:
            stream.set_base(hb.ack_base)
        if not self._active and hb.role in ACTIVE_ROLES and hb.flags & Flag.IDLE:
            self._gap_marks.append((hb.acks_sent, now - self.config.gap_timeout))
        stream.advance(now, self._bound())
        if not newest:
            return  # overtaken by a newer heartbeat: its role and flags are history
        self._peer = hb
        self._peer_last_heard = now
        if hb.config_digest != self._peer_digest:
            self._peer_digest = hb.config_digest
            if self.config_drift:
                actions.append(ConfigDrift(self.config.config_digest, hb.config_digest))
        peer_master = hb.role in MASTER_ROLES
        peer_active = hb.role in ACTIVE_ROLES
        if hb.epoch > self._epoch:
            self._epoch = hb.epoch
            self._adopt_opposite_mode(hb, now, actions)
        if peer_master and self.mode is Mode.SLAVE:
            self._beat_interval = hb.beat_interval  # OMNIbus: the slave adopts it
        if self._active or peer_active or peer_master or hb.flags & _HANDOVER_FLAGS:
            # A plain standby peer does not count: two standby slaves must not keep
            # each other from taking over.
            self._peer_deadline = now + self._bound()
            self._silence_since = now
            self._silence_deferred = False
        handover = self._handover
        if not isinstance(handover, Idle) and (
            hb.boot_id != handover.boot or hb.role is Role.MASTER
        ):
            self._end_handover()  # the master is active (handover complete) or restarted

        if self._active and peer_active:
            self._both_active(hb, known, now, actions)
        elif self._active:
            if self._split_brain:
                self._split_brain = False
                actions.append(SplitBrain(False, f"resolved: peer {hb.sender} is {hb.role.value}"))
            if self._role is Role.SLAVE_ACTIVE and hb.role is Role.MASTER_PENDING:
                if self.config.failback is not Failback.MANUAL and self.failback.allows(
                    hb.boot_id, now, self._bound()
                ):
                    why = f"handing over to returning master {hb.sender}"
                    self._step_down(
                        Trigger.PENDING_MASTER, why, HandoverReason.FAILBACK, now, actions
                    )
            elif self._role is Role.MASTER and hb.role is Role.MASTER_PENDING:
                self._resolve_masters(hb, now, actions)
        elif self._role is Role.MASTER_PENDING:
            if peer_master:
                self._resolve_masters(hb, now, actions)
            elif hb.flags & Flag.HANDED_OVER:
                waiting = self._awaiting
                if waiting is None or waiting.giveup_at == INF:
                    giveup_at = now + self._beat_interval + self.config.beat_threshold
                else:
                    giveup_at = waiting.giveup_at
                self._awaiting = Awaiting(hb.acks_sent, giveup_at)
                self._maybe_take_over_from_handover(now, actions)
                if self._role is Role.MASTER_PENDING:
                    self._extra_beat(now, actions)  # tell the peer which acks we lack
        if (
            self._role is Role.SLAVE_STANDBY
            and hb.role is Role.MASTER_PENDING
            and isinstance(self._handover, Idle)
        ):
            self._handover_from_standby(now, actions)
        self._check_sink(now, actions)

    def _handover_from_standby(self, now: float, actions: list[Action]) -> None:
        """Flush what nobody forwarded while the master was away, then hand over."""
        items = self._standby.drain(now)
        # Still in flight from an earlier active period counts too; a surplus of
        # deliveries must not make the flush look drained at once.
        self._in_flight = max(self._in_flight, 0) + len(items)
        if items:
            actions.append(Flush(items))
        self._start_handover(now, actions)

    def _adopt_opposite_mode(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        """The special case outside ROLE_TRANSITIONS: a higher epoch flips our mode.

        The target depends on the sender's role and flags, not on a trigger alone.
        """
        reason = f"peer {hb.sender} is {hb.role.value} at epoch {hb.epoch}"
        if hb.role in MASTER_ROLES:
            if self._active and hb.role is Role.MASTER_PENDING:
                self._step_down(None, reason, HandoverReason.FAILBACK, now, actions)
            elif self._role in MASTER_ROLES or (
                self._role is Role.SLAVE_ACTIVE and hb.role is Role.MASTER
            ):
                self._set_role(Role.SLAVE_STANDBY, reason, now, actions)
        elif self._role is Role.SLAVE_ACTIVE:
            self._set_role(Role.MASTER, reason, now, actions)
        elif self._role is Role.SLAVE_STANDBY:
            if hb.role in ACTIVE_ROLES or hb.flags & _HANDOVER_FLAGS:
                self._end_handover()
                self._set_role(Role.MASTER_PENDING, reason, now, actions)
            else:
                self._set_role(Role.MASTER, reason, now, actions)

    def _resolve_masters(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        win, why = verdict(self._precedence(), of_heartbeat(hb))
        if not win:
            self._fire(
                Trigger.LOST_VERDICT,
                f"peer {hb.sender} is also master and wins ({why})",
                now,
                actions,
            )

    def _both_active(self, hb: Heartbeat, known: bool, now: float, actions: list[Action]) -> None:
        """Both forward: count it (any overlap, even a short one), then let one win."""
        win, why = verdict(self._precedence(), of_heartbeat(hb))
        detail = (
            f"peer {hb.sender} is also active ({hb.role.value}, epoch {hb.epoch}); "
            f"{'this probe' if win else 'the peer'} wins: {why}"
        )
        if win:
            if hb.epoch < self._epoch:
                return  # the peer has not heard our mode switch yet; it will step down
            if not self._split_brain:
                self._split_brain = True
                self.stats.split_brains += 1
                actions.append(SplitBrain(True, detail))
            return
        self.stats.split_brains += 1
        actions.append(SplitBrain(True, detail))
        if known:
            reason = f"split brain: peer {hb.sender} wins ({why})"
        else:
            reason = f"{hb.role.value} {hb.sender} returned and is active ({why})"
        self._fire(Trigger.LOST_VERDICT, reason, now, actions)
        actions.append(SplitBrain(False, "resolved: this probe stepped down"))
