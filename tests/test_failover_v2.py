"""Protocol v2 transcripts: freshness, gap fill, the reliable ack stream, sink health.

Plain numbers in, exact actions out, as in test_failover.py (whose helpers this uses).
"""

from __future__ import annotations

import pytest

from probepair.failover import (
    Failback,
    FailoverMachine,
    Flush,
    GapFill,
    Handover,
    HandoverReason,
    Mode,
    Rejected,
    Role,
    RoleChanged,
)
from probepair.failover.wire import Ack, Flag, make_boot_id
from tests.test_failover import (
    BOOT_M2,
    K,
    P,
    beats,
    changes,
    config,
    converse,
    master_peer,
    running_pair,
    sent,
    slave_peer,
    tick_through,
)

# -- freshness -------------------------------------------------------------------------


def test_a_captured_heartbeat_replayed_after_the_master_died_changes_nothing() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 0.5)
    captured = master.hb(Role.MASTER_PENDING)  # never delivered: an attacker kept it
    s.tick(2.0)
    tick_through(s, 4.5)
    assert s.role is Role.SLAVE_ACTIVE  # the master died at 0.5
    # Its seq is above everything seen and its MAC is good, but it echoes our seq from
    # 0.0: older than the bound, so it proves nothing.
    actions = s.receive(captured, 6.0)
    assert Rejected("unfresh") in actions
    assert beats(actions)[-1].flags & Flag.ECHO_REQUEST  # a live peer would answer
    assert s.role is Role.SLAVE_ACTIVE and not changes(actions)
    # Replays of anything older, of this boot or an earlier one, fare no better.
    actions = s.receive(master.hb(Role.MASTER, echo_seq=1), 6.5)
    assert Rejected("unfresh") in actions and not changes(actions)
    old = master_peer(BOOT_M2, listener=s)
    old.listener = None  # never heard us: echoes nothing
    actions = s.receive(old.hb(Role.MASTER_PENDING), 7.0)
    assert Rejected("unfresh") in actions and not changes(actions)
    assert s.role is Role.SLAVE_ACTIVE and s.peer_last_heard == 0.5


def test_a_replayed_ack_does_not_touch_the_buffer() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 0.1)
    stale_ack = master.ack(K(1))
    for t in (2.0, 4.0, 6.0):
        s.tick(t)
        s.receive(master.hb(Role.MASTER), t)
    s.event(K(1), P(1), 6.5)  # the same payload again, much later
    assert Rejected("unfresh") in s.receive(stale_ack, 6.6)
    assert s.buffer_depth == 1 and s.acked == 0


def test_an_unproven_peer_is_proven_within_one_round_trip() -> None:
    m, s = running_pair()  # asserts the two unfresh first contacts
    assert m.active and s.role is Role.SLAVE_STANDBY
    assert s.next_deadline() == 2.0 and s.peer_last_heard == 0.0


def test_only_the_newest_heartbeat_rearms_the_silence_timer() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    early = master.hb(Role.MASTER)
    late = master.hb(Role.MASTER)
    s.receive(late, 1.0)
    assert s.next_deadline() == 2.0 and s.peer_last_heard == 1.0
    s.receive(early, 1.5)  # reordered by the network: fresh, but not the newest
    assert s.peer_last_heard == 1.0
    assert changes(tick_through(s, 5.0))[0].new is Role.SLAVE_ACTIVE  # 1.0 + 4.0


# -- gap fill ---------------------------------------------------------------------------


def standby_with(*times: float) -> tuple[FailoverMachine, object]:
    s = FailoverMachine(config(Mode.SLAVE, gap_timeout=1.0), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 0.0)
    for i, t in enumerate(times):
        s.event(K(i), P(i), t)
    return s, master


def test_events_the_masters_acks_passed_by_are_delivered_by_the_standby() -> None:
    # Held: K0..K4 at 0.1 .. 0.5; the master's socket overflowed and it missed K1, K2.
    s, master = standby_with(0.1, 0.2, 0.3, 0.4, 0.5)
    s.event(K(5), P(5), 1.6)
    assert s.receive(master.ack(K(0), K(3), K(4)), 1.0) == []  # within GapTimeout of K1
    assert s.buffer_depth == 3 and s.gap_fills == 0
    actions = s.receive(master.ack(K(5)), 1.7)  # K5 reached us 1.3 s after K2
    assert actions == [GapFill([(K(1), P(1)), (K(2), P(2))])]
    assert s.gap_fills == 2 and s.buffer_depth == 0
    s.delivered([K(1), K(2)], 1.75)  # acked back to the master like any delivery
    acks = [m for m in sent(s.tick(1.85)) if not hasattr(m, "beat_interval")]
    assert [a.keys for a in acks] == [(K(1), K(2))]  # type: ignore[union-attr]


def test_a_busy_master_behind_by_seconds_triggers_no_gap_fill() -> None:
    s, master = standby_with(*[0.01 * i for i in range(300)])
    # The master delivers in order, 3 s behind: nothing is passed by, nothing filled.
    for i in range(0, 300, 10):
        s.tick(3.0 + 0.01 * i)
        assert s.receive(master.ack(*[K(j) for j in range(i, i + 10)]), 3.0 + 0.01 * i) == []
    assert s.gap_fills == 0 and s.buffer_depth == 0


def test_an_idle_master_passes_by_everything_older_than_the_gap_timeout() -> None:
    s, master = standby_with(0.1, 0.2)
    assert s.receive(master.ack(K(0), flags=Flag.IDLE), 1.0) == []  # K1 only 0.8 s old
    s.tick(2.0)
    actions = s.receive(master.hb(Role.MASTER, flags=Flag.IDLE, acks_sent=1), 2.0)
    assert [a for a in actions if isinstance(a, GapFill)] == [GapFill([(K(1), P(1))])]


def test_a_lost_ack_delays_the_gap_fill_instead_of_duplicating() -> None:
    s, master = standby_with(0.1, 0.2, 0.3, 1.4)  # the master missed K0 and K2
    lost = master.ack(K(1))  # serial 1 arrives late
    actions = s.receive(master.ack(K(3)), 1.5)  # serial 2 passes them by: a hole below
    assert [b.acks_heard for b in beats(actions)] == [0]  # no fill yet: "re-send 1"
    assert s.buffer_depth == 3 and s.gap_fills == 0
    # K1 was delivered (its ack is here now): only K0 and K2 are filled.
    actions = s.receive(lost, 1.6)
    assert [a for a in actions if isinstance(a, GapFill)] == [GapFill([(K(0), P(0)), (K(2), P(2))])]
    assert s.buffer_depth == 0


def test_an_ack_hole_is_skipped_after_a_bound() -> None:
    s, master = standby_with(0.1, 0.2, 0.3, 1.4)
    master.ack(K(1))  # lost for good (the master's ack log no longer has it)
    s.receive(master.ack(K(3)), 1.5)
    # The hole is reported again every ack interval (each report or re-send may be
    # lost) until it fills or, a bound after it opened (1.5 + 4.0), is given up.
    assert s.next_deadline() == pytest.approx(1.6)
    reports, t = [], s.next_deadline()
    while t < 5.5:
        reports += [b.acks_heard for b in beats(s.tick(t))]
        if t in (2.0, 4.0):
            s.receive(master.hb(Role.MASTER), t)
        t = s.next_deadline()
    assert len(reports) >= 35 and set(reports) == {0}  # "re-send 1", ~every 0.1 s
    assert t == 5.5
    # K1's delivery is unknown now: delivered again (a duplicate at a plain sink only).
    assert [a for a in s.tick(5.5) if isinstance(a, GapFill)] == [
        GapFill([(K(0), P(0)), (K(1), P(1)), (K(2), P(2))])]
    assert s.next_deadline() > 5.6  # no hole: no more reports


def test_no_gap_fill_while_the_peer_is_not_active_or_we_are() -> None:
    s, master = standby_with(0.1)
    s.receive(master.ack(K(9), role=Role.MASTER_PENDING, flags=Flag.IDLE), 3.0)
    assert s.gap_fills == 0 and s.buffer_depth == 1


def test_a_standby_first_heard_after_a_stall_gets_the_acks_of_what_it_holds() -> None:
    """A standby that froze at start (its beats lost) wakes with the master's acks unfresh
    in its socket and rejects them. Its first fresh heartbeat looks like a new boot's,
    but says it holds events 8.9 s old: every ack of that long and a bound is re-sent,
    not only the last bound's (a soak: the standby delivered again the 196 events those
    acks covered)."""
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.tick(0.0)
    tick_through(m, 4.0)
    assert m.active  # no peer heard: the master forwards
    for i in range(3):
        assert m.event(K(i), P(i), 4.1)
    m.delivered([K(0), K(1), K(2)], 4.2)
    [ack] = [a for a in sent(m.tick(4.3)) if isinstance(a, Ack)]
    tick_through(m, 9.0)
    resent = [a for a in sent(m.receive(slave.hb(Role.SLAVE_STANDBY, held_age=8.9), 9.01))
              if isinstance(a, Ack)]
    assert [(a.serial, a.keys) for a in resent] == [(ack.serial, (K(0), K(1), K(2)))]


def test_a_restarted_standby_gets_only_the_acks_of_what_it_can_hold() -> None:
    """A new boot holding events 1 s old: acks from more than that and a bound ago
    concern nothing it holds, and are not re-sent."""
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    m.tick(0.0)
    tick_through(m, 4.0)
    assert m.active
    assert m.event(K(0), P(0), 4.1)
    m.delivered([K(0)], 4.2)
    assert [a for a in sent(m.tick(4.3)) if isinstance(a, Ack)]
    slave = slave_peer(listener=m)
    tick_through(m, 9.5)
    resent = [a for a in sent(m.receive(slave.hb(Role.SLAVE_STANDBY, held_age=1.0), 9.51))
              if isinstance(a, Ack)]
    assert resent == []


def test_a_re_sent_ack_is_applied_once() -> None:
    s, master = standby_with(0.1)
    ack = master.ack(K(0))
    s.receive(ack, 0.5)
    s.event(K(0), P(0), 0.6)  # the same key again after its ack
    resent = master.ack(K(0))
    object.__setattr__(resent, "serial", ack.serial)  # the same serial, a new seq
    s.receive(resent, 0.7)
    assert s.acked == 1 and s.buffer_depth == 1  # the second copy of K0 stays held


# -- the ack stream at the handover ----------------------------------------------------


def test_the_returning_master_flushes_only_after_every_ack_arrived() -> None:
    m = FailoverMachine(config(Mode.MASTER), now=0.0)
    slave = slave_peer(listener=m)
    m.tick(0.0)
    for i in range(4):
        m.event(K(i), P(i), 0.1)
    m.receive(slave.hb(Role.SLAVE_ACTIVE), 0.2)
    a1, a2 = slave.ack(K(0), role=Role.SLAVE_STANDBY), slave.ack(K(1), role=Role.SLAVE_STANDBY)
    m.receive(a2, 0.3)
    m.receive(slave.hb(Role.SLAVE_STANDBY, flags=Flag.HANDED_OVER, acks_sent=2), 0.35)
    assert m.role is Role.MASTER_PENDING
    actions = m.receive(a1, 0.4)
    assert changes(actions) == [RoleChanged(Role.MASTER_PENDING, Role.MASTER, "peer handed over")]
    assert [a for a in actions if isinstance(a, Flush)] == [Flush([(K(2), P(2)), (K(3), P(3))])]


def test_a_pair_fails_back_with_zero_duplicates_over_a_lossy_ack() -> None:
    m, s = running_pair()
    converse(m, s, 2.0)
    # The master dies; the slave takes over and forwards K0..K9.
    for t in (4.0, 6.0):
        s.tick(t)
    assert s.role is Role.SLAVE_ACTIVE
    m2 = FailoverMachine(config(Mode.MASTER, boot_id=BOOT_M2), now=10.0)
    for i in range(10):
        assert s.event(K(i), P(i), 9.0 + 0.01 * i)
    s.delivered([K(i) for i in range(8)], 9.5)
    # The restarted master holds K5..K9 (its feed came up at 9.05).
    for i in range(5, 10):
        m2.event(K(i), P(i), 10.0)
    log = converse(m2, s, 10.0)
    # Drop nothing here; the handover drains K8, K9 first.
    assert s.handing_over and m2.role is Role.MASTER_PENDING
    s.delivered([K(8), K(9)], 10.05)
    log = converse(m2, s, 10.1)
    flushes = [a for _, a in log if isinstance(a, Flush)]
    assert m2.role is Role.MASTER and flushes == []  # every event was acked: nothing twice
    assert [a for _, a in log if isinstance(a, Handover)] == []  # counted at step-down


# -- health-aware roles ----------------------------------------------------------------


def checked_beat(m: FailoverMachine, s: FailoverMachine, t: float) -> list[tuple[str, Action]]:
    """``converse`` at ``t``, after each probe whose sink works has seen it work (the
    runner's check on a standby, a delivery on the active side): what makes a standby's
    sink *verified*, which a sink handover needs (issue 21)."""
    for me in (m, s):
        if me.sink_healthy:
            me.sink_verified(t)
    return converse(m, s, t)


def test_a_master_whose_sink_fails_hands_over_to_a_healthy_peer_and_takes_it_back() -> None:
    m, s = running_pair()
    m.sink_state(1.0, 4096, 1.0)  # failing since 1.0, spooling
    for t in (2.0, 4.0, 6.0, 8.0, 10.0):
        log = checked_beat(m, s, t)
        assert m.active, t
    assert s.peer_sink_failing == 9.0 and s.peer_spool_bytes == 4096
    m.event(K(1), P(1), 10.5)
    s.event(K(1), P(1), 10.5)
    assert m.config.sink_failover == 30.0
    t = 12.0
    while m.active:
        log = checked_beat(m, s, t)
        t += 2.0
    assert t - 2.0 == 32.0  # the first beat at or after 1.0 + 30
    assert ("a", Handover(HandoverReason.SINK)) in log
    assert m.role is Role.SLAVE_STANDBY and s.role is Role.MASTER_PENDING and s.epoch == 1
    # m cannot drain (its sink fails): after the bounded drain it hands over anyway,
    # and s flushes K1, which m spooled but never acked: delivered, not lost.
    log = checked_beat(m, s, 33.1)
    assert s.role is Role.MASTER and ("b", Flush([(K(1), P(1))])) in log
    t = 34.0
    # The sink works again at 40.0; after SinkFailover more the master takes it back.
    m.sink_state(None, 0, 40.0)
    while m.role is not Role.MASTER:
        log = checked_beat(m, s, t)
        if m.role is Role.MASTER_PENDING:
            s.delivered([], t)
        t += 2.0
        assert t < 100
    assert 70.0 <= t - 2.0 <= 74.0
    assert s.role is Role.SLAVE_STANDBY and m.epoch == 2


def test_both_sinks_failing_no_handover_and_the_first_sink_back_delivers() -> None:
    """Issue 21: a standby reports its sink as its checks find it; an active probe hands
    over only to a peer whose verified sink works. With both failing nothing moves (one
    suppression counted per outage); once the standby's sink works, it takes over."""
    m, s = running_pair()
    m.sink_state(1.0, 4096, 1.0)  # the master's sink fails from 1.0 ...
    s.sink_state(1.5, 0, 1.5)  # ... and the standby's checks find its own failing too
    t = 2.0
    while t <= 60.0:
        log = checked_beat(m, s, t)
        assert m.role is Role.MASTER and s.role is Role.SLAVE_STANDBY, t
        assert not any(isinstance(a, Handover) for _, a in log)
        t += 2.0
    assert m.handovers_suppressed == 1  # once per outage, not per beat
    assert m.epoch == 0 and s.epoch == 0
    # The standby's sink works again at 61.0 (a check passed): the master hands over.
    s.sink_state(None, 0, 61.0)
    while m.active:
        log = checked_beat(m, s, t)
        t += 2.0
        assert t < 80
    assert ("a", Handover(HandoverReason.SINK)) in log
    assert m.role is Role.SLAVE_STANDBY and m.handovers_suppressed == 1


def test_a_sink_handover_goes_only_to_a_standby_whose_sink_was_verified_lately() -> None:
    """Issue 21: "healthy" from a standby is not enough; its heartbeats say how long ago
    its sink last worked. Never verified, or verified longer ago than SinkFailover:
    no handover (suppressed, counted); verified once more: the handover follows."""
    m, s = running_pair()
    m.sink_state(1.0, 4096, 1.0)
    t = 2.0
    while t <= 40.0:  # past SinkFailover (30 s); the standby never checked its sink
        log = converse(m, s, t)
        assert m.role is Role.MASTER and not any(isinstance(a, Handover) for _, a in log)
        t += 2.0
    assert m.handovers_suppressed == 1 and s.sink_healthy
    assert m.peer_sink_verified_age == float("inf")
    s.sink_verified(41.0)  # one check passes at 41 ...
    log = converse(m, s, 42.0)
    assert ("a", Handover(HandoverReason.SINK)) in log  # ... and the next beat hands over


def test_a_standby_verified_longer_ago_than_sink_failover_gets_no_handover() -> None:
    m, s = running_pair()
    s.sink_verified(0.5)  # its last check passed at 0.5 ...
    m.sink_state(1.0, 4096, 1.0)
    t = 2.0
    while t <= 40.0:  # ... and none since: by 31 it is older than SinkFailover
        log = converse(m, s, t)
        assert not any(isinstance(a, Handover) for _, a in log), t
        t += 2.0
    assert 29.0 < m.peer_sink_verified_age < 40.0
    assert m.role is Role.MASTER and m.handovers_suppressed == 1


def test_what_the_peer_delivered_during_a_sink_handover_is_not_replayed_from_the_spool() -> None:
    """Issue 21: the master spools K1..K3 while its sink fails, hands over, and the slave
    flushes them to its own sink. Its acks reach the master (now a standby holding none
    of them), and the master's replay asks which of its spooled keys the peer has: those
    three, each once; K4, which the peer never acked, is still replayed."""
    m, s = running_pair()
    for n in (1, 2, 3):
        assert m.event(K(n), P(n), 0.5)  # forwarded: the runner spools them
        assert not s.event(K(n), P(n), 0.5)  # held by the standby
    assert m.event(K(4), P(4), 0.6)  # one the slave's copy of the feed missed
    m.sink_state(1.0, 4096, 1.0)
    t = 2.0
    while m.active:
        checked_beat(m, s, t)
        t += 2.0
    log = checked_beat(m, s, t)
    assert s.role is Role.MASTER and ("b", Flush([(K(n), P(n)) for n in (1, 2, 3)])) in log
    s.delivered([K(1), K(2), K(3)], t)
    checked_beat(m, s, t + 0.5)  # the slave's acks
    # Far past BufferRetention (60 s): the keys are kept while the spool holds alerts.
    for later in range(int(t) + 2, int(t) + 120, 2):
        checked_beat(m, s, float(later))
    assert m.covered_by_peer([K(1), K(2), K(3), K(4)]) == {K(1), K(2), K(3)}
    assert m.covered_by_peer([K(1), K(2), K(3)]) == set()  # each answers once
    assert m.replays_skipped == 3


def test_a_standby_replays_of_its_spool_only_what_the_active_peer_passed_by() -> None:
    """Issue 21: after a sink handover the new active side flushes its own copies of
    what the old one spooled. The old one's spool waits: a key the peer acked is skipped,
    what precedes it the peer passed by (the runner delivers that), and once the peer
    acks an event the old side buffered after stepping down, all the rest may go. A
    replay at once would race the flush (both sinks back together: a whole outage twice)."""
    m, s = running_pair()
    for n in (1, 2, 3, 4):
        assert m.event(K(n), P(n), 0.5)
        if n != 2:  # the slave's copy of the feed missed K2
            assert not s.event(K(n), P(n), 0.5)
    m.sink_state(1.0, 4096, 1.0)
    t = 2.0
    while m.active:
        checked_beat(m, s, t)
        t += 2.0
    checked_beat(m, s, t)
    assert s.active and not m.active
    spooled = [K(1), K(2), K(3), K(4)]
    assert m.spool_replay(spooled) == (set(), False)  # the peer has delivered nothing yet
    s.delivered([K(1), K(3)], t)  # the flush, in feed order: K1, K3 (K4 not yet)
    checked_beat(m, s, t + 0.5)
    assert m.spool_replay(spooled) == ({K(1), K(3)}, False)  # so K2 was passed by
    assert not m.event(K(5), P(5), t + 1.0)  # m, a standby now, holds K5 ...
    assert s.event(K(5), P(5), t + 1.0)
    s.delivered([K(4), K(5)], t + 1.1)  # ... and the peer acks it: past the spool
    checked_beat(m, s, t + 1.5)
    assert m.spool_replay(spooled) == ({K(4)}, True)


def test_no_sink_handover_to_a_standby_whose_sink_just_came_back_with_ours() -> None:
    """Both sinks return together: the standby's check passes first, but a handover
    waits until its sink has worked for SINK_SETTLE (1 s), and by then the active probe's
    retry (every 0.5 s at most) found its own sink working: the role stays."""
    m, s = running_pair()
    m.sink_state(1.0, 4096, 1.0)
    s.sink_state(1.5, 0, 1.5)
    for t in range(2, 40, 2):  # past SinkFailover (30 s): both fail, suppressed
        converse(m, s, float(t))
    s.sink_state(None, 0, 39.9)  # the standby's check passes at 39.9 ...
    s.sink_verified(39.9)
    log = converse(m, s, 40.0)
    assert not any(isinstance(a, Handover) for _, a in log)  # ... not yet 1 s
    m.sink_state(None, 0, 40.3)  # ... and the master's retry works at 40.3
    for t in (42.0, 44.0, 46.0, 48.0):
        log = checked_beat(m, s, t)
        assert not any(isinstance(a, Handover) for _, a in log), t
    assert m.role is Role.MASTER and m.handovers_suppressed == 1


def test_without_a_spool_the_peers_acks_for_unheld_keys_expire_with_buffer_retention() -> None:
    """The acked keys a standby does not hold are kept BufferRetention (60 s) only, when
    no spool waits for them: memory stays bounded as before."""
    m, s = running_pair()
    for n in (8, 9):  # events only the master's copy of the feed had
        assert m.event(K(n), P(n), 2.5)
    m.delivered([K(8), K(9)], 2.6)
    for t in range(2, 12, 2):
        converse(m, s, float(t))
    assert s.covered_by_peer([K(8)]) == {K(8)}  # within retention: the ack is known
    for t in range(12, 70, 2):
        converse(m, s, float(t))
    assert s.covered_by_peer([K(9)]) == set()  # expired with retention: no spool


def test_standby_memory_stays_inside_buffer_bytes_and_buffer_size_across_a_long_outage(
) -> None:
    """Issue 21 item 6: both sinks down for ten minutes, a standby's buffer stays inside
    BufferBytes (the oldest go, counted), and the peer-acked keys a spooling probe keeps
    past BufferRetention stay inside BufferSize."""
    limit, cap = 64 * 1024, 500
    m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE, buffer_limit=cap,
                               buffer_bytes=limit), now=0.0)
    s = FailoverMachine(config(Mode.SLAVE, buffer_limit=cap, buffer_bytes=limit), now=0.0)
    converse(m, s, 0.0)
    m.sink_state(0.5, 1 << 20, 0.5)  # spooling from 0.5 ...
    s.sink_state(0.5, 0, 0.5)  # ... and the standby's checks find its sink down too
    n = 0
    for t in range(1, 601):
        for _ in range(20):  # 20 events/s of ~100 bytes, never acked: the sinks are down
            n += 1
            m.event(K(n), P(n) + bytes(90), float(t))
            s.event(K(n), P(n) + bytes(90), float(t))
        if t % 2 == 0:
            converse(m, s, float(t))
        assert s.buffer_bytes <= limit, t
    assert m.active and not s.active  # no handover into a dead sink
    assert s.buffer_depth <= cap
    # The spooling master: acks for far more keys than it holds are kept, but capped.
    s.delivered([K(i) for i in range(100_000, 100_000 + 3 * cap)], 601.0)
    m.delivered([], 601.0)
    for t in (602.0, 604.0, 606.0):
        converse(m, s, t)
    assert len(m._standby.unseen) == cap  # the newest cap of 3 x cap kept


# -- roles converge: designation ---------------------------------------------------------


def test_an_operators_switch_holds_and_a_restart_of_either_side_ends_it() -> None:
    """Issue 21: only an operator's or a rules switch changes who is master by
    configuration, until either probe restarts; automatic switches do not."""
    m, s = running_pair()
    actions = s.request_mode(Mode.MASTER, 1.0)  # `probepair takeover` on the slave
    assert beats(actions)[0].flags & Flag.REQUESTED
    converse(m, s, 1.0, actions, sender=s)
    t = 1.0
    for t in [2.0 + 2 * i for i in range(30)]:  # a minute: the master does not reclaim
        converse(m, s, t)
        assert s.role is Role.MASTER and m.role is Role.SLAVE_STANDBY, t
    # The slave restarts: its switch is over, the props hold again. The master, healthy,
    # takes the role back through the handshake (the new slave first takes over: it
    # hears no master, as at any start).
    s2 = FailoverMachine(config(Mode.SLAVE, boot_id=make_boot_id(2_000, b"ssss")), now=t)
    while not m.active or s2.active:
        t += 0.5
        log = converse(m, s2, t)
        for _ in range(3):  # let handovers finish at this instant
            log += converse(m, s2, t)
        assert t < 200, (m.role, s2.role)
    assert m.role is Role.MASTER and s2.role is Role.SLAVE_STANDBY


def test_a_restarted_master_takes_the_role_back_from_a_slave_that_got_it_automatically(
) -> None:
    """The issue's schedule: the master hands over for its sink (epoch 1), then is
    restarted before it took the role back; the slave is master at a higher epoch than
    the new boot's 0. The new boot adopts slave-standby, then reclaims (epoch + 1)."""
    m, s = running_pair()
    m.sink_state(1.0, 0, 1.0)
    t = 2.0
    while m.active or not s.active:
        checked_beat(m, s, t)
        t += 0.5
        assert t < 60
    assert s.role is Role.MASTER and s.epoch >= 1
    m2 = FailoverMachine(config(Mode.MASTER, boot_id=BOOT_M2), now=t)
    while not m2.active or s.active:
        t += 0.5
        converse(m2, s, t)
        for _ in range(3):
            converse(m2, s, t)
        assert t < 120, (m2.role, s.role)
    assert m2.role is Role.MASTER and s.role is Role.SLAVE_STANDBY and m2.epoch > s.epoch - 1


# -- a standby that was stalled ----------------------------------------------------------


def test_a_standby_woken_from_a_stall_asks_before_it_takes_over() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 1.0)
    assert s.next_deadline() == 2.0
    # SIGSTOP from 1.5 to 12.0: the master's beats wait in our socket meanwhile.
    actions = s.tick(12.0)
    assert not changes(actions)  # the silence timer is 7 s late: ask first
    assert beats(actions)[-1].flags & Flag.ECHO_REQUEST
    # One HeartbeatTimeout for the answer, asking again every AckInterval meanwhile:
    # a lost request (or answer) on a lossy link must not make it take over.
    assert s.next_deadline() == 12.1
    for t in (12.1, 12.2):
        assert not changes(actions := s.tick(t))
        assert beats(actions)[-1].flags & Flag.ECHO_REQUEST
    s.receive(master.hb(Role.MASTER), 12.21)  # the live master answers
    assert s.role is Role.SLAVE_STANDBY and s.next_deadline() == 14.0
    # Then the master dies: a timer on time takes over at once, at the bound.
    s.tick(14.0)
    assert changes(s.tick(16.21)) == [RoleChanged(
        Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE, "master silent for 4.0 s")]


def standby_that_heard_the_master_at(t: float) -> FailoverMachine:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    s.tick(0.0)
    s.receive(master_peer(listener=s).hb(Role.MASTER), t)
    return s


def test_a_stalled_standby_whose_master_died_takes_over_one_bound_later() -> None:
    # A bound, not a round trip: a master that froze as we woke, for less than the
    # bound, carries on when it wakes, so we must not be active by then.
    s = standby_that_heard_the_master_at(1.0)
    asks = beats(s.tick(12.0))  # stalled past the bound; nobody answers
    t = 12.0
    while s.next_deadline() < 16.0 - 1e-9:
        t = s.next_deadline()
        actions = s.tick(t)
        assert changes(actions) == []
        asks += beats(actions)
    assert len(asks) >= 30 and all(hb.flags & Flag.ECHO_REQUEST for hb in asks)
    assert changes(s.tick(16.0)) == [RoleChanged(
        Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE, "master silent for 15.0 s")]


def test_a_standby_woken_just_past_its_silence_deadline_asks_first() -> None:
    # Frozen from 1.2 s to 5.1 s: the silence timer (due at 5.0) is only 0.1 s late, but
    # our beat (due at 3.0) is 2.1 s late, so the master's beats may wait in our socket.
    # Taking over at once made both active when the master froze next (the soak).
    s = standby_that_heard_the_master_at(1.0)
    s.tick(1.0)
    actions = s.tick(5.1)
    assert changes(actions) == [] and beats(actions)[-1].flags & Flag.ECHO_REQUEST
    assert s.role is Role.SLAVE_STANDBY


def test_a_standby_stalled_again_inside_its_wait_waits_again() -> None:
    # Woken at 12.0 it waits until 16.0 for a fresh word; frozen again 12.5-17.0, the
    # master's answers may be waiting in its socket: it asks again, not takes over.
    s = standby_that_heard_the_master_at(1.0)
    s.tick(12.0)
    tick_through(s, 12.5)
    assert changes(s.tick(17.0)) == [] and s.role is Role.SLAVE_STANDBY
    assert changes(tick_through(s, 21.0)) == [RoleChanged(
        Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE, "master silent for 20.0 s")]


def test_an_older_heartbeat_overtaken_by_a_newer_one_changes_no_role() -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    old_master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(old_master.hb(Role.MASTER), 0.0)
    new = master_peer(BOOT_M2, listener=s)
    pending, active = new.hb(Role.MASTER_PENDING), new.hb(Role.MASTER)
    s.receive(active, 0.5)
    assert s.peer_role is Role.MASTER
    assert s.receive(pending, 0.51) == []  # reordered: no second handover, no flush
    assert s.peer_role is Role.MASTER and not s.handing_over


def test_a_heartbeat_captured_just_before_the_master_died_and_replayed_at_once_is_ignored(
) -> None:
    s = FailoverMachine(config(Mode.SLAVE), now=0.0)
    master = master_peer(listener=s)
    s.tick(0.0)
    s.receive(master.hb(Role.MASTER), 1.0)
    s.tick(2.0)
    captured = master.hb(Role.MASTER)  # echoes our beat at 2.0; an attacker keeps it
    assert changes(tick_through(s, 5.0))[0].new is Role.SLAVE_ACTIVE  # the master died at 1.0
    # Its echo is only 3.5 s old (within the bound), but from before our takeover: it
    # cannot know we are active, so it cannot make us step down (no split brain).
    actions = s.receive(captured, 5.5)
    assert Rejected("unfresh") in actions and not changes(actions)
    assert s.active and s.split_brains == 0


def test_own_events_count_as_in_flight_so_idle_is_claimed_only_when_all_is_delivered(
) -> None:
    m, s = running_pair()
    m.feed_idle(True)
    assert m.event(K(1), P(1), 0.5)
    m.bypassed(1)  # a ProbeWatch event on its way to the sink, past the gate
    m.delivered([K(1)], 0.55)
    acks = [x for x in sent(m.tick(0.65)) if isinstance(x, Ack)]
    assert acks and not acks[-1].flags & Flag.IDLE  # the own event is not delivered yet
    m.delivered([b"own-evt!"], 0.7)
    acks = [x for x in sent(m.tick(0.8)) if isinstance(x, Ack)]
    assert acks[-1].flags & Flag.IDLE


def test_a_hole_in_the_ack_stream_is_reported_at_once() -> None:
    s, master = standby_with(0.1, 0.2)
    master.ack(K(0))  # serial 1: lost on the way
    actions = s.receive(master.ack(K(1)), 0.5)
    [hb] = beats(actions)  # not at the next beat: now, so the master re-sends serial 1
    assert hb.acks_heard == 0 and hb.role is Role.SLAVE_STANDBY
    assert s.receive(master.ack(K(2)), 0.55) == []  # rate-limited: one per AckInterval
