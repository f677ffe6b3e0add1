"""Timers, role changes, the handover, sink health and gap fill (PURE)."""

from __future__ import annotations

from typing import Final

from probepair.failover.acks import AckStream
from probepair.failover.precedence import MASTER_ROLES
from probepair.failover.sending import Outbox
from probepair.failover.state import (
    _LATE,
    ACTIVE_ROLES,
    IDLE,
    INF,
    Awaiting,
    Draining,
    HandedOver,
    Idle,
    MachineState,
)
from probepair.failover.transitions import Trigger, next_role
from probepair.failover.types import (
    Action,
    Failback,
    Flush,
    GapFill,
    Handover,
    HandoverReason,
    Mode,
    Role,
    RoleChanged,
    SplitBrain,
)

# Seconds a standby's sink must have been reported working before a sink handover goes
# to it: longer than the sink runner's longest retry interval (BACKOFF_MAX, 0.5 s), so a
# sink of ours that returned with the peer's is retried and found working first.
SINK_SETTLE: Final = 1.0


class RoleLogic:
    """The one place the role changes (``set_role``) and everything that leads to it on a
    timer: a component of the machine over its state ``m``, sending through ``out``."""

    __slots__ = ("m", "out")

    def __init__(self, m: MachineState, out: Outbox) -> None:
        self.m = m
        self.out = out

    def run_timers(self, now: float, actions: list[Action]) -> None:
        stream = self.m._stream
        woke = now - self.m._next_beat > _LATE  # our beat is late: we were stalled
        if stream is not None and woke:
            # Our beat is late: we were stalled. A hole in the peer's acks could not be
            # filled meanwhile (the re-send waited in our socket and is unfresh now), so
            # its clock restarts: skipped as given up, it let a gap fill deliver what
            # the missing ack covered (the pair property's soak found it).
            stream.restart_hole(now)
        if now >= self.m.stall_at:
            stalled = now - self.m._last_beat
            self.fire(
                Trigger.STALL,
                f"stalled for {stalled:.1f} s without beating; the peer may have taken over",
                now,
                actions,
            )
        if self.m._peer_deadline <= now:
            c = self.m.config
            decide_at = self.m._silence_decide_at
            if woke or (decide_at == INF and now - self.m._peer_deadline > _LATE):
                # We were stalled (the silence timer or our beat ran late: a stall that
                # ended just after the deadline shows only in the beat), and the peer's
                # heartbeats may be waiting in our socket, unfresh. Ask, and decide after
                # a whole bound: a peer that froze as we woke, for less than the bound,
                # carries on when it wakes (its stall rule); a round trip's wait made
                # both active and both delivered what it queued meanwhile (the soak).
                # Stalled again inside that window: it starts again (it ran out while
                # we were frozen, and the peer's answers may wait in our socket).
                decide_at = now + self.m._bound()
                self.m._silence_decide_at = decide_at
            if decide_at < INF and now < decide_at:
                # Ask again every ack interval until then: one lost request (or answer)
                # on a lossy link must not make us take over from a live master.
                self.m._peer_deadline = min(now + c.ack_interval, decide_at)
                self.out.extra_beat(now, actions, request=True)
            else:
                self.m._peer_deadline = INF
                self.on_silence(now, actions)
        waiting = self.m._awaiting
        if waiting is not None and waiting.giveup_at <= now:
            self.m._awaiting = Awaiting(waiting.serial, INF)
            if self.m._role is Role.MASTER_PENDING:
                self.fire(
                    Trigger.HANDED_OVER,
                    "peer handed over; its last acks did not arrive",
                    now,
                    actions,
                )
        if self.m._ack_due <= now:
            self.m._ack_due = INF
            self.out.send_acks(now, actions)
        handover = self.m._handover
        if isinstance(handover, Draining) and (self.m._in_flight <= 0 or handover.deadline <= now):
            self.finish_drain(now, actions)
        stream = self.m._stream  # (a role change above may have replaced it)
        if stream is not None and stream.hole_since + self.m._bound() <= now:
            stream.advance(now, self.m._bound())
            self.fill_gaps(now, actions)
        if not self.lacks_acks():
            self.m._hole_report_at = INF
        elif self.m._hole_report_at <= now:
            # Each report may be lost, or its re-send: one report (rate-limited away
            # behind another beat) left a lost ack to a resend at the next regular beat,
            # and a handing-over peer's last ack lost twice was duplicated (the soak).
            self.out.report_hole(now, actions)
        if self.m._next_beat <= now:
            self.out.beat(now, actions)
            self.check_sink(now, actions)
            self.check_reclaim(now, actions)

    def lacks_acks(self) -> bool:
        """Acks the peer sent are missing here: a hole in its stream, or (a returning
        master) the last acks of its handover, which only it can re-send."""
        stream = self.m._stream
        if stream is None:
            return False
        if stream.has_hole:
            return True
        wait = self.handover_wait()
        return wait is not None and wait[0].giveup_at < INF and not self.handover_acked(wait)

    def handover_wait(self) -> tuple[Awaiting, AckStream] | None:
        """The handover acks a returning master waits for, and the stream they come on."""
        waiting, stream = self.m._awaiting, self.m._stream
        if (
            self.m._role is Role.MASTER_PENDING
            and waiting is not None
            and stream is not None
            and stream.boot == self.m._peer_boot
        ):
            return waiting, stream
        return None

    @staticmethod
    def handover_acked(wait: tuple[Awaiting, AckStream]) -> bool:
        waiting, stream = wait
        return (stream.through or 0) >= waiting.serial

    def on_silence(self, now: float, actions: list[Action]) -> None:
        silent = now - self.m._silence_since
        self.m._beat_interval = self.m.config.beat_interval
        if self.m._role is Role.SLAVE_STANDBY:
            if self.m._peer_last_heard is None:
                reason = f"no master heard for {silent:.1f} s since start"
            else:
                what = "master" if self.m.peer_role in MASTER_ROLES else "active peer"
                reason = f"{what} silent for {silent:.1f} s"
            self.fire(Trigger.SILENCE, reason, now, actions)
        elif self.m._role is Role.MASTER_PENDING:
            self.fire(Trigger.SILENCE, f"no active peer heard for {silent:.1f} s", now, actions)
        elif self.m._split_brain:
            self.m._split_brain = False
            actions.append(SplitBrain(False, f"peer silent for {silent:.1f} s"))

    def fire(
        self,
        trigger: Trigger,
        reason: str,
        now: float,
        actions: list[Action],
        *,
        beat: bool = True,
    ) -> bool:
        """The one decision point: move the role as ``ROLE_TRANSITIONS`` says, if it does.

        Returns False (and changes nothing) when the table has no entry for the current
        role and ``trigger``.
        """
        new = next_role(self.m._role, trigger)
        if new is None:
            return False
        self.set_role(new, reason, now, actions, beat=beat)
        return True

    def set_role(
        self, new: Role, reason: str, now: float, actions: list[Action], *, beat: bool = True
    ) -> None:
        """The one effect point: emits RoleChanged, flushes on activation.

        Only ``fire`` (the table) and ``PeerInputs.adopt_opposite_mode`` (the epoch rule) call it.
        """
        old = self.m._role
        if new is old:
            return
        was_active = self.m._active
        self.m._role = new
        self.m._role_seq = self.m._seq + 1  # our next datagram is the first to carry it
        actions.append(RoleChanged(old, new, reason))
        if new in MASTER_ROLES:
            self.m._beat_interval = self.m.config.beat_interval
            self.m._peer_deadline = INF if new is Role.MASTER else now + self.m._bound()
            self.m._silence_since = now
        if new is Role.SLAVE_STANDBY:
            self.m._peer_deadline = now + self.m._bound()
            self.m._silence_since = now
        if self.m._active and not was_active:
            self.end_handover()
            self.m._awaiting = None
            self.m._gap_marks = []
            self.m.stats.failovers += 1
            items = self.m._standby.drain(now)
            # still in flight: gap fills, our own events
            self.m._in_flight = len(items) + max(0, self.m._in_flight)
            if items:
                actions.append(Flush(items))
        if not self.m._active:
            self.m._split_brain = False
        if was_active != self.m._active:
            self.m._passed_spool = False  # a new period: the peer has passed nothing yet
        if beat:
            self.out.beat(now, actions)

    def step_down(
        self,
        trigger: Trigger | None,
        why: str,
        reason: HandoverReason,
        now: float,
        actions: list[Action],
    ) -> None:
        """Leave an active or pending master role for standby, handing over if active.

        ``trigger`` None: the epoch rule (``PeerInputs.adopt_opposite_mode``) decided,
        not the table.
        """
        was_active = self.m._active
        if trigger is None:
            self.set_role(Role.SLAVE_STANDBY, why, now, actions, beat=not was_active)
        elif not self.fire(trigger, why, now, actions, beat=not was_active):
            return
        if was_active:
            actions.append(Handover(reason))
            self.start_handover(now, actions)

    def start_handover(self, now: float, actions: list[Action]) -> None:
        """Stop forwarding for a pending master: drain, ack, then beat HANDED_OVER."""
        deadline = now + self.m.config.ack_interval + self.m.config.heartbeat_timeout
        self.m._handover = Draining(self.m._peer_boot, deadline)
        if self.m._in_flight <= 0:
            self.finish_drain(now, actions)
        else:
            self.out.beat(now, actions)

    def finish_drain(self, now: float, actions: list[Action]) -> None:
        """Every pending ack goes out before the HANDED_OVER beat that counts them."""
        assert isinstance(self.m._handover, Draining)  # only a drain finishes
        self.m._handover = HandedOver(self.m._handover.boot)
        self.m._ack_due = INF
        self.out.send_acks(now, actions)
        self.out.beat(now, actions)

    def end_handover(self) -> None:
        self.m._handover = IDLE

    def check_sink(self, now: float, actions: list[Action]) -> None:
        """Health-aware roles: hand over while our sink fails and the peer's works."""
        limit = self.m.config.sink_failover
        if limit <= 0 or self.m._role is Role.STANDARD or not isinstance(self.m._handover, Idle):
            return
        failing = self.m._sink_failing_since
        heard, peer = self.m._peer_last_heard, self.m._peer
        standby = (  # a fresh standby peer: the only one a sink handover can go to
            peer
            if heard is not None and now - heard < self.m._bound() and peer is not None
            and peer.role not in ACTIVE_ROLES
            else None
        )
        # Verified, not assumed: the standby's own check (or delivery) passed within
        # SinkFailover, counted to now (the age is as of its heartbeat, heard earlier).
        # And working for SINK_SETTLE already: when both sinks return at once, ours is
        # retried within that (the runner's back-off) and found working, so the role
        # does not move (with a flush and a replay) for a sink that is back.
        ok_since = self.m._peer_sink_ok_since
        peer_ok = (
            standby is not None and heard is not None and standby.sink_failing == 0.0
            and standby.sink_verified_age + (now - heard) < limit
            and ok_since is not None and now - ok_since >= SINK_SETTLE
        )
        if failing is None:
            self.m._suppressed = False
        elif (
            self.m._active and now - failing >= limit and standby is not None and not peer_ok
            and not self.m._suppressed
        ):
            # Both sinks fail: handing over would move the role into a dead sink and back
            # (each move replays and flushes). Stay; the first sink back delivers.
            self.m._suppressed = True
            self.m.stats.handovers_suppressed += 1
        if self.m._active and failing is not None and now - failing >= limit and peer_ok:
            self.m._suppressed = False
            self.m._epoch += 1
            why = f"sink failing for {now - failing:.0f} s while the peer's sink works"
            self.step_down(Trigger.SINK_FAILING, why, HandoverReason.SINK, now, actions)

    def check_reclaim(self, now: float, actions: list[Action]) -> None:
        """Roles converge: the designated master (``_designated``: the props, or the
        newest operator/rules switch) that an automatic switch moved to a slave role takes
        the role back once the cause is gone and failback allows it, whatever the epochs
        reached meanwhile. Runs at each of our beats."""
        m, c = self.m, self.m.config
        role = m._role
        if (
            m._designated is not Mode.MASTER
            or role not in (Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE)
            or c.failback is Failback.MANUAL
            or not isinstance(m._handover, Idle)
        ):
            m._reclaim_since = None
            return
        heard, peer = m._peer_last_heard, m._peer
        peer_active = (
            heard is not None and now - heard < m._bound() and peer is not None
            and peer.role in ACTIVE_ROLES
        )
        if role is Role.SLAVE_ACTIVE:
            # Forwarding already (the peer is silent or standby): only the label is
            # wrong. Both active is a split brain, which the verdict settles first. In
            # the window only: at a partition's heal the higher epoch wins the verdict.
            if not peer_active and m.failback.window_open:
                m._epoch += 1
                self.fire(Trigger.RECLAIM, "the designated master is the active one", now,
                          actions)
            return
        failing = m._sink_failing_since
        healthy_for = now - m._sink_healthy_since
        if not (
            peer_active
            and failing is None
            and (c.sink_failover <= 0 or healthy_for >= c.sink_failover)
            and m.failback.window_open
        ):
            m._reclaim_since = None
            return
        if m._reclaim_since is None:
            m._reclaim_since = now
        if now - m._reclaim_since < c.failback_delay:
            return  # FailbackDelay: the cause must stay gone that long
        m._reclaim_since = None
        m._epoch += 1
        why = (
            f"designated master, sink healthy for {min(healthy_for, 1e9):.0f} s: "
            "taking the role back"
        )
        self.fire(Trigger.RECLAIM, why, now, actions)

    def stream_for(self, boot: bytes) -> AckStream:
        stream = self.m._stream
        if stream is None or stream.boot != boot:
            stream = self.m._stream = AckStream(boot)
            self.m._gap_marks = []
        return stream

    def fill_gaps(self, now: float, actions: list[Action]) -> None:
        """Deliver what the active peer passed by, once its acks up to there are in."""
        stream, marks = self.m._stream, self.m._gap_marks
        if self.m._active or stream is None or stream.through is None or not marks:
            return
        through = stream.through
        ready = [h for serial, h in marks if serial <= through]
        if not ready:
            return
        self.m._gap_marks = [(s, h) for s, h in marks if s > through]
        items = self.m._standby.take_older_than(max(ready))
        if items:
            self.m.stats.gap_fills += len(items)
            self.m._in_flight += len(items)
            actions.append(GapFill(items))

    def maybe_take_over_from_handover(self, now: float, actions: list[Action]) -> None:
        wait = self.handover_wait()
        if wait is not None and self.handover_acked(wait):
            self.fire(Trigger.HANDED_OVER, "peer handed over", now, actions)
