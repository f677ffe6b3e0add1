"""Timers, role changes, the handover, sink health and gap fill (PURE)."""

from __future__ import annotations

from probepair.failover.acks import AckStream
from probepair.failover.precedence import MASTER_ROLES
from probepair.failover.sending import Sender
from probepair.failover.state import (
    _LATE,
    ACTIVE_ROLES,
    IDLE,
    INF,
    Awaiting,
    Draining,
    HandedOver,
    Idle,
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


class Roles(Sender):
    """The one place the role changes (``_set_role``) and everything that leads to it on a timer."""

    def _run_timers(self, now: float, actions: list[Action]) -> None:
        if now >= self.stall_at:
            stalled = now - (self._next_beat - self._beat_interval)
            self._fire(
                Trigger.STALL,
                f"stalled for {stalled:.1f} s without beating; the peer may have taken over",
                now,
                actions,
            )
        if self._peer_deadline <= now:
            if now - self._peer_deadline > _LATE and not self._silence_deferred:
                # The silence timer ran late: we were stalled, and the peer's heartbeats
                # may be waiting in our socket. Ask, and decide after a round trip.
                self._silence_deferred = True
                c = self.config
                self._peer_deadline = now + max(c.heartbeat_timeout, c.ack_interval)
                self._extra_beat(now, actions, request=True)
            else:
                self._peer_deadline = INF
                self._on_silence(now, actions)
        waiting = self._awaiting
        if waiting is not None and waiting.giveup_at <= now:
            self._awaiting = Awaiting(waiting.serial, INF)
            if self._role is Role.MASTER_PENDING:
                self._fire(
                    Trigger.HANDED_OVER,
                    "peer handed over; its last acks did not arrive",
                    now,
                    actions,
                )
        if self._ack_due <= now:
            self._ack_due = INF
            self._send_acks(now, actions)
        handover = self._handover
        if isinstance(handover, Draining) and (self._in_flight <= 0 or handover.deadline <= now):
            self._finish_drain(now, actions)
        stream = self._stream
        if stream is not None and stream.hole_since + self._bound() <= now:
            stream.advance(now, self._bound())
            self._fill_gaps(now, actions)
        if self._next_beat <= now:
            self._beat(now, actions)
            self._check_sink(now, actions)

    def _on_silence(self, now: float, actions: list[Action]) -> None:
        silent = now - self._silence_since
        self._beat_interval = self.config.beat_interval
        if self._role is Role.SLAVE_STANDBY:
            if self._peer_last_heard is None:
                reason = f"no master heard for {silent:.1f} s since start"
            else:
                what = "master" if self.peer_role in MASTER_ROLES else "active peer"
                reason = f"{what} silent for {silent:.1f} s"
            self._fire(Trigger.SILENCE, reason, now, actions)
        elif self._role is Role.MASTER_PENDING:
            self._fire(Trigger.SILENCE, f"no active peer heard for {silent:.1f} s", now, actions)
        elif self._split_brain:
            self._split_brain = False
            actions.append(SplitBrain(False, f"peer silent for {silent:.1f} s"))

    def _fire(
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
        new = next_role(self._role, trigger)
        if new is None:
            return False
        self._set_role(new, reason, now, actions, beat=beat)
        return True

    def _set_role(
        self, new: Role, reason: str, now: float, actions: list[Action], *, beat: bool = True
    ) -> None:
        """The one effect point: emits RoleChanged, flushes on activation.

        Only ``_fire`` (the table) and ``_adopt_opposite_mode`` (the epoch rule) call it.
        """
        old = self._role
        if new is old:
            return
        was_active = self._active
        self._role = new
        self._role_seq = self._seq + 1  # our next datagram is the first to carry it
        actions.append(RoleChanged(old, new, reason))
        if new in MASTER_ROLES:
            self._beat_interval = self.config.beat_interval
            self._peer_deadline = INF if new is Role.MASTER else now + self._bound()
            self._silence_since = now
        if new is Role.SLAVE_STANDBY:
            self._peer_deadline = now + self._bound()
            self._silence_since = now
        if self._active and not was_active:
            self._end_handover()
            self._awaiting = None
            self._gap_marks = []
            self.stats.failovers += 1
            items = self._standby.drain(now)
            # still in flight: gap fills, our own events
            self._in_flight = len(items) + max(0, self._in_flight)
            if items:
                actions.append(Flush(items))
        if not self._active:
            self._split_brain = False
        if beat:
            self._beat(now, actions)

    def _step_down(
        self,
        trigger: Trigger | None,
        why: str,
        reason: HandoverReason,
        now: float,
        actions: list[Action],
    ) -> None:
        """Leave an active or pending master role for standby, handing over if active.

        ``trigger`` None: the epoch rule (``_adopt_opposite_mode``) decided, not the table.
        """
        was_active = self._active
        if trigger is None:
            self._set_role(Role.SLAVE_STANDBY, why, now, actions, beat=not was_active)
        elif not self._fire(trigger, why, now, actions, beat=not was_active):
            return
        if was_active:
            actions.append(Handover(reason))
            self._start_handover(now, actions)

    def _start_handover(self, now: float, actions: list[Action]) -> None:
        """Stop forwarding for a pending master: drain, ack, then beat HANDED_OVER."""
        deadline = now + self.config.ack_interval + self.config.heartbeat_timeout
        self._handover = Draining(self._peer_boot, deadline)
        if self._in_flight <= 0:
            self._finish_drain(now, actions)
        else:
            self._beat(now, actions)

    def _finish_drain(self, now: float, actions: list[Action]) -> None:
        """Every pending ack goes out before the HANDED_OVER beat that counts them."""
        assert isinstance(self._handover, Draining)  # only a drain finishes
        self._handover = HandedOver(self._handover.boot)
        self._ack_due = INF
        self._send_acks(now, actions)
        self._beat(now, actions)

    def _end_handover(self) -> None:
        self._handover = IDLE

    def _check_sink(self, now: float, actions: list[Action]) -> None:
        """Health-aware roles: hand over while our sink fails and the peer's works."""
        limit = self.config.sink_failover
        if limit <= 0 or self._role is Role.STANDARD or not isinstance(self._handover, Idle):
            return
        failing = self._sink_failing_since
        heard = self._peer_last_heard
        peer_ok = (
            heard is not None
            and now - heard < self._bound()
            and self._peer is not None
            and self._peer.role not in ACTIVE_ROLES
            and self._peer.sink_failing == 0.0
        )
        if self._active and failing is not None and now - failing >= limit and peer_ok:
            self._epoch += 1
            self._sink_handed_over = self.config.mode is Mode.MASTER
            why = f"sink failing for {now - failing:.0f} s while the peer's sink works"
            self._step_down(Trigger.SINK_FAILING, why, HandoverReason.SINK, now, actions)
        elif (
            self._sink_handed_over
            and self._role is Role.SLAVE_STANDBY
            and failing is None
            and now - self._sink_healthy_since >= limit
            and self.config.failback is not Failback.MANUAL
            and self.failback.window_open
        ):
            self._sink_handed_over = False
            self._epoch += 1
            why = f"sink healthy again for {now - self._sink_healthy_since:.0f} s"
            self._fire(Trigger.SINK_RECOVERED, why, now, actions)

    def _stream_for(self, boot: bytes) -> AckStream:
        stream = self._stream
        if stream is None or stream.boot != boot:
            stream = self._stream = AckStream(boot)
            self._gap_marks = []
        return stream

    def _fill_gaps(self, now: float, actions: list[Action]) -> None:
        """Deliver what the active peer passed by, once its acks up to there are in."""
        stream, marks = self._stream, self._gap_marks
        if self._active or stream is None or stream.through is None or not marks:
            return
        through = stream.through
        ready = [h for serial, h in marks if serial <= through]
        if not ready:
            return
        self._gap_marks = [(s, h) for s, h in marks if s > through]
        items = self._standby.take_older_than(max(ready))
        if items:
            self.stats.gap_fills += len(items)
            self._in_flight += len(items)
            actions.append(GapFill(items))

    def _maybe_take_over_from_handover(self, now: float, actions: list[Action]) -> None:
        waiting, stream = self._awaiting, self._stream
        if (
            self._role is Role.MASTER_PENDING
            and waiting is not None
            and stream is not None
            and stream.boot == self._peer_boot
            and (stream.through or 0) >= waiting.serial
        ):
            self._fire(Trigger.HANDED_OVER, "peer handed over", now, actions)
