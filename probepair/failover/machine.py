"""The failover machine: one probe's side of the pair (PURE; see the package docstring)."""

from __future__ import annotations

import enum
import math
from typing import Final

from probepair.failover.acks import AckLog, AckStream, SentAck
from probepair.failover.freshness import Freshness
from probepair.failover.precedence import MASTER_ROLES, Precedence, of_heartbeat, verdict
from probepair.failover.types import (
    Action,
    ConfigDrift,
    DropReason,
    Failback,
    FailoverConfig,
    Flush,
    GapFill,
    Handover,
    HandoverReason,
    Mode,
    Rejected,
    RoleChanged,
    Send,
    SplitBrain,
)
from probepair.failover.window import FailbackGate
from probepair.standby import StandbyBuffer
from probepair.wire import MAX_ACK_KEYS, Ack, Flag, Heartbeat, Role

INF: Final = math.inf
ACTIVE_ROLES: Final = frozenset({Role.MASTER, Role.SLAVE_ACTIVE, Role.STANDARD})
_HANDOVER_FLAGS: Final = Flag.HANDING_OVER | Flag.HANDED_OVER
_ECHO_REFRESH: Final = 0.75  # of the bound: past this echo age we beat early, see receive()
# seconds: a timer this late means the process was stalled (scheduling lag is ms)
_LATE: Final = 0.25


class _Handover(enum.Enum):
    NONE = enum.auto()
    DRAINING = enum.auto()  # stepped down; waiting for the sink to deliver what we forwarded
    DONE = enum.auto()  # drained and acked; beating HANDED_OVER until the master is active


class FailoverMachine:
    """One probe's side of the pair. See the package docstring for the rules.

    Args:
        config: the failover settings.
        now: the current time; the first heartbeat is due at ``now``.
    """

    def __init__(self, config: FailoverConfig, *, now: float) -> None:
        self.config = config
        self._epoch = 0
        self._seq = 0
        self._silence_since = now  # start, or the last heartbeat that re-armed the timer
        self._beat_interval = config.beat_interval
        self._standby = StandbyBuffer(config.buffer_limit, config.retention, config.buffer_bytes)
        self._fresh = Freshness(config.boot_id, keep=config.retention)
        self._acks = AckLog(config.retention, config.buffer_limit)
        self._stream: AckStream | None = None  # acks from the peer's current boot
        self._base_for: tuple[bytes, int] | None = None  # our ack_base for the peer's boot
        self._gap_marks: list[tuple[int, float]] = []  # (peer ack serial, horizon)
        self._pending_acks: list[bytes] = []
        self._handover = _Handover.NONE
        self._handover_boot: bytes | None = None
        self._forwarded = 0  # since we last became active; with _delivered: in flight
        self._delivered = 0
        self._feed_idle = False
        self._sink_failing_since: float | None = None
        self._sink_healthy_since = now
        self._spool_bytes = 0
        self._sink_handed_over = False
        self.failback = FailbackGate(config.failback_delay)  # window_open: set by the runtime
        self._peer_boot: bytes | None = None
        self._peer_role: Role | None = None
        self._peer_last_heard: float | None = None
        self._peer_seq = 0  # newest fresh heartbeat seq from _peer_boot
        self._peer_sink_failing = 0.0
        self._peer_spool_bytes = 0
        self._awaited_serial: int | None = None  # from the peer's HANDED_OVER beat
        self._peer_digest = config.config_digest
        self._split_brain = False
        self._active_since = now
        self._next_beat = INF
        # Extra beats are rate-limited, answers apart from our own requests: a burst of
        # stale datagrams after a stall must not silence the answer a live peer awaits.
        self._next_extra = {False: -INF, True: -INF}  # request? -> next allowed
        # An active master whose beat is overdue by more than the takeover bound was
        # stalled (SIGSTOP, a frozen VM): its peer has likely taken over, so the next
        # tick makes it a pending master that waits for the handover (see stall_at).
        self._stall_at = INF
        self._peer_deadline = INF
        self._silence_deferred = False  # the late silence timer waited for one round trip
        self._ack_due = INF
        self._drain_deadline = INF
        self._giveup = INF
        self.failovers = 0  # times this probe became active after start
        self.split_brains = 0
        self.gap_fills = 0  # events delivered because the active peer passed them by
        self.acks_resent = 0
        if config.mode is Mode.STANDARD:
            self._role = Role.STANDARD
        else:
            if config.mode is Mode.SLAVE:
                self._role = Role.SLAVE_STANDBY
            elif config.failback is Failback.IMMEDIATE:
                self._role = Role.MASTER
            else:
                self._role = Role.MASTER_PENDING
            self._next_beat = now
            if self._role is not Role.MASTER:
                self._peer_deadline = now + self._bound()
        self._active = self._role in ACTIVE_ROLES

    # -- properties -------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """The current role."""
        return self._role

    @property
    def active(self) -> bool:
        """True while this probe forwards events to its sink."""
        return self._active

    @property
    def mode(self) -> Mode:
        """The effective mode: the configured one until a switch or a higher epoch."""
        if self._role is Role.STANDARD:
            return Mode.STANDARD
        return Mode.MASTER if self._role in MASTER_ROLES else Mode.SLAVE

    @property
    def epoch(self) -> int:
        """The role-switch counter carried by heartbeats."""
        return self._epoch

    @property
    def seq(self) -> int:
        """Sequence number of the last datagram sent (0: none yet)."""
        return self._seq

    @property
    def buffer_depth(self) -> int:
        """Events held un-forwarded."""
        return len(self._standby)

    @property
    def buffer_bytes(self) -> int:
        """Payload bytes held un-forwarded."""
        return self._standby.bytes

    @property
    def stall_at(self) -> float:
        """Past this time an active master counts as stalled (``math.inf``: not master).

        ``tick`` then makes it ``master-pending``. The runtime checks it before offering
        events, so a master that wakes from a stall ticks before it forwards anything.
        """
        return self._stall_at

    @property
    def duplicates_avoided(self) -> int:
        """Events dropped on arrival because the peer had already acked them."""
        return self._standby.duplicates_avoided

    @property
    def acked(self) -> int:
        """Held events removed by the peer's acks."""
        return self._standby.acked

    @property
    def beat_interval(self) -> float:
        """The beat interval in effect (a slave's is the master's)."""
        return self._beat_interval

    @property
    def peer_last_heard(self) -> float | None:
        """When the last fresh datagram from the peer arrived (None: never)."""
        return self._peer_last_heard

    @property
    def peer_role(self) -> Role | None:
        """The role the peer's last fresh heartbeat carried."""
        return self._peer_role

    @property
    def peer_sink_failing(self) -> float:
        """Seconds the peer's sink had been failing at its last heartbeat (0: healthy)."""
        return self._peer_sink_failing

    @property
    def peer_spool_bytes(self) -> int:
        """The peer's spool bytes at its last heartbeat."""
        return self._peer_spool_bytes

    @property
    def split_brain(self) -> bool:
        """True from a detected split brain until the peer is heard inactive or silent."""
        return self._split_brain

    @property
    def config_drift(self) -> bool:
        """True when the peer's last config digest differs from ours."""
        return self._peer_digest != self.config.config_digest

    @property
    def handing_over(self) -> bool:
        """True while this probe hands over to a pending master."""
        return self._handover is not _Handover.NONE

    @property
    def sink_healthy(self) -> bool:
        """False while the runtime reports our sink failing."""
        return self._sink_failing_since is None

    @property
    def dropped(self) -> dict[DropReason, int]:
        """Buffered events dropped without forwarding, by reason."""
        return {
            DropReason.BUFFER_FULL: self._standby.dropped_full,
            DropReason.BUFFER_BYTES: self._standby.dropped_bytes,
            DropReason.RETENTION: self._standby.dropped_retention,
        }

    def next_deadline(self) -> float:
        """When ``tick`` must be called next (``math.inf``: nothing scheduled)."""
        hole = INF
        if self._stream is not None and self._stream.hole_deadline < INF:
            hole = self._stream.hole_deadline + self._bound()
        return min(
            self._next_beat,
            self._peer_deadline,
            self._ack_due,
            self._drain_deadline,
            self._giveup,
            hole,
        )

    # -- hot path ---------------------------------------------------------------------

    def event(self, key: bytes, payload: bytes, now: float) -> bool:
        """An event arrived: True means forward ``payload`` to the sink now.

        False means the machine holds it (or dropped it because the peer already
        acked its key). Runs no timers, for speed: the runtime ticks separately.
        """
        standby = self._standby
        unseen = standby.unseen
        if unseen and key in unseen:
            del unseen[key]
            standby.duplicates_avoided += 1
            return False
        if self._active:
            self._forwarded += 1
            return True
        standby.hold(key, payload, now)
        return False

    def delivered(self, keys: list[bytes], now: float) -> None:
        """The sink acknowledged ``keys``; they are acked to the peer within ack_interval.

        Runs no timers; it may only move the deadline to ``now + ack_interval``.
        """
        if self._role is Role.STANDARD:
            return
        self._delivered += len(keys)
        if keys:
            self._pending_acks.extend(keys)
        if self._ack_due == INF and (keys or self._handover is _Handover.DRAINING):
            self._ack_due = now + self.config.ack_interval

    def feed_idle(self, idle: bool) -> None:
        """Whether our feed's source was empty when last checked (runtime fact).

        Only with it may our acks claim ``IDLE`` (everything we received is delivered),
        which lets the standby fill gaps at the end of a burst. Runs no timers.
        """
        self._feed_idle = idle

    def sink_state(self, failing_since: float | None, spool_bytes: int, now: float) -> None:
        """The runtime's view of our sink: failing since when (None: delivering)."""
        if failing_since is None and self._sink_failing_since is not None:
            self._sink_healthy_since = now
        self._sink_failing_since = failing_since
        self._spool_bytes = spool_bytes

    # -- inputs with actions ------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Run the timers due at ``now``."""
        actions: list[Action] = []
        self._run_timers(now, actions)
        return actions

    def receive(self, msg: Heartbeat | Ack, now: float) -> list[Action]:
        """A decoded, authenticated, replay-checked datagram from the peer.

        Only a *fresh* datagram (one that echoes a sequence number we sent within the
        takeover bound) may change anything; any other is reported as ``Rejected`` and
        answered with an echo request, so a live peer proves itself within one round trip.
        """
        actions: list[Action] = []
        if self._role is Role.STANDARD:
            return actions
        self._run_timers(now, actions)
        self._fresh.heard(msg.boot_id, msg.seq)
        age = self._fresh.age(msg.echo_boot, msg.echo_seq, now)
        bound = self._bound()
        fresh = age is not None and age <= bound
        if isinstance(msg, Heartbeat) and msg.flags & Flag.ECHO_REQUEST and fresh:
            # Answer fresh requests only: stale ones queued during a stall must not use up
            # the answer a live peer is waiting for (an unproven peer gets our own request).
            self._extra_beat(now, actions)
        if age is None or not fresh:
            actions.append(Rejected("unfresh"))
            self._extra_beat(now, actions, request=True)
            return actions
        if age > _ECHO_REFRESH * bound:
            self._extra_beat(now, actions)  # our last datagrams may be lost: refresh
        if isinstance(msg, Ack):
            self._on_ack(msg, now, actions)
        else:
            # Heartbeats only: an ack overtaking a heartbeat must not make it look old.
            newest = msg.boot_id != self._peer_boot or msg.seq > self._peer_seq
            self._on_heartbeat(msg, newest, now, actions)
            if newest:
                self._peer_seq = msg.seq
        self._fill_gaps(now, actions)
        return actions

    def request_mode(
        self, mode: Mode, now: float, reason: HandoverReason = HandoverReason.RULES
    ) -> list[Action]:
        """Switch to ``mode`` at once (``%Mode`` in rules, or an operator).

        A real switch increments the epoch, so the peer adopts the opposite mode.
        Requesting the mode already held is a no-op (rules may set it per event);
        ``standard`` cannot be requested at run time and is ignored.
        """
        actions: list[Action] = []
        if self._role is Role.STANDARD:
            return actions
        self._run_timers(now, actions)
        if mode is Mode.MASTER and self._role is not Role.MASTER:
            self._epoch += 1
            self._end_handover()
            self._set_role(Role.MASTER, f"mode set to master (epoch {self._epoch})", now, actions)
        elif mode is Mode.SLAVE and (self._active or self._role is Role.MASTER_PENDING):
            self._epoch += 1
            self._step_down(f"mode set to slave (epoch {self._epoch})", reason, now, actions)
        return actions

    # -- timers -------------------------------------------------------------------------

    def _bound(self) -> float:
        c = self.config
        return self._beat_interval + c.beat_threshold + c.heartbeat_timeout

    def _run_timers(self, now: float, actions: list[Action]) -> None:
        if now >= self._stall_at:
            self._stall_at = INF
            stalled = now - (self._next_beat - self._beat_interval)
            self._set_role(
                Role.MASTER_PENDING,
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
        if self._giveup <= now:
            self._giveup = INF
            if self._role is Role.MASTER_PENDING:
                self._set_role(
                    Role.MASTER, "peer handed over; its last acks did not arrive", now, actions
                )
        if self._ack_due <= now:
            self._ack_due = INF
            self._send_acks(now, actions)
        if self._handover is _Handover.DRAINING and (
            self._forwarded <= self._delivered or self._drain_deadline <= now
        ):
            self._finish_drain(now, actions)
        elif self._drain_deadline <= now:
            self._drain_deadline = INF
        stream = self._stream
        if stream is not None and stream.hole_deadline + self._bound() <= now:
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
                what = "master" if self._peer_role in MASTER_ROLES else "active peer"
                reason = f"{what} silent for {silent:.1f} s"
            self._set_role(Role.SLAVE_ACTIVE, reason, now, actions)
        elif self._role is Role.MASTER_PENDING:
            self._set_role(Role.MASTER, f"no active peer heard for {silent:.1f} s", now, actions)
        elif self._split_brain:
            self._split_brain = False
            actions.append(SplitBrain(False, f"peer silent for {silent:.1f} s"))

    # -- sending ------------------------------------------------------------------------

    def _next_seq(self, now: float) -> int:
        self._seq += 1
        self._fresh.sent(self._seq, now)
        return self._seq

    def _pending(self) -> int:
        return max(0, self._forwarded - self._delivered) if self._active else 0

    def _idle(self) -> bool:
        return self._active and self._feed_idle and self._forwarded <= self._delivered

    def _beat(
        self, now: float, actions: list[Action], *, regular: bool = True, request: bool = False
    ) -> None:
        flags = Flag.NONE
        if self.config.mode is Mode.MASTER:
            flags |= Flag.CONFIGURED_MASTER
        if self._handover is _Handover.DRAINING:
            flags |= Flag.HANDING_OVER
        elif self._handover is _Handover.DONE:
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
            self._stall_at = self._next_beat + self._bound() if self._role is Role.MASTER else INF
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
            self.acks_resent += 1
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

    # -- role changes ---------------------------------------------------------------------

    def _set_role(
        self, new: Role, reason: str, now: float, actions: list[Action], *, beat: bool = True
    ) -> None:
        """The one place the role changes: emits RoleChanged, flushes on activation."""
        old = self._role
        if new is old:
            return
        was_active = self._active
        self._role = new
        if new is not Role.MASTER:
            self._stall_at = INF
        self._active = new in ACTIVE_ROLES
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
            self._giveup = INF
            self._awaited_serial = None
            self._gap_marks = []
            self._active_since = now
            self.failovers += 1
            items = self._standby.drain(now)
            self._forwarded, self._delivered = len(items), 0
            if items:
                actions.append(Flush(items))
        if not self._active:
            self._split_brain = False
        if beat:
            self._beat(now, actions)

    def _step_down(
        self, why: str, reason: HandoverReason, now: float, actions: list[Action]
    ) -> None:
        """Leave an active or pending master role for standby, handing over if active."""
        was_active = self._active
        self._set_role(Role.SLAVE_STANDBY, why, now, actions, beat=not was_active)
        if was_active:
            actions.append(Handover(reason))
            self._start_handover(now, actions)

    def _start_handover(self, now: float, actions: list[Action]) -> None:
        """Stop forwarding for a pending master: drain, ack, then beat HANDED_OVER."""
        self._handover = _Handover.DRAINING
        self._handover_boot = self._peer_boot
        self._drain_deadline = now + self.config.ack_interval + self.config.heartbeat_timeout
        if self._forwarded <= self._delivered:
            self._finish_drain(now, actions)
        else:
            self._beat(now, actions)

    def _finish_drain(self, now: float, actions: list[Action]) -> None:
        """Every pending ack goes out before the HANDED_OVER beat that counts them."""
        self._handover = _Handover.DONE
        self._drain_deadline = INF
        self._ack_due = INF
        self._send_acks(now, actions)
        self._beat(now, actions)

    def _end_handover(self) -> None:
        self._handover = _Handover.NONE
        self._handover_boot = None
        self._drain_deadline = INF

    def _check_sink(self, now: float, actions: list[Action]) -> None:
        """Health-aware roles: hand over while our sink fails and the peer's works."""
        limit = self.config.sink_failover
        if limit <= 0 or self._role is Role.STANDARD or self._handover is not _Handover.NONE:
            return
        failing = self._sink_failing_since
        heard = self._peer_last_heard
        peer_ok = (
            heard is not None
            and now - heard < self._bound()
            and self._peer_role is not None
            and self._peer_role not in ACTIVE_ROLES
            and self._peer_sink_failing == 0.0
        )
        if self._active and failing is not None and now - failing >= limit and peer_ok:
            self._epoch += 1
            self._sink_handed_over = self.config.mode is Mode.MASTER
            why = f"sink failing for {now - failing:.0f} s while the peer's sink works"
            self._step_down(why, HandoverReason.SINK, now, actions)
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
            self._set_role(Role.MASTER_PENDING, why, now, actions)

    # -- peer input ---------------------------------------------------------------------

    def _stream_for(self, boot: bytes) -> AckStream:
        stream = self._stream
        if stream is None or stream.boot != boot:
            stream = self._stream = AckStream(boot)
            self._gap_marks = []
        return stream

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
        self._maybe_take_over_from_handover(now, actions)

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
            self.gap_fills += len(items)
            self._forwarded += len(items)
            actions.append(GapFill(items))

    def _maybe_take_over_from_handover(self, now: float, actions: list[Action]) -> None:
        awaited, stream = self._awaited_serial, self._stream
        if (
            self._role is Role.MASTER_PENDING
            and awaited is not None
            and stream is not None
            and stream.boot == self._peer_boot
            and (stream.through or 0) >= awaited
        ):
            self._set_role(Role.MASTER, "peer handed over", now, actions)

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
            self._peer_boot = hb.boot_id
            self._peer_seq = 0
            self._awaited_serial = None
            self._giveup = INF
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
        self._peer_role = hb.role
        self._peer_last_heard = now
        self._peer_sink_failing = hb.sink_failing
        self._peer_spool_bytes = hb.spool_bytes
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
        if self._handover is not _Handover.NONE and (
            hb.boot_id != self._handover_boot or hb.role is Role.MASTER
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
                    self._step_down(why, HandoverReason.FAILBACK, now, actions)
            elif self._role is Role.MASTER and hb.role is Role.MASTER_PENDING:
                self._resolve_masters(hb, now, actions)
        elif self._role is Role.MASTER_PENDING:
            if peer_master:
                self._resolve_masters(hb, now, actions)
            elif hb.flags & Flag.HANDED_OVER:
                self._awaited_serial = hb.acks_sent
                if self._giveup == INF:
                    c = self.config
                    self._giveup = now + self._beat_interval + c.beat_threshold
                self._maybe_take_over_from_handover(now, actions)
                if self._role is Role.MASTER_PENDING:
                    self._extra_beat(now, actions)  # tell the peer which acks we lack
        if (
            self._role is Role.SLAVE_STANDBY
            and hb.role is Role.MASTER_PENDING
            and self._handover is _Handover.NONE
        ):
            self._handover_from_standby(now, actions)
        self._check_sink(now, actions)

    def _handover_from_standby(self, now: float, actions: list[Action]) -> None:
        """Flush what nobody forwarded while the master was away, then hand over."""
        items = self._standby.drain(now)
        # Still in flight from an earlier active period counts too; a surplus of
        # deliveries must not make the flush look drained at once.
        self._forwarded = max(self._forwarded, self._delivered) + len(items)
        if items:
            actions.append(Flush(items))
        self._start_handover(now, actions)

    def _adopt_opposite_mode(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        reason = f"peer {hb.sender} is {hb.role.value} at epoch {hb.epoch}"
        if hb.role in MASTER_ROLES:
            if self._active and hb.role is Role.MASTER_PENDING:
                self._step_down(reason, HandoverReason.FAILBACK, now, actions)
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
            self._set_role(
                Role.SLAVE_STANDBY,
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
                self.split_brains += 1
                actions.append(SplitBrain(True, detail))
            return
        self.split_brains += 1
        actions.append(SplitBrain(True, detail))
        if known:
            reason = f"split brain: peer {hb.sender} wins ({why})"
        else:
            reason = f"{hb.role.value} {hb.sender} returned and is active ({why})"
        self._set_role(Role.SLAVE_STANDBY, reason, now, actions)
        actions.append(SplitBrain(False, "resolved: this probe stepped down"))
