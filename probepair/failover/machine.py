"""The failover machine: one probe's side of the pair (PURE; details in the package docstring).

Theory of operation
-------------------
Roles. ``master`` and ``slave-active`` forward events to the sink (with ``standard``,
a lone probe: ``ACTIVE_ROLES``); ``slave-standby`` holds them in the buffer;
``master-pending`` is a (re)started master that beats and holds until the active peer
hands over. A probe starts ``slave-standby`` (Mode slave), ``master-pending`` (Mode
master) or ``master`` (Mode master with Failback immediate).

Inputs are method calls that carry ``now`` (``tick``, ``receive``, ``request_mode``,
``event``, ``delivered``, ``bypassed``, ``feed_idle``, ``sink_state``,
``window_changed``, ``config_digest_changed``); outputs are the returned actions. Every
input that runs timers runs the due ones first.

Timers are deadlines, gathered by ``next_deadline()``: the beat (every beat interval),
peer silence (the bound ``beat_interval + beat_threshold + heartbeat_timeout`` after the
last fresh heartbeat from a forwarding peer), the ack batch (``ack_interval``), the
handover drain and give-up, the ack-hole skip, and ``stall_at`` (an active master's beat
a bound late). Each timer that runs is re-armed or cleared, so after any input at ``t``,
``next_deadline() > t`` (a timer left due would busy-loop the runtime).

The table. A timer or a fresh datagram becomes a ``Trigger``; ``RoleLogic.fire`` looks the
(role, trigger) pair up in ``transitions.ROLE_TRANSITIONS`` (the single decision point)
and ``RoleLogic.set_role`` (the single effect point) emits ``RoleChanged``, flushes the buffer on
activation and beats at once. A pair absent from the table is refused::

    slave-standby   SILENCE -> slave-active     REQUEST_MASTER -> master
                    RECLAIM -> master-pending
    slave-active    STALL, PENDING_MASTER, LOST_VERDICT, REQUEST_SLAVE, SINK_FAILING
                    -> slave-standby            REQUEST_MASTER, RECLAIM -> master
    master-pending  SILENCE, HANDED_OVER, REQUEST_MASTER -> master
                    LOST_VERDICT, REQUEST_SLAVE -> slave-standby
    master          STALL -> master-pending
                    LOST_VERDICT, REQUEST_SLAVE, SINK_FAILING -> slave-standby
    standard        (nothing)

An active probe that leaves for standby hands over: it drains its sink, sends every
pending ack, then beats HANDED_OVER, so the pending master takes over without a gap
or an overlap.

Split brain. Heartbeats carry role, epoch and precedence; when both sides are active
(or both master) each computes the same verdict from the same two tuples
(``precedence``: epoch, master by mode, configured master, node id, boot id), so one
steps down (``LOST_VERDICT``) without a negotiation that a partition could interrupt.
Why this order: an explicit switch (``request_mode``, epoch + 1) is the newest intent;
a silence takeover never increments the epoch, so the configured master wins when the
link returns. The one rule outside the table is the epoch rule
(``PeerInputs.adopt_opposite_mode``): a heartbeat at a higher epoch makes us adopt it
and take the mode opposite to the sender's, which depends on the sender's role and
flags rather than on a trigger alone.
"""

from __future__ import annotations

from dataclasses import replace

from probepair.failover.peerinput import PeerInputs
from probepair.failover.roles import RoleLogic
from probepair.failover.sending import Outbox
from probepair.failover.state import (
    _ECHO_REFRESH,
    ACTIVE_ROLES,
    Draining,
    MachineState,
)
from probepair.failover.transitions import Trigger
from probepair.failover.types import (
    Action,
    FailoverConfig,
    HandoverReason,
    Mode,
    Rejected,
    Role,
)
from probepair.failover.wire import Ack, Flag, Heartbeat

__all__ = ["ACTIVE_ROLES", "FailoverMachine"]


class FailoverMachine(MachineState):
    """One probe's side of the pair. See the package docstring for the rules.

    Args:
        config: the failover settings.
        now: the current time; the first heartbeat is due at ``now``.

    The machine is its state (MachineState: the fields and their read-only view) plus
    the inputs below; the behaviour behind the inputs lives in three components over
    that state, each in its own module: ``out`` (sending.Outbox: every datagram),
    ``roles`` (roles.RoleLogic: timers, the role table, handover, sink health, gap
    fill) and ``peer_in`` (peerinput.PeerInputs: what a fresh datagram changes).
    """

    def __init__(self, config: FailoverConfig, *, now: float) -> None:
        super().__init__(config, now=now)
        self.out = Outbox(self)
        self.roles = RoleLogic(self, self.out)
        self.peer_in = PeerInputs(self, self.out, self.roles)

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
            self._in_flight += 1
            return True
        standby.hold(key, payload, now)
        return False

    def delivered(self, keys: list[bytes], now: float, written_at: float | None = None) -> None:
        """The sink acknowledged ``keys``; they are acked to the peer within ack_interval
        of ``written_at`` (when the sink took them; ``now`` if not given): a sink that
        syncs before it reports (SinkSync) must not make the ack, and so the duplicates
        of a takeover, later than one ack period after the write.

        Runs no timers; it may only move the deadline earlier.
        """
        if self._role is Role.STANDARD:
            return
        self._in_flight -= len(keys)
        if keys:
            self._pending_acks.extend(keys)
        if keys or isinstance(self._handover, Draining):
            since = now if written_at is None else min(written_at, now)
            self._ack_due = min(self._ack_due, since + self.config.ack_interval)

    def covered_by_peer(self, keys: list[bytes]) -> set[bytes]:
        """Of ``keys`` (forwarded, not yet delivered: spooled, or held for a retry), those
        the peer's sink acknowledged: they are settled here without a delivery, so a
        handover or a peer's flush during our sink's outage is not replayed (issue 21).

        The peer's acks for keys this probe does not hold are its ``unseen`` keys (kept
        while our spool holds alerts, see ``MachineState.prune``); each one answers once.
        Runs no timers.
        """
        unseen = self._standby.unseen
        if not unseen:
            return set()
        covered = {key for key in keys if key in unseen}
        for key in covered:
            del unseen[key]
        if self._role is not Role.STANDARD:
            self._in_flight -= len(covered)
        self.stats.replays_skipped += len(covered)
        return covered

    def spool_replay(self, keys: list[bytes]) -> tuple[set[bytes], bool]:
        """How to replay a spool chunk (``keys``, in feed order) now (issue 21).

        Returns the keys the peer's acks cover (settled as ``covered_by_peer`` does: skip
        them) and whether the whole chunk may be delivered now. Active: yes. Not active:
        the active peer delivers what we spooled (it holds its own copy, flushed at its
        takeover), so we deliver only what it passed by without delivering: what precedes
        a key it acked (the runner applies that within the chunk), or everything once it
        acked an event we buffered after the spool (``_passed_spool``: those are newer).
        The rest waits for the peer's acks, its passing, or our own takeover. Replaying
        it at once, while the peer flushed the same events, duplicated a whole outage
        when both sinks came back together. Runs no timers.
        """
        covered = self.covered_by_peer(keys)
        return covered, self._active or self._passed_spool or self._role is Role.STANDARD

    def bypassed(self, count: int) -> None:
        """``count`` alerts reach the sink without ``event`` (the probe's own events).

        Their deliveries come back through ``delivered``; counting them here keeps the
        in-flight count (``pending``, ``IDLE``, the handover drain) exact. Runs no timers.
        """
        self._in_flight += count

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

    def sink_verified(self, at: float) -> None:
        """A delivery or a sink check showed our sink working at ``at`` (runtime fact):
        the age our heartbeats report, without which no sink handover comes to us."""
        self._sink_verified_at = at

    def window_changed(self, is_open: bool) -> None:
        """The failback window opened (True) or closed (False); the runtime reads the cron
        expression against the wall clock. Runs no timers: it only gates decisions."""
        self.failback.set_window(is_open)

    def config_digest_changed(self, digest: bytes) -> None:
        """Our pair-wide settings digest changed (a rules reload); heartbeats carry it."""
        self.config = replace(self.config, config_digest=digest)

    def tick(self, now: float) -> list[Action]:
        """Run the timers due at ``now``."""
        actions: list[Action] = []
        self.roles.run_timers(now, actions)
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
        self.roles.run_timers(now, actions)
        self._fresh.heard(msg.boot_id, msg.seq)
        age = self._fresh.age(msg.echo_boot, msg.echo_seq, now)
        bound = self._bound()
        # A datagram that echoes what we sent before our last role change was written
        # without knowing our role: it may not change it (a heartbeat captured just
        # before the master died, replayed right after our takeover, is such a one). An
        # ack refused this way comes again: the ack stream re-sends what is missing.
        fresh = age is not None and age <= bound and msg.echo_seq >= self._role_seq
        if isinstance(msg, Heartbeat) and msg.flags & Flag.ECHO_REQUEST and fresh:
            # Answer fresh requests only: stale ones queued during a stall must not use up
            # the answer a live peer is waiting for (an unproven peer gets our own request).
            self.out.extra_beat(now, actions)
        if age is None or not fresh:
            actions.append(Rejected("unfresh"))
            self.out.extra_beat(now, actions, request=True)
            return actions
        if age > _ECHO_REFRESH * bound:
            self.out.extra_beat(now, actions)  # our last datagrams may be lost: refresh
        if isinstance(msg, Ack):
            self.peer_in.on_ack(msg, now, actions)
        else:
            # Heartbeats only: an ack overtaking a heartbeat must not make it look old.
            peer = self._peer
            newest = peer is None or msg.boot_id != peer.boot_id or msg.seq > peer.seq
            self.peer_in.on_heartbeat(msg, newest, now, actions)
        self.roles.fill_gaps(now, actions)
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
        self.roles.run_timers(now, actions)
        if mode is not Mode.STANDARD:
            self._designated = mode  # until either probe restarts, or the peer's next switch
        if mode is Mode.MASTER and self._role is not Role.MASTER:
            self._epoch += 1
            self._request_epoch = self._epoch
            self.roles.end_handover()
            self.roles.fire(
                Trigger.REQUEST_MASTER, f"mode set to master (epoch {self._epoch})", now, actions
            )
        elif mode is Mode.SLAVE and (self._active or self._role is Role.MASTER_PENDING):
            self._epoch += 1
            self._request_epoch = self._epoch
            why = f"mode set to slave (epoch {self._epoch})"
            self.roles.step_down(Trigger.REQUEST_SLAVE, why, reason, now, actions)
        return actions
