"""Failover machine transcripts: plain numbers in, exact actions and deadlines out."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.events import key_of
from probepair.failover import (
    Action,
    ConfigDrift,
    DropReason,
    Failback,
    FailoverConfig,
    FailoverMachine,
    Flush,
    Handover,
    HandoverReason,
    Mode,
    Rejected,
    Role,
    RoleChanged,
    Send,
    SplitBrain,
)
from probepair.failover.wire import NO_BOOT, Ack, Flag, Heartbeat, make_boot_id

BOOT_M = make_boot_id(1_000, b"MMMM")
BOOT_M2 = make_boot_id(2_000, b"mmmm")  # the master after a restart
BOOT_S = make_boot_id(1_000, b"SSSS")
DIGEST = b"dgst"


def config(mode: Mode, **kw: object) -> FailoverConfig:
    node, boot = (1, BOOT_M) if mode is Mode.MASTER else (2, BOOT_S)
    base = FailoverConfig(mode=mode, node_id=node, boot_id=boot, config_digest=DIGEST)
    return replace(base, **kw)  # type: ignore[arg-type]


def K(i: int) -> bytes:
    return key_of(b"event %d" % i)


def P(i: int) -> bytes:
    return b"payload %d" % i


class Peer:
    """Scripted datagrams of the other probe, with increasing sequence numbers.

    Each datagram echoes the newest sequence number ``listener`` has sent (so it is
    fresh while that was sent within the bound), unless the test says otherwise.
    """

    def __init__(self, node: int, boot: bytes, *, configured_master: bool,
                 listener: FailoverMachine | None = None) -> None:
        self.node, self.boot, self.seq, self.serial = node, boot, 0, 0
        self.flags = Flag.CONFIGURED_MASTER if configured_master else Flag.NONE
        self.listener = listener

    def _echo(self) -> tuple[bytes, int]:
        if self.listener is None:
            return NO_BOOT, 0
        return self.listener.config.boot_id, self.listener.seq

    def hb(self, role: Role, *, epoch: int = 0, interval: float = 2.0,
           flags: Flag = Flag.NONE, acks_sent: int = 0, digest: bytes = DIGEST,
           **kw: object) -> Heartbeat:
        self.seq += 1
        echo_boot, echo_seq = self._echo()
        # A healthy peer's sink was verified recently (its runner checks it on a cadence).
        fields: dict[str, object] = {"echo_boot": echo_boot, "echo_seq": echo_seq,
                                     "ack_base": 1, "sink_verified_age": 0.5, **kw}
        return Heartbeat(self.node, self.boot, epoch, self.seq, role,  # type: ignore[arg-type]
                         self.flags | flags, interval, digest, acks_sent, **fields)

    def ack(self, *keys: bytes, role: Role = Role.MASTER, flags: Flag = Flag.NONE) -> Ack:
        self.seq += 1
        self.serial += 1
        echo_boot, echo_seq = self._echo()
        return Ack(self.node, self.boot, 0, self.seq, role, self.serial, keys,
                   echo_boot, echo_seq, 0, flags)


def master_peer(boot: bytes = BOOT_M, listener: FailoverMachine | None = None) -> Peer:
    return Peer(1, boot, configured_master=True, listener=listener)


def slave_peer(listener: FailoverMachine | None = None) -> Peer:
    return Peer(2, BOOT_S, configured_master=False, listener=listener)


def sent(actions: list[Action]) -> list[Heartbeat | Ack]:
    return [a.msg for a in actions if isinstance(a, Send)]


def beats(actions: list[Action]) -> list[Heartbeat]:
    return [m for m in sent(actions) if isinstance(m, Heartbeat)]


def changes(actions: list[Action]) -> list[RoleChanged]:
    return [a for a in actions if isinstance(a, RoleChanged)]


def only_beat(actions: list[Action], role: Role) -> Heartbeat:
    assert len(actions) == 1, actions
    [hb] = beats(actions)
    assert hb.role is role
    return hb


def tick_through(m: FailoverMachine, t: float) -> list[Action]:
    """Tick at every deadline the machine names before ``t``, as the runtime does, then
    at ``t``; the actions of that last tick. (Skipping them reads as a stall.)"""
    while m.next_deadline() < t:
        m.tick(m.next_deadline())
    return m.tick(t)


# -- heartbeats and takeover ----------------------------------------------------------


def test_master_beats_every_interval() -> None:
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    assert m.role is Role.MASTER and m.active
    assert m.next_deadline() == 0.0
    hb = only_beat(m.tick(0.0), Role.MASTER)
    assert (hb.sender, hb.boot_id, hb.epoch, hb.seq) == (1, BOOT_M, 0, 1)
    assert hb.flags == Flag.CONFIGURED_MASTER and hb.beat_interval == 2.0
    assert hb.config_digest == DIGEST
    assert m.next_deadline() == 2.0
    assert m.tick(1.999) == []
    assert only_beat(m.tick(2.0), Role.MASTER).seq == 2
    assert m.next_deadline() == 4.0


def test_slave_takes_over_exactly_at_the_bound() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    assert only_beat(s.tick(0.0), Role.SLAVE_STANDBY).flags == Flag.ECHO_REQUEST  # a standby asks to be answered
    assert s.receive(master.hb(Role.MASTER), 1.0) == []
    assert s.peer_last_heard == 1.0
    only_beat(s.tick(2.0), Role.SLAVE_STANDBY)
    only_beat(s.tick(4.0), Role.SLAVE_STANDBY)
    assert s.next_deadline() == 5.0  # 1.0 + 2 + 1 + 1
    assert s.tick(4.999) == []
    actions = s.tick(5.0)
    assert actions[0] == RoleChanged(Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE,
                                     "master silent for 4.0 s")
    only_beat(actions[1:], Role.SLAVE_ACTIVE)
    assert s.active and s.failovers == 1
    assert s.next_deadline() == 7.0  # beats go on; no silence timer while active
    assert s.event(K(1), P(1), 5.5) is True


def test_beats_within_the_bound_prevent_takeover() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    for t in range(0, 1000, 3):  # a beat every 3.0 s: late, but within the 4.0 s bound
        s.receive(master.hb(Role.MASTER), float(t))
        s.tick(float(t) + 2.5)
        assert s.role is Role.SLAVE_STANDBY


def test_starting_slave_with_no_master_takes_over_after_the_bound() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=10.0)
    assert s.next_deadline() == 10.0
    only_beat(s.tick(10.0), Role.SLAVE_STANDBY)
    only_beat(s.tick(12.0), Role.SLAVE_STANDBY)
    assert s.next_deadline() == 14.0
    assert changes(s.tick(14.0)) == [RoleChanged(
        Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE, "no master heard for 4.0 s since start")]


def test_slave_adopts_the_masters_beat_interval() -> None:
    s = FailoverMachine(config(Mode.SLAVE, beat_interval=5.0), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER, interval=0.5), 1.0)
    assert s.beat_interval == 0.5
    assert s.next_deadline() == 3.5  # 1.0 + 0.5 + 1 + 1 (our next beat is at 5.0)
    assert changes(s.tick(3.5))[0].reason == "master silent for 2.5 s"
    assert s.beat_interval == 5.0  # its own again once no master is heard
    assert s.next_deadline() == 8.5
    assert beats(s.tick(8.5))[0].beat_interval == 5.0


def test_threshold_and_timeout_are_properties() -> None:
    s = FailoverMachine(config(Mode.SLAVE, beat_interval=0.1, beat_threshold=0.1,
                               heartbeat_timeout=0.1), now=0.0)
    s.tick(0.0)
    s.receive(master_peer(listener=s).hb(Role.MASTER, interval=0.1), 0.0)
    assert s.next_deadline() == pytest.approx(0.1)
    for t in (0.1, 0.2):
        s.tick(t)
    assert s.role is Role.SLAVE_STANDBY
    s.tick(0.30000000000000004)
    assert s.role is Role.SLAVE_ACTIVE


# -- buffer, acks, retention ----------------------------------------------------------


def test_takeover_flushes_only_unacked_events_in_order() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 0.0)
    assert [s.event(K(i), P(i), 0.1 * i) for i in range(1, 6)] == [False] * 5
    assert s.buffer_depth == 5
    assert s.receive(master.ack(K(2), K(4)), 0.6) == []
    assert s.buffer_depth == 3 and s.acked == 2
    actions = tick_through(s, 4.0)
    assert actions[1] == Flush([(K(1), P(1)), (K(3), P(3)), (K(5), P(5))])
    assert s.buffer_depth == 0


def test_key_acked_before_it_is_seen_is_dropped_on_arrival() -> None:
    s = FailoverMachine(config(Mode.SLAVE, retention=30.0), now=0.0)
    master = master_peer(listener=s)
    s.receive(master.hb(Role.MASTER), 0.0)
    s.receive(master.ack(K(1), K(2)), 0.1)  # the master's feed copy was faster
    assert s.event(K(1), P(1), 0.2) is False
    assert s.buffer_depth == 0 and s.duplicates_avoided == 1
    # Seen-and-dropped keys leave the set; unmatched ones expire with the retention.
    assert s.event(K(1), P(1), 0.3) is False and s.buffer_depth == 1
    for t in range(2, 40, 2):
        s.receive(master.hb(Role.MASTER), float(t))
        s.tick(float(t))
    assert s.event(K(2), P(2), 40.0) is False and s.duplicates_avoided == 1
    assert s.buffer_depth == 1  # K(1) expired at 32.3 by retention too; K(2) is new


def test_active_probe_also_drops_keys_the_peer_acked() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.receive(master.hb(Role.MASTER), 0.0)
    s.receive(master.ack(K(7)), 3.9)  # the master's last ack before it died
    s.tick(4.0)
    assert s.active
    assert s.event(K(7), P(7), 4.1) is False
    assert s.event(K(8), P(8), 4.2) is True
    assert s.duplicates_avoided == 1


def test_buffer_limit_drops_oldest_and_counts() -> None:
    s = FailoverMachine(config(Mode.SLAVE, buffer_limit=3), now=0.0)
    for i in range(5):
        s.event(K(i), P(i), 0.0)
    assert s.buffer_depth == 3
    assert s.dropped == {DropReason.BUFFER_FULL: 2, DropReason.BUFFER_BYTES: 0,
                         DropReason.RETENTION: 0}
    assert tick_through(s, 4.0)[1] == Flush([(K(i), P(i)) for i in (2, 3, 4)])


def test_retention_prunes_at_each_beat() -> None:
    s = FailoverMachine(config(Mode.SLAVE, retention=10.0), now=0.0)
    master = master_peer(listener=s)
    s.event(K(1), P(1), 0.5)
    s.event(K(2), P(2), 5.0)
    for t in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0):
        s.receive(master.hb(Role.MASTER), t)
        s.tick(t)
    assert s.buffer_depth == 2  # at 10.0 the horizon is 0.0
    s.receive(master.hb(Role.MASTER), 12.0)
    s.tick(12.0)  # horizon 2.0
    assert s.buffer_depth == 1
    assert s.dropped[DropReason.RETENTION] == 1


def test_active_probe_batches_delivery_acks() -> None:
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    m.tick(0.0)
    keys = [K(i) for i in range(200)]
    m.delivered(keys[:150], 0.5)
    assert m.next_deadline() == 0.6
    m.delivered(keys[150:], 0.55)
    acks = sent(m.tick(0.6))
    assert [len(a.keys) for a in acks if isinstance(a, Ack)] == [165, 35]
    assert [a.serial for a in acks if isinstance(a, Ack)] == [1, 2]
    assert m.next_deadline() == 2.0
    assert beats(m.tick(2.0))[0].acks_sent == 2


def test_acks_are_due_one_ack_interval_after_the_write_not_after_the_sync() -> None:
    # SinkSync batch: the sink reports keys when its sync ends, up to half an
    # AckInterval after the write; the ack is dated from the write, so a takeover still
    # duplicates at most one ack period of traffic.
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    m.tick(0.0)
    m.delivered([K(1)], 0.54, written_at=0.5)
    assert m.next_deadline() == pytest.approx(0.6)
    m.delivered([K(2)], 0.58, written_at=0.45)  # an older write reported later: earlier
    assert m.next_deadline() == pytest.approx(0.55)
    assert [len(a.keys) for a in sent(m.tick(0.55)) if isinstance(a, Ack)] == [2]


# -- failback -------------------------------------------------------------------------


def active_slave(awake_until: float = 4.0, **kw: object) -> tuple[FailoverMachine, Peer]:
    """A slave that heard the master at 0.0 and took over at 4.0 (master died), then
    ticked at every beat until ``awake_until``: an active probe that did not tick for
    the takeover bound was stalled, and steps down (``STALL``)."""
    s = FailoverMachine(config(Mode.SLAVE, **kw), now=0.0)
    s.tick(0.0)
    s.receive(master_peer(listener=s).hb(Role.MASTER), 0.0)
    s.tick(2.0)
    s.tick(4.0)
    assert s.role is Role.SLAVE_ACTIVE
    t = 4.0
    while t + 2.0 <= awake_until:
        t += 2.0
        s.tick(t)
    assert s.role is Role.SLAVE_ACTIVE
    return s, master_peer(BOOT_M2, listener=s)


def test_failback_immediate_restarted_master_is_active_at_once() -> None:
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE, boot_id=BOOT_M2),
                        now=100.0)
    assert m.role is Role.MASTER
    s, master = active_slave(98.0, failback=Failback.IMMEDIATE)
    s.event(K(1), P(1), 99.0)
    s.tick(100.0)
    actions = s.receive(master.hb(Role.MASTER), 100.0)
    # Both were active for a moment: even this short overlap counts as a split brain.
    assert [a for a in actions if not isinstance(a, Send)] == [
        SplitBrain(True, "peer 1 is also active (master, epoch 0); "
                         "the peer wins: master by mode"),
        RoleChanged(Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY,
                    "master 1 returned and is active (master by mode)"),
        SplitBrain(False, "resolved: this probe stepped down"),
    ]
    assert s.split_brains == 1
    assert s.event(K(2), P(2), 100.1) is False  # stops at the first master heartbeat


def test_pending_master_alone_becomes_active_after_the_bound() -> None:
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    assert m.role is Role.MASTER_PENDING and not m.active
    only_beat(m.tick(0.0), Role.MASTER_PENDING)
    assert m.event(K(1), P(1), 1.0) is False
    m.tick(2.0)
    actions = m.tick(4.0)
    assert actions[:2] == [
        RoleChanged(Role.MASTER_PENDING, Role.MASTER, "no active peer heard for 4.0 s"),
        Flush([(K(1), P(1))]),
    ]
    assert m.event(K(2), P(2), 4.5) is True


def test_a_pending_master_waits_while_a_standby_that_flushes_for_it_beats() -> None:
    """A standby that hears a pending master flushes and hands over; its beats keep the
    master pending until the handover or the standby's silence. Counting only active
    peers, a master back from a stall took over by the bound mid-handover, and both
    flushed (a double-stall soak: 168 events twice)."""
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.tick(0.0)
    assert m.event(K(1), P(1), 1.0) is False
    for t in (2.0, 3.5, 5.0, 6.5):
        m.tick(t)
        assert changes(m.receive(slave.hb(Role.SLAVE_STANDBY), t)) == []
    assert m.role is Role.MASTER_PENDING  # 6.5 s pending, past the 4 s bound
    actions: list[Action] = []
    while not changes(actions):  # the standby falls silent: one bound after its last beat
        t = m.next_deadline()
        actions = m.tick(t)
    assert t == pytest.approx(10.5) and changes(actions) == [
        RoleChanged(Role.MASTER_PENDING, Role.MASTER, "no active peer heard for 4.0 s")]
    assert [a for a in actions if isinstance(a, Flush)] == [Flush([(K(1), P(1))])]


def test_handshake_slave_side() -> None:
    s, master = active_slave(8.0)
    assert s.event(K(0), P(0), 8.9) is True
    assert s.event(K(1), P(1), 9.0) is True  # forwarded, not yet delivered
    s.delivered([K(0)], 9.95)  # delivered just before; its ack is not due yet
    s.tick(10.0)
    actions = s.receive(master.hb(Role.MASTER_PENDING), 10.0)
    assert actions[:2] == [
        RoleChanged(Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY, "handing over to returning master 1"),
        Handover(HandoverReason.FAILBACK),
    ]
    assert only_beat(actions[2:], Role.SLAVE_STANDBY).flags == Flag.HANDING_OVER | Flag.ECHO_REQUEST
    assert s.handing_over
    assert s.event(K(2), P(2), 10.01) is False  # no new forwarding: the master has it
    s.delivered([K(1)], 10.02)  # the sink delivered the last forwarded event
    # Drained: every pending ack goes out, and only then the beat that counts them.
    msgs = sent(s.tick(10.05))
    assert [type(m).__name__ for m in msgs] == ["Ack", "Heartbeat"]
    ack, hb = msgs
    assert isinstance(ack, Ack) and isinstance(hb, Heartbeat)
    assert ack.keys == (K(0), K(1))
    assert hb.flags == Flag.HANDED_OVER | Flag.ECHO_REQUEST and hb.acks_sent == ack.serial == 1
    # The master says it lacks ack 1 (it echoes our heartbeat): it is sent again.
    msgs = sent(s.receive(master.hb(Role.MASTER_PENDING, acks_heard=0), 10.1))
    assert [(type(m).__name__, getattr(m, "serial", None)) for m in msgs] == [("Ack", 1)]
    assert s.acks_resent == 1
    s.receive(master.hb(Role.MASTER, acks_heard=1), 10.2)
    assert not s.handing_over
    assert beats(s.tick(12.05))[0].flags == Flag.ECHO_REQUEST


def test_handshake_drain_is_bounded() -> None:
    s, master = active_slave()
    s.event(K(1), P(1), 9.0)
    s.tick(10.0)
    s.receive(master.hb(Role.MASTER_PENDING), 10.0)
    assert s.next_deadline() == pytest.approx(11.1)  # ack_interval + heartbeat_timeout
    hb = beats(s.tick(11.1))[0]
    assert hb.flags & Flag.HANDED_OVER


def test_handshake_master_side() -> None:
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.tick(0.0)
    for i in range(1, 6):
        m.event(K(i), P(i), 0.1 * i)
    assert m.receive(slave.hb(Role.SLAVE_ACTIVE), 0.6) == []
    assert m.next_deadline() == 2.0  # peer silence re-armed to 4.6
    m.receive(slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDING_OVER), 0.7)
    m.receive(slave.ack(K(1), K(2), role=Role.SLAVE_STANDBY), 0.8)
    assert m.role is Role.MASTER_PENDING and m.buffer_depth == 3
    actions = m.receive(slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDED_OVER, acks_sent=1),
                        0.9)
    assert actions[:2] == [
        RoleChanged(Role.MASTER_PENDING, Role.MASTER, "peer handed over"),
        Flush([(K(i), P(i)) for i in (3, 4, 5)]),
    ]
    only_beat(actions[2:], Role.MASTER)


def test_handshake_master_waits_for_the_last_ack_then_gives_up() -> None:
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.event(K(1), P(1), 0.1)
    m.tick(0.0)
    slave.serial = 4  # acks 1-4 are delayed or lost
    actions = m.receive(slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDED_OVER, acks_sent=5), 1.0)
    assert m.role is Role.MASTER_PENDING
    assert only_beat(actions, Role.MASTER_PENDING).acks_heard == 0  # "send me 1-5"
    assert changes(m.receive(slave.ack(K(9), role=Role.SLAVE_STANDBY), 1.2)) == []
    for serial in (1, 2, 3):  # the re-sent acks: a hole below 5 still blocks
        slave.serial = serial - 1
        assert changes(m.receive(slave.ack(K(20 + serial), role=Role.SLAVE_STANDBY), 1.3)) == []
    slave.serial = 3
    assert changes(m.receive(slave.ack(K(24), role=Role.SLAVE_STANDBY), 1.4)) == [
        RoleChanged(Role.MASTER_PENDING, Role.MASTER, "peer handed over")]

    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave.listener = m
    m.tick(0.0)
    m.receive(slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDED_OVER, acks_sent=99), 1.0)
    m.tick(3.0)
    assert m.role is Role.MASTER_PENDING
    assert changes(m.tick(4.0)) == [RoleChanged(
        Role.MASTER_PENDING, Role.MASTER, "peer handed over; its last acks did not arrive")]


def test_a_returning_master_asks_for_the_missing_last_acks_every_ack_interval() -> None:
    """The handed-over slave only beats, and re-sends only acks sent before a datagram
    of its that we echo: so each ask is an echo request (its answer lets the next ask
    fetch a re-send lost too), every ack interval until the acks are in. One ask per
    beat lost the last ack twice on a lossy link, and the give-up flush repeated what it
    covered (the pair property's soak, seed 1309343)."""
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.tick(0.0)
    slave.serial = 5  # acks 1-5 (the last of the handover) are lost
    asks = [only_beat(m.receive(
        slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDED_OVER, acks_sent=5), 1.0),
        Role.MASTER_PENDING)]
    for expected in (1.1, 1.2, 1.3):
        t = m.next_deadline()
        assert t == pytest.approx(expected)
        asks.append(only_beat(m.tick(t), Role.MASTER_PENDING))
    assert all(hb.flags & Flag.ECHO_REQUEST and hb.acks_heard == 0 for hb in asks)
    for serial in range(5):  # the re-sends arrive: no more asking, the role moves
        slave.serial = serial
        actions = m.receive(slave.ack(K(serial), role=Role.SLAVE_STANDBY), 1.35)
    assert changes(actions) == [RoleChanged(Role.MASTER_PENDING, Role.MASTER, "peer handed over")]
    assert [hb for t in (1.4, 1.5, 1.9) for hb in beats(m.tick(t))] == []  # no more asks


def test_standby_slave_flushes_its_buffer_before_handing_over() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    old, new = master_peer(listener=s), master_peer(BOOT_M2, listener=s)
    s.tick(0.0)
    s.receive(old.hb(Role.MASTER), 0.0)
    s.event(K(1), P(1), 1.0)  # the old master died before acking this
    s.tick(2.5)
    actions = s.receive(new.hb(Role.MASTER_PENDING), 2.5)  # restarted within the bound
    assert actions[0] == Flush([(K(1), P(1))])
    assert only_beat(actions[1:], Role.SLAVE_STANDBY).flags == Flag.HANDING_OVER | Flag.ECHO_REQUEST
    assert s.role is Role.SLAVE_STANDBY and not changes(actions)
    s.delivered([K(1)], 2.6)
    assert beats(s.tick(2.7))[0].flags & Flag.HANDED_OVER


def test_failback_manual_keeps_the_slave_active_until_request_mode() -> None:
    s, master = active_slave(8.0, failback=Failback.MANUAL)
    for t in range(10, 100, 2):
        s.tick(float(t))
        assert s.receive(master.hb(Role.MASTER_PENDING), float(t)) == [] or s.active
    assert s.role is Role.SLAVE_ACTIVE
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.MANUAL, boot_id=BOOT_M2),
                        now=0.0)
    m.tick(0.0)
    m.event(K(1), P(1), 0.5)
    m.receive(slave_peer(listener=m).hb(Role.SLAVE_ACTIVE), 1.0)
    m.tick(4.0)
    assert m.role is Role.MASTER_PENDING  # the active peer keeps it pending
    actions = m.request_mode(Mode.MASTER, 4.5)
    assert actions[:2] == [RoleChanged(Role.MASTER_PENDING, Role.MASTER,
                                       "mode set to master (epoch 1)"),
                           Flush([(K(1), P(1))])]
    hb = beats(actions)[0]
    assert (hb.role, hb.epoch) == (Role.MASTER, 1)
    s.tick(100.0)
    assert changes(s.receive(master.hb(Role.MASTER, epoch=1), 100.0)) == [RoleChanged(
        Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY, "peer 1 is master at epoch 1")]
    assert s.epoch == 1


# -- mode switches, epochs, split brain ------------------------------------------------


def converse(a: FailoverMachine, b: FailoverMachine, t: float,
             first: list[Action] | None = None, *, sender: FailoverMachine | None = None,
             ) -> list[tuple[str, Action]]:
    """At time ``t``: tick both (or start from ``first``, sent by ``sender``) and deliver
    every datagram to the other side at once until both are quiet. Returns the log."""
    names = {id(a): "a", id(b): "b"}
    queue = [(sender, first)] if first is not None else [(me, me.tick(t)) for me in (a, b)]
    log: list[tuple[str, Action]] = []
    while queue:
        me, actions = queue.pop(0)
        assert me is not None and actions is not None
        other = b if me is a else a
        for action in actions:
            log.append((names[id(me)], action))
            if isinstance(action, Send):
                queue.append((other, other.receive(action.msg, t)))
    return log


def running_pair() -> tuple[FailoverMachine, FailoverMachine]:
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    log = converse(m, s, 0.0)
    # First contact: neither side can echo the other yet, so the first heartbeats
    # change nothing, each side asks for an echo, and the answers are fresh.
    assert [a for _, a in log if isinstance(a, Rejected)] == [Rejected("unfresh")] * 2
    assert s.peer_last_heard == 0.0 and m.peer_last_heard == 0.0
    return m, s


def test_mode_switch_by_rules_increments_the_epoch_and_the_peer_steps_down() -> None:
    m, s = running_pair()
    s.event(K(1), P(1), 0.5)
    actions = s.request_mode(Mode.MASTER, 1.0)
    assert actions[:2] == [
        RoleChanged(Role.SLAVE_STANDBY, Role.MASTER, "mode set to master (epoch 1)"),
        Flush([(K(1), P(1))]),
    ]
    assert s.epoch == 1 and s.mode is Mode.MASTER and s.active
    assert s.request_mode(Mode.MASTER, 1.1) == []  # rules set it per event: idempotent
    hb = beats(actions)[0]
    actions = m.receive(hb, 1.01)
    assert changes(actions) == [RoleChanged(Role.MASTER, Role.SLAVE_STANDBY,
                                            "peer 2 is master at epoch 1")]
    assert m.epoch == 1 and m.mode is Mode.SLAVE and not m.active
    # The old master's heartbeat from before the switch does not undo it.
    stale = Heartbeat(1, BOOT_M, 0, 99, Role.MASTER, Flag.CONFIGURED_MASTER, 2.0, DIGEST)
    assert changes(s.receive(stale, 1.02)) == [] and not s.split_brain
    # And back: the master's rules set %Mode = "master" again (the pair kept beating).
    converse(m, s, 2.0)
    converse(m, s, 4.0)
    actions = m.request_mode(Mode.MASTER, 5.0)
    assert m.epoch == 2 and m.role is Role.MASTER
    assert changes(s.receive(beats(actions)[-1], 5.01)) == [RoleChanged(
        Role.MASTER, Role.SLAVE_STANDBY, "peer 1 is master at epoch 2")]


def test_request_slave_on_the_active_side_hands_over() -> None:
    m, s = running_pair()
    m.event(K(1), P(1), 0.1)
    actions = m.request_mode(Mode.SLAVE, 1.0)
    assert changes(actions) == [RoleChanged(Role.MASTER, Role.SLAVE_STANDBY,
                                            "mode set to slave (epoch 1)")]
    hb = beats(actions)[0]
    assert hb.flags & ~Flag.ECHO_REQUEST == Flag.CONFIGURED_MASTER | Flag.HANDING_OVER | Flag.REQUESTED and hb.epoch == 1
    reply = s.receive(hb, 1.0)
    assert changes(reply) == [RoleChanged(
        Role.SLAVE_STANDBY, Role.MASTER_PENDING, "peer 1 is slave-standby at epoch 1")]
    converse(m, s, 1.0, reply, sender=s)  # m hears s's new role
    m.delivered([K(1)], 1.05)
    converse(m, s, 1.15, m.tick(1.15), sender=m)  # drained: acks, then HANDED_OVER
    assert s.role is Role.MASTER and m.role is Role.SLAVE_STANDBY
    assert changes(m.request_mode(Mode.SLAVE, 2.0)) == []


def partitioned_pair() -> tuple[FailoverMachine, FailoverMachine]:
    """Master and slave that heard each other, then lost the link at 0.0."""
    m, s = running_pair()
    for t in (2.0, 4.0):
        m.tick(t)
        s.tick(t)
    assert s.role is Role.SLAVE_ACTIVE and m.role is Role.MASTER
    return m, s


def test_split_brain_resolved_in_favour_of_the_configured_master() -> None:
    m, s = partitioned_pair()
    for t in range(6, 600, 2):  # hours would be the same: both forward meanwhile
        m.tick(float(t))
        s.tick(float(t))
    assert m.event(K(1), P(1), 600.0) and s.event(K(1), P(1), 600.0)
    m_hb = beats(m.tick(600.0))[0]
    s_hb = beats(s.tick(600.0))[0]
    # The link returns. Each side's last beat echoes what it heard 596 s ago: it proves
    # nothing, so it changes nothing and is answered with a request for an echo.
    actions = m.receive(s_hb, 600.01)
    assert actions[0] == Rejected("unfresh")
    challenge = only_beat(actions[1:], Role.MASTER)
    assert challenge.flags & Flag.ECHO_REQUEST and m.split_brains == 0
    log = converse(m, s, 600.01, actions, sender=m)
    assert [(n, a) for n, a in log if isinstance(a, SplitBrain | RoleChanged)] == [
        ("b", SplitBrain(True, "peer 1 is also active (master, epoch 0); "
                               "the peer wins: master by mode")),
        ("b", RoleChanged(Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY,
                          "split brain: peer 1 wins (master by mode)")),
        ("b", SplitBrain(False, "resolved: this probe stepped down")),
        # The master heard the slave's answer, sent while it was still active, then
        # its beat as standby: both sides count the split brain, once.
        ("a", SplitBrain(True, "peer 2 is also active (slave-active, epoch 0); "
                               "this probe wins: master by mode")),
        ("a", SplitBrain(False, "resolved: peer 2 is slave-standby")),
    ]
    assert s.split_brains == m.split_brains == 1
    assert not s.split_brain and not m.split_brain and m.active and not s.active
    m_log = converse(m, s, 601.0)
    assert not any(isinstance(a, RoleChanged | SplitBrain) for _, a in m_log)
    assert s.receive(m_hb, 601.5)[0] == Rejected("unfresh")  # the stale beat, late: nothing


def test_split_brain_higher_epoch_wins_over_the_configured_master() -> None:
    m, s = running_pair()
    s_hb = beats(s.request_mode(Mode.MASTER, 1.0))[0]  # rules made the slave master
    m.receive(s_hb, 1.0)
    assert m.role is Role.SLAVE_STANDBY and m.epoch == 1
    for t in (2.0, 4.0, 5.0, 6.0):  # partition: the old master takes over at epoch 1
        m.tick(t)
        s.tick(t)
    assert m.role is Role.SLAVE_ACTIVE
    log = converse(m, s, 8.0)  # the link returns
    assert [(n, a.new) for n, a in log if isinstance(a, RoleChanged)] == [
        ("a", Role.SLAVE_STANDBY)]
    assert s.role is Role.MASTER and m.split_brains == 1


def lockstep(a: FailoverMachine, b: FailoverMachine, times: range
             ) -> list[tuple[float, str, Action]]:
    """Tick both at each time; every datagram arrives at once. Returns the action log."""
    log: list[tuple[float, str, Action]] = []
    names = {id(a): "a", id(b): "b"}
    for t in map(float, times):
        queue = [(me, me.tick(t)) for me in (a, b)]
        while queue:
            me, actions = queue.pop(0)
            other = b if me is a else a
            for action in actions:
                log.append((t, names[id(me)], action))
                if isinstance(action, Send):
                    queue.append((other, other.receive(action.msg, t)))
    return log


def test_two_slaves_resolve_by_node_id_and_settle() -> None:
    a = FailoverMachine(config(Mode.SLAVE, node_id=5), now=0.0)
    b = FailoverMachine(config(Mode.SLAVE, node_id=6, boot_id=BOOT_M), now=0.0)
    log = lockstep(a, b, range(0, 100, 2))
    # Standby slaves do not keep each other from taking over; both do at 4.0, then
    # the higher node id wins and the pair stays settled.
    assert [(t, n, x.new) for t, n, x in log if isinstance(x, RoleChanged)] == [
        (4.0, "a", Role.SLAVE_ACTIVE), (4.0, "b", Role.SLAVE_ACTIVE),
        (4.0, "a", Role.SLAVE_STANDBY)]
    assert b.active and not a.active
    assert a.split_brains == b.split_brains == 1


def test_config_drift_is_reported_once_per_change() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    assert s.receive(master.hb(Role.MASTER, digest=b"othr"), 0.0) == [
        ConfigDrift(DIGEST, b"othr")]
    assert s.config_drift
    assert s.receive(master.hb(Role.MASTER, digest=b"othr"), 1.0) == []
    s.tick(2.0)
    assert s.receive(master.hb(Role.MASTER), 2.0) == [] and not s.config_drift


def test_standard_mode_is_always_active_and_silent() -> None:
    p = FailoverMachine(config(Mode.STANDARD), now=0.0)
    assert p.role is Role.STANDARD and p.active and p.mode is Mode.STANDARD
    assert p.next_deadline() == math.inf
    assert p.event(K(1), P(1), 0.0) is True
    p.delivered([K(1)], 0.0)
    assert p.tick(100.0) == []
    assert p.receive(master_peer(listener=p).hb(Role.MASTER), 1.0) == []
    assert p.request_mode(Mode.MASTER, 1.0) == []
    assert p.next_deadline() == math.inf


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        config(Mode.SLAVE, beat_interval=0.0)
    with pytest.raises(ValueError):
        config(Mode.SLAVE, boot_id=b"x")
    with pytest.raises(ValueError):
        config(Mode.SLAVE, buffer_limit=0)


# -- invariants over random inputs -----------------------------------------------------

ROLES = list(Role)
peer_boots = st.sampled_from([BOOT_M, BOOT_M2, BOOT_S])
heartbeats = st.builds(
    Heartbeat, sender=st.sampled_from([1, 2, 3]), boot_id=peer_boots,
    epoch=st.integers(0, 3), seq=st.just(0), role=st.sampled_from(ROLES),
    flags=st.sampled_from([Flag(i) for i in range(8)]),
    beat_interval=st.sampled_from([0.1, 1.0, 2.0, 5.0]),
    config_digest=st.sampled_from([DIGEST, b"othr"]), acks_sent=st.integers(0, 5))
acks = st.builds(
    Ack, sender=st.just(1), boot_id=peer_boots, epoch=st.integers(0, 3), seq=st.just(0),
    role=st.sampled_from(ROLES), serial=st.integers(0, 5),
    keys=st.lists(st.integers(0, 9).map(K), max_size=4).map(tuple))
inputs = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(st.just("receive"), st.one_of(heartbeats, acks)),
    st.tuples(st.just("event"), st.integers(0, 9)),
    st.tuples(st.just("delivered"), st.lists(st.integers(0, 9), max_size=3)),
    st.tuples(st.just("mode"), st.sampled_from(list(Mode))),
)
steps = st.lists(st.tuples(st.floats(0, 3.0), inputs), max_size=60)


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from([Mode.MASTER, Mode.SLAVE, Mode.STANDARD]),
       failback=st.sampled_from(list(Failback)), interval=st.sampled_from([0.1, 2.0]),
       steps=steps)
def test_invariants_over_random_inputs(mode: Mode, failback: Failback, interval: float,
                                       steps: list[tuple[float, tuple[object, ...]]]) -> None:
    cfg = config(mode, failback=failback, beat_interval=interval, buffer_limit=5,
                 retention=5.0, heartbeat_timeout=0.0)
    now = 0.0
    machine = FailoverMachine(cfg, now=now)
    machine.tick(now)
    for dt, (kind, *args) in steps:
        now += dt
        before = machine.role
        actions: list[Action] = []
        if kind == "tick":
            actions = machine.tick(now)
        elif kind == "receive":
            actions = machine.receive(args[0], now)  # type: ignore[arg-type]
        elif kind == "event":
            i = args[0]
            assert isinstance(i, int)
            machine.event(K(i), P(i), now)
        elif kind == "delivered":
            machine.delivered([K(i) for i in args[0]], now)  # type: ignore[attr-defined]
        else:
            actions = machine.request_mode(args[0], now)  # type: ignore[arg-type]
        if kind not in ("event", "delivered"):
            assert machine.next_deadline() > now
        # The role changes only together with RoleChanged actions that chain up, and
        # every heartbeat carries the role held when it was sent.
        role = before
        for action in actions:
            if isinstance(action, RoleChanged):
                assert action.old is role and action.new is not role
                role = action.new
            elif isinstance(action, Send) and isinstance(action.msg, Heartbeat):
                assert action.msg.role is role
        assert role is machine.role
        assert machine.active == (machine.role in (Role.MASTER, Role.SLAVE_ACTIVE,
                                                   Role.STANDARD))
        assert machine.buffer_depth <= 5
        if machine.active:
            assert machine.buffer_depth == 0


# -- a master that was stalled ----------------------------------------------------------


def test_a_master_stalled_past_the_bound_waits_for_the_handover_instead_of_forwarding() -> None:
    # SIGSTOP or a frozen VM: after the beat at 2.0 nothing runs until 8.5, past 2.0 +
    # the 4.0 s bound, so the slave (whose silence timer the beat at 2.0 restarted) has
    # taken over meanwhile. Forwarding the socket backlog now would duplicate what the
    # slave delivered; the master goes pending instead.
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    m.tick(0.0)
    m.tick(2.0)
    assert m.stall_at == 6.0
    assert m.event(K(1), P(1), 5.9) is True  # late, but within the bound: still master
    actions = m.tick(8.5)
    assert changes(actions) == [RoleChanged(
        Role.MASTER, Role.MASTER_PENDING,
        "stalled for 6.5 s without beating; the peer may have taken over")]
    assert beats(actions)[0].role is Role.MASTER_PENDING
    assert m.stall_at == math.inf and not m.active
    assert m.event(K(2), P(2), 8.5) is False and m.buffer_depth == 1
    # Nobody active answers within the bound: it takes over on its own, flushing.
    actions = tick_through(m, 12.5)
    assert changes(actions) == [RoleChanged(Role.MASTER_PENDING, Role.MASTER,
                                            "no active peer heard for 4.0 s")]
    assert [a for a in actions if isinstance(a, Flush)] == [Flush([(K(2), P(2))])]


def test_a_stall_is_counted_from_the_last_heartbeat_the_slave_heard() -> None:
    # The slave takes over one bound after the last heartbeat it heard (regular or
    # extra). Counted from the next regular beat instead, a stall of 5 s after the beat
    # at 2.0 (bound 4 s, the slave active from 6.0) went unseen: the master woke at 7.0
    # as master and forwarded its backlog beside the slave (found by the pair property).
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    m.tick(0.0)
    m.tick(2.0)
    actions = m.tick(7.0)
    assert [c.new for c in changes(actions)] == [Role.MASTER_PENDING]
    assert m.event(K(1), P(1), 7.0) is False  # held, not forwarded beside the slave


def test_an_active_slave_stalled_past_the_bound_steps_down_instead_of_forwarding() -> None:
    # The slave took over at 4.0; it freezes after its beat at 6.0 while the master,
    # back, takes the role (it heard no active peer). Waking at 11.0 as slave-active and
    # forwarding its socket's backlog would deliver it beside the master (found by the
    # pair property's pair-wide duplicate check).
    s, master = active_slave(6.0)
    assert s.stall_at == 10.0
    actions = s.tick(11.0)
    assert changes(actions) == [RoleChanged(
        Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY,
        "stalled for 5.0 s without beating; the peer may have taken over")]
    assert s.stall_at == math.inf and not s.active
    assert s.event(K(1), P(1), 11.0) is False and s.buffer_depth == 1
    # The master is active: its acks drop what the slave held, and the slave stays standby.
    s.receive(master.hb(Role.MASTER), 11.2)
    s.receive(master.ack(K(1)), 11.3)
    assert s.buffer_depth == 0 and s.role is Role.SLAVE_STANDBY
    # Had nobody been active, a fresh silence (one bound) makes it active again.
    alone, _ = active_slave(6.0)
    alone.tick(11.0)
    alone.event(K(2), P(2), 11.0)
    actions = tick_through(alone, 15.0)
    assert [c.new for c in changes(actions)] == [Role.SLAVE_ACTIVE]
    assert [a for a in actions if isinstance(a, Flush)] == [Flush([(K(2), P(2))])]


def test_a_standby_cannot_stall() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    s.tick(0.0)
    assert s.stall_at == math.inf
