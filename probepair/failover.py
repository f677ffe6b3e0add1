"""The failover state machine of a probe pair (sans-IO: no sockets, no clock reads).

Theory of operation
===================

Roles (``Role``, re-exported from ``wire``): ``master`` forwards events to the sink;
``master-pending`` is a (re)started master that beats and buffers until the active peer
hands over; ``slave-standby`` buffers; ``slave-active`` took over from a silent master;
``standard`` is a lone probe (always active, no heartbeats, ``next_deadline()`` is inf).
A role implies an *effective mode*: master roles are mode master, slave roles mode slave.

Timers are deadlines the runtime sleeps until (``next_deadline()``); every input first
runs the timers that are due at ``now`` and re-arms or clears each one it runs, so after
``tick``/``receive``/``request_mode`` at ``now``, ``next_deadline() > now``:

- beat: both sides send a heartbeat every beat interval (the slave's carry its role and
  handover state), and at once on every role change. At each beat the standby buffer and
  the acked-but-unseen set drop what is older than ``retention``.
- peer silence: ``beat_interval + beat_threshold + heartbeat_timeout`` after the last
  heartbeat from a peer that is (or is about to be) forwarding, or after start. A
  standby slave then takes over; a pending master becomes active on its own. A slave
  uses the master's beat interval (adopted from its heartbeats) for this bound.
- ack: delivered keys are batched into ack datagrams every ``ack_interval``.
- drain / give-up: bound the two waits of the failback handshake (below).

Buffer and acks (DESIGN.md "Beyond OMNIbus"): a non-active probe holds each event as
(key, serialised payload) in arrival order, bounded by ``buffer_limit`` (drop oldest).
The active probe acks the keys its sink delivered; the peer removes them, so a takeover
flushes only what the dead master may not have delivered. A key acked before this probe
saw the event goes into a bounded, expiring set and the event is dropped on arrival.

Failback handshake (no gap, no overlap): a returning master starts ``master-pending``:
it beats and buffers. The active slave (policy ``handshake``; ``immediate`` behaves the
same for a *pending* master) steps down to standby at the first pending heartbeat, which
stops new forwarding, and drains: it waits until the sink has delivered everything it
forwarded (bounded by ``ack_interval + heartbeat_timeout``), acks it, and beats with
``HANDED_OVER`` and ``acks_sent`` = serial of its last ack datagram (re-sending the last
acks with each such beat, in case they were lost). The pending master becomes active
once it holds that ack serial (or one beat interval + threshold after the first
handed-over beat, accepting possible duplicates) and flushes what was not acked. A
standby slave that hears a pending master first flushes its own un-acked buffer (events
nobody forwarded while the master was down), then hands over the same way. Under
``manual`` an active slave keeps forwarding until ``request_mode``. A master configured
``immediate`` starts active, like OMNIbus.

Stalls: an active master whose beat timer ran more than the silence bound late (SIGSTOP,
a frozen VM) must assume its peer took over meanwhile. Its next tick makes it
``master-pending`` and it goes through the handshake above, so the backlog its socket
queued during the stall is buffered and reconciled by acks instead of forwarded twice.
The runtime checks ``stall_at`` before offering events, so this tick comes first.

Epochs and split brain: ``request_mode`` takes effect at once and increments the epoch;
heartbeats carry it; a probe hearing a higher epoch adopts it and takes the mode opposite
to the sender's. When both sides are active, the one with the higher precedence stays
active: effective master over slave, then configured master, then higher node id, then
higher boot id (epochs are equal by then), so both sides reach the same verdict without
negotiating. It is reported as split brain (``SplitBrain`` action, counted) when the
overlap was not a plain failback: the loser had heard that peer boot before, or the
winner has been active for more than the silence bound. During a partition both forward
(at-least-once); a silence takeover never increments the epoch, so the configured
master wins when the link returns.
"""

from __future__ import annotations

import enum
import math
from typing import Final

from probepair.failover_types import (
    Action,
    ConfigDrift,
    DropReason,
    Failback,
    FailoverConfig,
    Flush,
    Mode,
    RoleChanged,
    Send,
    SplitBrain,
)
from probepair.standby import StandbyBuffer
from probepair.wire import MAX_ACK_KEYS, Ack, Flag, Heartbeat, Role

__all__ = [
    "Action",
    "ConfigDrift",
    "DropReason",
    "Failback",
    "FailoverConfig",
    "FailoverMachine",
    "Flush",
    "Mode",
    "Role",
    "RoleChanged",
    "Send",
    "SplitBrain",
]

INF: Final = math.inf
ACTIVE_ROLES: Final = frozenset({Role.MASTER, Role.SLAVE_ACTIVE, Role.STANDARD})
MASTER_ROLES: Final = frozenset({Role.MASTER, Role.MASTER_PENDING})
_HANDOVER_FLAGS: Final = Flag.HANDING_OVER | Flag.HANDED_OVER
_TAIL_KEYS: Final = 8 * MAX_ACK_KEYS  # last acked keys re-sent with each handed-over beat


class _Handover(enum.Enum):
    NONE = enum.auto()
    DRAINING = enum.auto()  # stepped down; waiting for the sink to deliver what we forwarded
    DONE = enum.auto()  # drained and acked; beating HANDED_OVER until the master is active


class FailoverMachine:
    """One probe's side of the pair. See the module comment for the rules.

    Args:
        config: the failover settings.
        now: the current time; the first heartbeat is due at ``now``.
    """

    def __init__(self, config: FailoverConfig, *, now: float) -> None:
        self.config = config
        self._epoch = 0
        self._seq = 0
        self._ack_serial = 0
        self._silence_since = now  # start, or the last heartbeat that re-armed the timer
        self._beat_interval = config.beat_interval
        self._standby = StandbyBuffer(config.buffer_limit, config.retention, config.buffer_bytes)
        self._pending_acks: list[bytes] = []
        self._tail: list[bytes] = []
        self._handover = _Handover.NONE
        self._handover_boot: bytes | None = None
        self._forwarded = 0  # since we last became active; with _delivered: in flight
        self._delivered = 0
        self._peer_boot: bytes | None = None
        self._peer_role: Role | None = None
        self._peer_last_heard: float | None = None
        self._serial_boot: bytes | None = None
        self._peer_serial = 0  # highest ack serial from _serial_boot
        self._awaited_serial: int | None = None  # from the peer's HANDED_OVER beat
        self._peer_digest = config.config_digest
        self._split_brain = False
        self._active_since = now
        self._next_beat = INF
        # An active master whose beat is overdue by more than the takeover bound was
        # stalled (SIGSTOP, a frozen VM): its peer has likely taken over, so the next
        # tick makes it a pending master that waits for the handover (see stall_at).
        self._stall_at = INF
        self._peer_deadline = INF
        self._ack_due = INF
        self._drain_deadline = INF
        self._giveup = INF
        self.failovers = 0  # times this probe became active after start
        self.split_brains = 0
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
        """When the last valid heartbeat from the peer arrived (None: never)."""
        return self._peer_last_heard

    @property
    def peer_role(self) -> Role | None:
        """The role the peer's last heartbeat carried."""
        return self._peer_role

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
    def dropped(self) -> dict[DropReason, int]:
        """Buffered events dropped without forwarding, by reason."""
        return {
            DropReason.BUFFER_FULL: self._standby.dropped_full,
            DropReason.RETENTION: self._standby.dropped_retention,
            DropReason.BUFFER_BYTES: self._standby.dropped_bytes,
        }

    def next_deadline(self) -> float:
        """When ``tick`` must be called next (``math.inf``: nothing scheduled)."""
        return min(
            self._next_beat, self._peer_deadline, self._ack_due, self._drain_deadline, self._giveup
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
            if self._handover is not _Handover.NONE:
                self._tail.extend(keys)
                if len(self._tail) > 2 * _TAIL_KEYS:
                    del self._tail[:-_TAIL_KEYS]
        if self._ack_due == INF and (keys or self._handover is _Handover.DRAINING):
            self._ack_due = now + self.config.ack_interval

    # -- inputs with actions ------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Run the timers due at ``now``."""
        actions: list[Action] = []
        self._run_timers(now, actions)
        return actions

    def receive(self, msg: Heartbeat | Ack, now: float) -> list[Action]:
        """A decoded, authenticated, replay-checked datagram from the peer."""
        actions: list[Action] = []
        if self._role is Role.STANDARD:
            return actions
        self._run_timers(now, actions)
        if isinstance(msg, Ack):
            self._on_ack(msg, now, actions)
        else:
            self._on_heartbeat(msg, now, actions)
        return actions

    def request_mode(self, mode: Mode, now: float) -> list[Action]:
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
            was_active = self._active
            self._set_role(
                Role.SLAVE_STANDBY,
                f"mode set to slave (epoch {self._epoch})",
                now,
                actions,
                beat=not was_active,
            )
            if was_active:
                self._start_handover(now, actions)
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
            self._send_acks(self._pending_acks, actions)
            self._pending_acks = []
        if self._handover is _Handover.DRAINING and (
            self._forwarded <= self._delivered or self._drain_deadline <= now
        ):
            self._handover = _Handover.DONE
            self._drain_deadline = INF
            self._beat(now, actions)
        elif self._drain_deadline <= now:
            self._drain_deadline = INF
        if self._next_beat <= now:
            self._beat(now, actions)

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

    def _beat(self, now: float, actions: list[Action]) -> None:
        flags = Flag.NONE
        if self.config.mode is Mode.MASTER:
            flags |= Flag.CONFIGURED_MASTER
        if self._handover is _Handover.DRAINING:
            flags |= Flag.HANDING_OVER
        elif self._handover is _Handover.DONE:
            flags |= Flag.HANDED_OVER
            # Re-send the last acks (at least one datagram, so the serial is fresh).
            self._send_acks(self._tail[-_TAIL_KEYS:], actions, at_least_one=True)
        self._seq += 1
        c = self.config
        actions.append(
            Send(
                Heartbeat(
                    c.node_id,
                    c.boot_id,
                    self._epoch,
                    self._seq,
                    self._role,
                    flags,
                    self._beat_interval,
                    c.config_digest,
                    self._ack_serial,
                )
            )
        )
        self._next_beat = now + self._beat_interval
        self._stall_at = self._next_beat + self._bound() if self._role is Role.MASTER else INF
        self._standby.prune(now)

    def _send_acks(
        self, keys: list[bytes], actions: list[Action], *, at_least_one: bool = False
    ) -> None:
        c = self.config
        starts = range(0, len(keys), MAX_ACK_KEYS) if keys else range(int(at_least_one))
        for start in starts:
            self._seq += 1
            self._ack_serial += 1
            actions.append(
                Send(
                    Ack(
                        c.node_id,
                        c.boot_id,
                        self._epoch,
                        self._seq,
                        self._role,
                        self._ack_serial,
                        tuple(keys[start : start + MAX_ACK_KEYS]),
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

    def _start_handover(self, now: float, actions: list[Action]) -> None:
        """Stop forwarding for a pending master: drain, ack, then beat HANDED_OVER."""
        self._handover = _Handover.DRAINING
        self._handover_boot = self._peer_boot
        self._tail = []
        self._drain_deadline = now + self.config.ack_interval + self.config.heartbeat_timeout
        if self._forwarded <= self._delivered:
            self._handover = _Handover.DONE
            self._drain_deadline = INF
        self._beat(now, actions)

    def _end_handover(self) -> None:
        self._handover = _Handover.NONE
        self._handover_boot = None
        self._drain_deadline = INF
        self._tail = []

    # -- peer input ---------------------------------------------------------------------

    def _on_ack(self, msg: Ack, now: float, actions: list[Action]) -> None:
        if msg.boot_id != self._serial_boot:  # acks may overtake the first heartbeat
            self._serial_boot, self._peer_serial = msg.boot_id, msg.serial
        self._peer_serial = max(self._peer_serial, msg.serial)
        self._standby.ack(msg.keys, now)
        self._maybe_take_over_from_handover(now, actions)

    def _maybe_take_over_from_handover(self, now: float, actions: list[Action]) -> None:
        awaited = self._awaited_serial
        if (
            self._role is Role.MASTER_PENDING
            and awaited is not None
            and self._serial_boot == self._peer_boot
            and self._peer_serial >= awaited
        ):
            self._set_role(Role.MASTER, "peer handed over", now, actions)

    def _precedence(self) -> tuple[int, bool, bool, int, bytes]:
        c = self.config
        return (
            self._epoch,
            self._role in MASTER_ROLES,
            c.mode is Mode.MASTER,
            c.node_id,
            c.boot_id,
        )

    def _on_heartbeat(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        known = hb.boot_id == self._peer_boot
        if not known:
            self._peer_boot = hb.boot_id
            self._awaited_serial = None
            self._giveup = INF
        self._peer_role = hb.role
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
                if self.config.failback is not Failback.MANUAL:
                    self._set_role(
                        Role.SLAVE_STANDBY,
                        f"handing over to returning master {hb.sender}",
                        now,
                        actions,
                        beat=False,
                    )
                    self._start_handover(now, actions)
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
        if (
            self._role is Role.SLAVE_STANDBY
            and hb.role is Role.MASTER_PENDING
            and self._handover is _Handover.NONE
        ):
            self._handover_from_standby(now, actions)

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
            if self._role in MASTER_ROLES or (
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

    def _why(self, hb: Heartbeat) -> tuple[bool, str]:
        """Whether we win against the peer's heartbeat, and why."""
        ours = self._precedence()
        theirs = (
            hb.epoch,
            hb.role in MASTER_ROLES,
            bool(hb.flags & Flag.CONFIGURED_MASTER),
            hb.sender,
            hb.boot_id,
        )
        labels = (
            "higher epoch",
            "master by mode",
            "configured master",
            "higher node id",
            "higher boot id",
        )
        for mine, other, label in zip(ours, theirs, labels, strict=True):
            if mine != other:
                return mine > other, label  # type: ignore[operator]
        return True, "same precedence"  # only our own datagram could get here

    def _resolve_masters(self, hb: Heartbeat, now: float, actions: list[Action]) -> None:
        win, why = self._why(hb)
        if not win:
            self._set_role(
                Role.SLAVE_STANDBY,
                f"peer {hb.sender} is also master and wins ({why})",
                now,
                actions,
            )

    def _both_active(self, hb: Heartbeat, known: bool, now: float, actions: list[Action]) -> None:
        win, why = self._why(hb)
        detail = (
            f"peer {hb.sender} is also active ({hb.role.value}, epoch {hb.epoch}); "
            f"{'this probe' if win else 'the peer'} wins: {why}"
        )
        if win:
            if hb.epoch < self._epoch:
                return  # the peer has not heard our mode switch yet; it will step down
            if not self._split_brain and (known or now - self._active_since >= self._bound()):
                self._split_brain = True
                self.split_brains += 1
                actions.append(SplitBrain(True, detail))
            return
        if known:
            self.split_brains += 1
            actions.append(SplitBrain(True, detail))
            reason = f"split brain: peer {hb.sender} wins ({why})"
        else:
            reason = f"{hb.role.value} {hb.sender} returned and is active ({why})"
        self._set_role(Role.SLAVE_STANDBY, reason, now, actions)
        if known:
            actions.append(SplitBrain(False, "resolved: this probe stepped down"))
