"""The failover state machine of a probe pair (sans-IO: no sockets, no clock reads).

Theory of operation
===================

The rule the pair keeps: **an event is lost only if both probes missed it**, and no
probe delivers an event twice.

Roles (``Role``): ``master`` forwards events to the sink; ``master-pending`` is a
(re)started master that beats and buffers until the active peer hands over;
``slave-standby`` buffers; ``slave-active`` took over from a silent master; ``standard``
is a lone probe (always active, no heartbeats, ``next_deadline()`` is inf). A role
implies an *effective mode*: master roles are mode master, slave roles mode slave.

Modules, each one concern: ``machine`` (the inputs: events, deliveries, datagrams,
ticks, mode requests, window and digest changes), ``transitions`` (the role table: the
one place a role decision is written), ``peerinput`` (what a fresh datagram changes),
``roles`` (timers, the role-change effect point, the handover, sink health, gap fill),
``sending`` (heartbeats and acks), ``state`` (what one side knows), ``acks`` (the
reliable ack stream both ways), ``freshness`` (which datagrams are provably recent),
``precedence`` (the split-brain verdict), ``window`` (the failback gate: window and
delay), ``buffer`` (the standby buffer), ``types`` (settings and actions).

Timers are deadlines the runtime sleeps until (``next_deadline()``); every input first
runs the timers that are due at ``now`` and re-arms or clears each one it runs, so after
``tick``/``receive``/``request_mode`` at ``now``, ``next_deadline() > now``:

- beat: both sides send a heartbeat every beat interval, and at once on every role
  change. At each beat the standby buffer drops what is older than ``retention``, and
  the sink-health rule runs.
- peer silence: ``beat_interval + beat_threshold + heartbeat_timeout`` (the *bound*)
  after the last fresh heartbeat from a peer that is (or is about to be) forwarding, or
  after start. A standby slave then takes over; a pending master becomes active. A slave
  uses the master's beat interval (adopted from its heartbeats) for this bound.
- ack: delivered keys are batched into ack datagrams every ``ack_interval``.
- drain / give-up: bound the two waits of the failback handshake (below).
- hole: an ack serial missing for a whole bound is skipped (below).

Freshness. Every datagram echoes the newest sequence number its sender received from
us. A datagram is *fresh* when it echoes one we sent within the bound and since our
last role change (one written before the peer could know our role may not change it);
only fresh datagrams change a role, a deadline or the buffer. Anything else (a replay of a
captured datagram, delivered or not, of this boot or an earlier one) is reported as
``Rejected("unfresh")`` and answered with a heartbeat flagged ``ECHO_REQUEST``; the peer
answers fresh requests at once, so a live peer is proven within a round trip (at start,
and after a stall). A standby side sets ``ECHO_REQUEST`` on every beat, so the active
side's liveness is proven each beat period whatever the phase of the two beat timers.
Answers and our own requests are each rate-limited to one per ``ack_interval``. Among
fresh heartbeats only the newest (by sequence number) counts for roles and the silence
timer: one overtaken by a newer one is history. When the echo we get is older than 3/4
of the bound (our beats were lost) we beat early. The wire's replay window (4096
sequence numbers) only drops exact copies; a burst of re-sent acks reordered by the
network stays inside it.

Acks (DESIGN.md "Beyond OMNIbus"). A non-active probe holds each event as (key,
serialised payload, arrival time) in arrival order, bounded by count, bytes and
``retention``. The active probe acks the keys its sink delivered; the peer removes
them. A key acked before this probe saw the event is remembered for ``retention`` and
the event is dropped on arrival. The ack stream is reliable: each ack datagram has a
serial; the receiver's heartbeats say up to which serial it has them all (from the
``ack_base`` the sender announced for its boot), and the sender re-sends every serial
the receiver should have had by the datagram it echoes (``acks.AckLog``). A serial
still missing after a whole bound is skipped (the sender no longer has it). A peer boot
heard for the first time gets again the acks sent within the age of the oldest event
its heartbeat says it holds (``held_age``) and a bound: a new boot's are few, and one
that only went unheard (it froze before we heard it) gets all those it missed.

Gap fill. An event the standby holds un-acked that the active peer's deliveries have
passed by was missed by the peer (its socket overflowed, it stalled, its rules failed).
"Passed by" is a fact, never a timer alone: the active side delivers in feed order, so
once it acked a key K that reached *us* more than ``gap_timeout`` after an event E,
the peer received E before K if it received E at all, and E's ack would have come in the
same or an earlier serial. Likewise an ack or heartbeat flagged ``IDLE`` (sent when the
peer's feed source was found empty and its sink had delivered everything it forwarded)
passes by every event that reached us more than ``gap_timeout`` before it arrived; a
peer just woken from a stall has a full socket, so it cannot claim IDLE. Each such fact
becomes a horizon that applies once every ack serial up to the one that carried it has
arrived (so a lost ack delays a fill instead of causing a duplicate); the standby then
delivers what it holds from before the horizon (``GapFill``) and acks it back like any
delivery. ``gap_timeout`` must exceed the difference between the two feeds' arrival
times (milliseconds when one sender copies to both); the default 1 s also absorbs a
scheduling hiccup. Consequences: a busy master that is seconds behind triggers nothing
(its acks have not passed the events); an event only the standby received (feeds that
are not identical) is delivered by the standby: a feature; a lost ack that is never
re-sent causes a duplicate at a plain sink and none at a key-aware one; the standby
removes what it fills, so it cannot deliver an event twice.

Failback handshake (no gap, no overlap). A returning master starts ``master-pending``:
it beats and buffers. The active slave (policy ``handshake``; ``immediate`` behaves the
same for a *pending* master) steps down to standby at the first fresh pending heartbeat,
which stops new forwarding, and drains: it waits until the sink has delivered everything
it forwarded (bounded by ``ack_interval + heartbeat_timeout``), sends every pending ack,
and only then beats ``HANDED_OVER`` with ``acks_sent`` = serial of its last ack. The
pending master becomes active once it holds every ack serial up to that one (asking for
re-sends of what it lacks), or one beat interval + threshold after the first
handed-over beat, and flushes what was not acked. The handover never assumes the
master's feed is complete: what the master missed stays in the slave's buffer until the
master's acks pass it by, and the slave fills it. A standby slave that hears a pending
master first flushes its own buffer, then hands over the same way. Under ``manual`` an
active slave keeps forwarding until ``request_mode``. A master configured ``immediate``
starts active, like OMNIbus.

Failback window and delay (``window.FailbackGate``). An active slave hands back to a
pending master only while the failback window is open and the master's boot has
beaten for ``failback_delay`` seconds, each fresh heartbeat within the bound of the one
before (a restart or a silence starts the count again, so a flapping master never gets
the role). Otherwise it stays active and the master stays pending: the check repeats at
each of its beats, so no timer is needed. The window is an input: the runtime evaluates
the ``FailbackWindow`` cron expression against the wall clock (``probepair.config.cron``)
and calls ``window_changed`` when the window opens or closes, since cron needs a
calendar and a time zone and the machine keeps to monotonic ``now``. The same input
gates a configured master's sink-health takeback below. An operator's ``request_mode``
ignores both (``probepair takeover`` works outside the window).

Health-aware roles. Heartbeats carry the sender's sink health (failing for how long,
spool bytes). An active probe whose sink has failed for ``sink_failover`` seconds while
a fresh, standby peer reports a working sink steps down through the handshake (epoch +1:
the peer becomes a pending master and takes over).

Roles converge (the invariant). Who should be master is the *designation*: ``Mode`` in
the props, or the newest operator or rules switch of either probe (``request_mode``; its
heartbeats carry ``REQUESTED`` while the epoch it made is current), until either probe
restarts. Automatic switches (silence takeover, stall, sink handover, split-brain
verdict) move roles and epochs but never the designation. So after any fault schedule
without a switch, once healed, the designated master is active within ``FailbackDelay``
+ ``sink_failover`` + a few beats: a designated master in ``slave-standby`` whose sink
works (for ``sink_failover`` after a failure) while the peer forwards reclaims the role
(``RECLAIM``, epoch +1, as a pending master through the handshake), and one in
``slave-active`` with no active peer relabels itself master, both only while the
failback window is open and never under ``Failback: manual``. A first heartbeat of a new
boot does not pass a designation on (a switch made before a restart is over), and a
probe that sees its peer restart goes back to its props.

Stalls: an active master whose beat timer ran more than the bound late (SIGSTOP, a
frozen VM) must assume its peer took over meanwhile. Its next tick makes it
``master-pending`` and it goes through the handshake, so the backlog its socket queued
during the stall is buffered and reconciled by acks instead of forwarded twice. An
active slave stalled as long steps down to ``slave-standby`` for the same reason (the
master may have taken the role back meanwhile) and takes over again only after a fresh
silence. The runtime checks ``stall_at`` before offering events, so this tick comes
first. A standby (or pending master) whose silence timer fires more than 0.25 s late was
stalled itself: the peer's heartbeats may be waiting in its socket, so it asks for an
echo and decides one ``heartbeat_timeout`` later (once per silence), instead of taking
over from a live master. Datagrams queued during any stall echo what we sent before it,
so they change nothing; the ack stream's re-sends bring their content back, fresh (not
trusting them keeps a delayed ack from dropping a later event whose key recurs after
KeyWindow). A standby about to flush for a master back from a stall first waits, at most
one bound, for the acks that master says it sent (``acks_sent``), so the flush repeats
none of its deliveries.

Epochs and split brain: ``request_mode`` takes effect at once and increments the epoch;
heartbeats carry it; a probe hearing a higher epoch adopts it and takes the mode opposite
to the sender's (an active probe that hears a *pending* master at a higher epoch hands
over). When both sides are active, the one with the higher precedence stays active
(``precedence``), so both reach the same verdict without negotiating. Every overlap is
reported as split brain (``SplitBrain``, counted), short ones of an ``immediate``
failback included. During a partition both forward (at-least-once); a silence takeover
never increments the epoch, so the configured master wins when the link returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Role and the other enums are the codec's vocabulary too: failover.wire imports them from
# failover.types, and the machine imports the codec. Importing any submodule runs this face
# first, so the face imports the stdlib-only ``types`` at once and the rest on first use
# (PEP 562): ``import probepair.failover.wire`` may come first without an import cycle.
from probepair.failover.types import DropReason, Failback, HandoverReason, Mode, Role

if TYPE_CHECKING:
    from probepair.failover.machine import ACTIVE_ROLES, FailoverMachine
    from probepair.failover.precedence import MASTER_ROLES
    from probepair.failover.types import (
        Action,
        ConfigDrift,
        FailoverConfig,
        Flush,
        GapFill,
        Handover,
        Rejected,
        RoleChanged,
        Send,
        SplitBrain,
    )

_LAZY = {
    "ACTIVE_ROLES": "probepair.failover.machine",
    "FailoverMachine": "probepair.failover.machine",
    "MASTER_ROLES": "probepair.failover.precedence",
    **dict.fromkeys(
        (
            "Action",
            "ConfigDrift",
            "FailoverConfig",
            "Flush",
            "GapFill",
            "Handover",
            "Rejected",
            "RoleChanged",
            "Send",
            "SplitBrain",
        ),
        "probepair.failover.types",
    ),
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        import importlib

        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

__all__ = [
    "ACTIVE_ROLES",
    "MASTER_ROLES",
    "Action",
    "ConfigDrift",
    "DropReason",
    "Failback",
    "FailoverConfig",
    "FailoverMachine",
    "Flush",
    "GapFill",
    "Handover",
    "HandoverReason",
    "Mode",
    "Rejected",
    "Role",
    "RoleChanged",
    "Send",
    "SplitBrain",
]
