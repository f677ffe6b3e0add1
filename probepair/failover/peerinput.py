"""What a fresh datagram from the peer changes: acks, heartbeats, split brain (PURE)."""

from __future__ import annotations

from probepair.failover.precedence import MASTER_ROLES, Precedence, of_heartbeat, verdict
from probepair.failover.roles import RoleLogic
from probepair.failover.sending import Outbox
from probepair.failover.state import (
    _HANDOVER_FLAGS,
    ACTIVE_ROLES,
    INF,
    Awaiting,
    Idle,
    MachineState,
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


class PeerInputs:
    """Handles datagrams that ``FailoverMachine.receive`` has proven fresh: a component
    of the machine over its state ``m``, sending through ``out``, moving roles through
    ``roles``."""

    __slots__ = ("m", "out", "roles")

    def __init__(self, m: MachineState, out: Outbox, roles: RoleLogic) -> None:
        self.m = m
        self.out = out
        self.roles = roles

    def on_ack(self, msg: Ack, now: float, actions: list[Action]) -> None:
        stream = self.roles.stream_for(msg.boot_id)
        if not stream.receive(msg.serial):
            return  # a re-sent ack we already had
        newest = self.m._standby.ack(msg.keys, now)
        if newest is not None and not self.m._active:
            self.m._passed_spool = True
        if not self.m._active and msg.role in ACTIVE_ROLES:
            gap = self.m.config.gap_timeout
            if newest is not None:
                self.m._gap_marks.append((msg.serial, newest - gap))
            if msg.flags & Flag.IDLE:
                self.m._gap_marks.append((msg.serial, self.written_after(msg, now) - gap))
        stream.advance(now, self.m._bound())
        peer = self.m._peer
        if (
            self.m._flush_wait_until < INF  # a flush waited for these acks: they are in
            and peer is not None
            and peer.boot_id == msg.boot_id
            and (stream.through or 0) >= peer.acks_sent
            and self.flushes_for(peer)
        ):
            self.handover_from_standby(peer, now, actions)
        if stream.has_hole and self.m._hole_report_at == INF:
            # Say at once which acks we hold without a hole: the peer re-sends what is
            # missing now rather than at our next beat (a lost ack that waits a beat
            # period could be lost for good with the peer, and duplicated at takeover).
            self.out.report_hole(now, actions)
        self.roles.maybe_take_over_from_handover(now, actions)

    def written_after(self, msg: Heartbeat | Ack, now: float) -> float:
        """A time the peer wrote ``msg`` after: when we sent what it echoes.

        An IDLE claim ("all I received is delivered") covers what the peer had when it
        wrote it, not what we hold when we read it: read late (we were stalled, the
        datagram waited in our socket), ``now`` would let a gap fill repeat what the
        peer's next acks, also waiting there, cover (the pair property found it).
        """
        sent = self.m._fresh.sent_at(msg.echo_seq)
        return now if sent is None else min(now, sent)

    def precedence(self) -> Precedence:
        c = self.m.config
        return (
            self.m._epoch,
            self.m._role in MASTER_ROLES,
            c.mode is Mode.MASTER,
            c.node_id,
            c.boot_id,
        )

    def on_heartbeat(self, hb: Heartbeat, newest: bool, now: float, actions: list[Action]) -> None:
        known = hb.boot_id == self.m._peer_boot
        if not known:
            if self.m._peer is not None:
                # The peer restarted: a switch either of us made is over, and the props
                # say again who is master (the README: a switch holds until a restart).
                self.m._designated = self.m.config.mode
                self.m._request_epoch = None
            self.m._peer = hb  # a new boot's first fresh heartbeat is its newest
            self.m._awaiting = None
            # Acks of the last bound may concern events the new boot holds, and so may
            # older ones if it holds older events: a boot that is not new, only unheard
            # (it froze, its beats were lost, our acks went unfresh in its socket), held
            # events from long before (a soak: a standby frozen from 1 s to 9 s
            # delivered again 196 events acked meanwhile). Re-send them all.
            base = self.m._acks.base(now, hb.held_age + self.m._bound())
            self.m._base_for = (hb.boot_id, base)
            self.out.resend(self.m._acks.since(base), now, actions)
        else:
            assert self.m._base_for is not None
            heard = max(hb.acks_heard, self.m._base_for[1] - 1)
            self.out.resend(self.m._acks.missing(heard, hb.echo_seq), now, actions)
        stream = self.roles.stream_for(hb.boot_id)
        if hb.ack_base:
            stream.set_base(hb.ack_base)
        if not self.m._active and hb.role in ACTIVE_ROLES and hb.flags & Flag.IDLE:
            idle_at = self.written_after(hb, now)
            self.m._gap_marks.append((hb.acks_sent, idle_at - self.m.config.gap_timeout))
        stream.advance(now, self.m._bound())
        if not newest:
            return  # overtaken by a newer heartbeat: its role and flags are history
        self.m._peer = hb
        self.m._peer_last_heard = now
        if hb.sink_failing > 0.0 or not known:
            self.m._peer_sink_ok_since = None
        if hb.sink_failing == 0.0 and self.m._peer_sink_ok_since is None:
            self.m._peer_sink_ok_since = now
        if hb.config_digest != self.m._peer_digest:
            self.m._peer_digest = hb.config_digest
            if self.m.config_drift:
                actions.append(ConfigDrift(self.m.config.config_digest, hb.config_digest))
        peer_master = hb.role in MASTER_ROLES
        peer_active = hb.role in ACTIVE_ROLES
        if hb.epoch > self.m._epoch:
            self.m._epoch = hb.epoch
            if known and hb.flags & Flag.REQUESTED:
                # The peer's operator or rules chose its mode. Not on first contact: a
                # switch made before this boot or the peer's is over (either restart
                # ends it, and the peer forgets its own when it sees our new boot).
                self.m._designated = Mode.SLAVE if hb.role in MASTER_ROLES else Mode.MASTER
                self.m._request_epoch = None
            self.adopt_opposite_mode(hb, now, actions)
        if peer_master and self.m.mode is Mode.SLAVE:
            self.m._beat_interval = hb.beat_interval  # OMNIbus: the slave adopts it
        pending_for_standby = (
            self.m._role is Role.MASTER_PENDING and hb.role is Role.SLAVE_STANDBY
        )
        if (
            self.m._active
            or peer_active
            or peer_master
            or hb.flags & _HANDOVER_FLAGS
            or pending_for_standby
        ):
            # A plain standby peer does not count: two standby slaves must not keep
            # each other from taking over. But a standby that hears us pending flushes
            # for us and hands over (``flushes_for``): while it beats, its handover, not
            # the bound since we became pending, decides (after a double stall the
            # bound ran out mid-handover, and both flushed: the soak).
            self.m._peer_deadline = now + self.m._bound()
            self.m._silence_since = now
            self.m._silence_decide_at = INF
        handover = self.m._handover
        if not isinstance(handover, Idle) and (
            hb.boot_id != handover.boot or hb.role is Role.MASTER
        ):
            self.roles.end_handover()  # the master is active (handover complete) or restarted

        if self.m._active and peer_active:
            self.both_active(hb, known, now, actions)
        elif self.m._active:
            if self.m._split_brain:
                self.m._split_brain = False
                actions.append(SplitBrain(False, f"resolved: peer {hb.sender} is {hb.role.value}"))
            if self.m._role is Role.SLAVE_ACTIVE and hb.role is Role.MASTER_PENDING:
                if self.m.config.failback is not Failback.MANUAL and self.m.failback.allows(
                    hb.boot_id, now, self.m._bound()
                ):
                    why = f"handing over to returning master {hb.sender}"
                    self.roles.step_down(
                        Trigger.PENDING_MASTER, why, HandoverReason.FAILBACK, now, actions
                    )
            elif self.m._role is Role.MASTER and hb.role is Role.MASTER_PENDING:
                self.resolve_masters(hb, now, actions)
        elif self.m._role is Role.MASTER_PENDING:
            if peer_master:
                self.resolve_masters(hb, now, actions)
            elif hb.flags & Flag.HANDED_OVER:
                waiting = self.m._awaiting
                if waiting is None or waiting.giveup_at == INF:
                    giveup_at = now + self.m._beat_interval + self.m.config.beat_threshold
                else:
                    giveup_at = waiting.giveup_at
                self.m._awaiting = Awaiting(hb.acks_sent, giveup_at)
                self.roles.maybe_take_over_from_handover(now, actions)
                if self.m._role is Role.MASTER_PENDING and self.m._hole_report_at == INF:
                    self.out.report_hole(now, actions)  # tell the peer which acks we lack
        if self.flushes_for(hb):
            self.handover_from_standby(hb, now, actions)
        else:
            self.m._flush_wait_until = INF
        self.roles.check_sink(now, actions)

    def flushes_for(self, hb: Heartbeat) -> bool:
        """A standby not handing over hears a pending master: it flushes, then hands over."""
        return (
            self.m._role is Role.SLAVE_STANDBY
            and hb.role is Role.MASTER_PENDING
            and isinstance(self.m._handover, Idle)
        )

    def handover_from_standby(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        """Flush what nobody forwarded while the master was away, then hand over.

        A pending master of the boot whose acks we follow (a master back from a stall)
        may have delivered what we hold, its acks stuck unfresh in our socket while we
        were stalled ourselves: we wait until its acks up to ``acks_sent`` are in (it
        re-sends what our heartbeats say is missing), so the flush repeats none of its
        deliveries; past one bound, its next heartbeat flushes whatever is missing. A new
        boot's acks say nothing of this.
        """
        stream = self.m._stream
        lacking = (
            stream is not None
            and stream.boot == hb.boot_id
            and stream.through is not None
            and stream.through < hb.acks_sent
        )
        if lacking:
            if self.m._flush_wait_until == INF:
                self.m._flush_wait_until = now + self.m._bound()
                self.out.extra_beat(now, actions)  # our acks_heard: the re-sends come
            if now < self.m._flush_wait_until:
                return
        self.m._flush_wait_until = INF
        items = self.m._standby.drain(now)
        # Still in flight from an earlier active period counts too; a surplus of
        # deliveries must not make the flush look drained at once.
        self.m._in_flight = max(self.m._in_flight, 0) + len(items)
        if items:
            actions.append(Flush(items))
        self.roles.start_handover(now, actions)

    def adopt_opposite_mode(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        """The special case outside ROLE_TRANSITIONS: a higher epoch flips our mode.

        The target depends on the sender's role and flags, not on a trigger alone.
        """
        reason = f"peer {hb.sender} is {hb.role.value} at epoch {hb.epoch}"
        if hb.role in MASTER_ROLES:
            if self.m._active and hb.role is Role.MASTER_PENDING:
                self.roles.step_down(None, reason, HandoverReason.FAILBACK, now, actions)
            elif self.m._role in MASTER_ROLES or (
                self.m._role is Role.SLAVE_ACTIVE and hb.role is Role.MASTER
            ):
                self.roles.set_role(Role.SLAVE_STANDBY, reason, now, actions)
        elif self.m._role is Role.SLAVE_ACTIVE:
            self.roles.set_role(Role.MASTER, reason, now, actions)
        elif self.m._role is Role.SLAVE_STANDBY:
            if hb.role in ACTIVE_ROLES or hb.flags & _HANDOVER_FLAGS:
                self.roles.end_handover()
                self.roles.set_role(Role.MASTER_PENDING, reason, now, actions)
            else:
                self.roles.set_role(Role.MASTER, reason, now, actions)

    def resolve_masters(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        win, why = verdict(self.precedence(), of_heartbeat(hb))
        if not win:
            self.roles.fire(
                Trigger.LOST_VERDICT,
                f"peer {hb.sender} is also master and wins ({why})",
                now,
                actions,
            )

    def both_active(self, hb: Heartbeat, known: bool, now: float, actions: list[Action]) -> None:
        """Both forward: count it (any overlap, even a short one), then let one win."""
        win, why = verdict(self.precedence(), of_heartbeat(hb))
        detail = (
            f"peer {hb.sender} is also active ({hb.role.value}, epoch {hb.epoch}); "
            f"{'this probe' if win else 'the peer'} wins: {why}"
        )
        if win:
            if hb.epoch < self.m._epoch:
                return  # the peer has not heard our mode switch yet; it will step down
            if not self.m._split_brain:
                self.m._split_brain = True
                self.m.stats.split_brains += 1
                actions.append(SplitBrain(True, detail))
            return
        self.m.stats.split_brains += 1
        actions.append(SplitBrain(True, detail))
        if known:
            reason = f"split brain: peer {hb.sender} wins ({why})"
        else:
            reason = f"{hb.role.value} {hb.sender} returned and is active ({why})"
        self.roles.fire(Trigger.LOST_VERDICT, reason, now, actions)
        actions.append(SplitBrain(False, "resolved: this probe stepped down"))
