"""The state of one probe's side of the pair, and its read-only view (PURE).

See the package docstring for the rules. FailoverMachine (``machine``) is this state
plus its inputs; the behaviour lives in components over it, by concern: ``sending``
(datagrams), ``roles`` (timers, role changes, handover, gap fill) and ``peerinput``
(what the peer's datagrams change). Only the machine's inputs call into them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from probepair.failover.acks import AckLog, AckStream
from probepair.failover.buffer import StandbyBuffer
from probepair.failover.freshness import Freshness
from probepair.failover.precedence import MASTER_ROLES
from probepair.failover.types import (
    DropReason,
    Failback,
    FailoverConfig,
    Mode,
    Role,
)
from probepair.failover.window import FailbackGate
from probepair.failover.wire import Flag, Heartbeat

INF: Final = math.inf
ACTIVE_ROLES: Final = frozenset({Role.MASTER, Role.SLAVE_ACTIVE, Role.STANDARD})
_HANDOVER_FLAGS: Final = Flag.HANDING_OVER | Flag.HANDED_OVER
_ECHO_REFRESH: Final = 0.75  # of the bound: past this echo age we beat early, see receive()
# seconds: a timer this late means the process was stalled (scheduling lag is ms)
_LATE: Final = 0.25


@dataclass(slots=True)
class Stats:
    """Counters for metrics and status: read by the runtime, never by a decision."""

    failovers: int = 0  # times this probe became active after start
    split_brains: int = 0
    gap_fills: int = 0  # events delivered because the active peer passed them by
    acks_resent: int = 0
    handovers_suppressed: int = 0  # sink handovers not made: the peer's sink fails too
    replays_skipped: int = 0  # spooled/held alerts not delivered: the peer's sink had them


@dataclass(frozen=True, slots=True)
class Idle:
    """Not handing over."""


@dataclass(frozen=True, slots=True)
class Draining:
    """Stepped down for the peer's ``boot``; waiting (until ``deadline``) for the sink to
    deliver what we forwarded."""

    boot: bytes | None
    deadline: float


@dataclass(frozen=True, slots=True)
class HandedOver:
    """Drained and acked; beating HANDED_OVER until the peer's ``boot`` is active."""

    boot: bytes | None


Handing = Idle | Draining | HandedOver
IDLE: Final = Idle()


@dataclass(frozen=True, slots=True)
class Awaiting:
    """A pending master heard HANDED_OVER: it takes over once it holds every ack serial
    up to ``serial``, or at ``giveup_at`` (inf: that timer already ran)."""

    serial: int
    giveup_at: float


class MachineState:
    """Everything one side knows: settings, timers, peer, buffers (see FailoverMachine)."""

    def __init__(self, config: FailoverConfig, *, now: float) -> None:
        self.config = config
        self._epoch = 0
        self._seq = 0
        self._role_seq = 0  # seq of the first datagram sent with the current role
        self._silence_since = now  # start, or the last heartbeat that re-armed the timer
        self._beat_interval = config.beat_interval
        self._standby = StandbyBuffer(config.buffer_limit, config.retention, config.buffer_bytes)
        self._fresh = Freshness(config.boot_id, keep=config.retention)
        self._acks = AckLog(config.retention, config.buffer_limit)
        self._stream: AckStream | None = None  # acks from the peer's current boot
        self._base_for: tuple[bytes, int] | None = None  # our ack_base for the peer's boot
        self._gap_marks: list[tuple[int, float]] = []  # (peer ack serial, horizon)
        self._pending_acks: list[bytes] = []
        self._handover: Handing = IDLE
        # A standby about to flush for a pending master of the boot whose acks it lacks
        # waits for their re-sends until then (inf: not waiting).
        self._flush_wait_until = INF
        # Forwarded (events, gap fills, flushes, bypassed) minus delivered since we last
        # became active; negative while deliveries of an earlier period outnumber them.
        self._in_flight = 0
        self._feed_idle = False
        self._sink_failing_since: float | None = None
        self._sink_healthy_since = -INF  # healthy since start: no failure to outlast
        self._sink_verified_at: float | None = None  # a delivery or check passed (None: never)
        # Not active: the peer acked an event we buffered in this standby period, so it has
        # passed every event our spool holds (they are older): see spool_replay.
        self._passed_spool = False
        # Since when the peer's heartbeats (this boot) report its sink working (None: failing).
        self._peer_sink_ok_since: float | None = None
        self._spool_bytes = 0
        # Who should be master, by configuration: Mode from the props, or the newest
        # operator/rules switch of either probe (until either restarts). Automatic
        # switches (silence, stall, sink, verdicts) leave it alone, so the designated
        # master takes the role back once their cause is gone (issue 21: roles converge).
        self._designated = config.mode
        self._request_epoch: int | None = None  # the epoch our own switch made, if current
        self._reclaim_since: float | None = None  # since when a reclaim would be allowed
        self._suppressed = False  # this sink outage's handover was suppressed (counted once)
        self.failback = FailbackGate(config.failback_delay)  # the window: window_changed()
        # The newest fresh heartbeat from the peer (its boot, seq, role, sink health).
        self._peer: Heartbeat | None = None
        self._peer_last_heard: float | None = None
        self._awaiting: Awaiting | None = None  # from the peer's HANDED_OVER beat
        self._peer_digest = config.config_digest
        self._split_brain = False
        self._next_beat = INF
        self._last_beat = -INF  # when we last sent a heartbeat, regular or extra
        # Extra beats are rate-limited, answers apart from our own requests: a burst of
        # stale datagrams after a stall must not silence the answer a live peer awaits.
        self._next_extra = {False: -INF, True: -INF}  # request? -> next allowed
        self._peer_deadline = INF
        # A late silence timer (we were stalled) decides at this time, asking for an echo
        # every ack interval until then (inf: not deferred since the last fresh beat).
        self._silence_decide_at = INF
        self._ack_due = INF
        # While a hole in the peer's acks is open: when we say again what we hold (an
        # extra beat every ack interval, so a re-send lost too is asked for again).
        self._hole_report_at = INF
        self.stats = Stats()
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

    @property
    def role(self) -> Role:
        """The current role."""
        return self._role

    @property
    def active(self) -> bool:
        """True while this probe forwards events to its sink."""
        return self._role in ACTIVE_ROLES

    @property
    def _active(self) -> bool:
        return self._role in ACTIVE_ROLES

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
        """Past this time an active probe counts as stalled (``math.inf``: not active).

        ``tick`` then makes a master ``master-pending`` and an active slave
        ``slave-standby``. The runtime checks it before offering events, so a probe that
        wakes from a stall ticks before it forwards anything.
        """
        # Derived: an active probe silent for the takeover bound since its last
        # heartbeat (of any kind) was stalled (SIGSTOP, a frozen VM): the peer's
        # silence timer, restarted by each heartbeat it hears, has run out, so it has
        # likely taken over. Counted from the next *regular* beat instead, a stall of
        # between one bound and one bound plus a beat interval went unseen, and the
        # master forwarded what it queued while frozen beside the slave that took over
        # (the pair property found it). Armed from the first beat sent in the role
        # (every move into an active role beats at once; a standard probe never beats).
        # An active slave is no different: the master it replaced may have taken the
        # role back meanwhile.
        if not self._active or self._seq == 0:
            return INF
        return self._last_beat + self._bound()

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
    def acks_pending(self) -> bool:
        """True while deliveries wait to be acked to the peer (sent within ack_interval)."""
        return bool(self._pending_acks)

    @property
    def peer_last_heard(self) -> float | None:
        """When the last fresh datagram from the peer arrived (None: never)."""
        return self._peer_last_heard

    @property
    def peer_role(self) -> Role | None:
        """The role the peer's last fresh heartbeat carried."""
        return None if self._peer is None else self._peer.role

    @property
    def peer_sink_failing(self) -> float:
        """Seconds the peer's sink had been failing at its last heartbeat (0: healthy)."""
        return 0.0 if self._peer is None else self._peer.sink_failing

    @property
    def peer_status_port(self) -> int:
        """The MetricsPort the peer's last fresh heartbeat announced (0: none)."""
        return 0 if self._peer is None else self._peer.status_port

    @property
    def peer_sink_verified_age(self) -> float:
        """Seconds before its last heartbeat that the peer's sink was last verified
        working (inf: never, or the peer not heard)."""
        return INF if self._peer is None else self._peer.sink_verified_age

    @property
    def spool_bytes(self) -> int:
        """Our spool's bytes as the runtime last reported them."""
        return self._spool_bytes

    @property
    def peer_spool_bytes(self) -> int:
        """The peer's spool bytes at its last heartbeat."""
        return 0 if self._peer is None else self._peer.spool_bytes

    @property
    def split_brain(self) -> bool:
        """True from a detected split brain until the peer is heard inactive or silent."""
        return self._split_brain

    @property
    def config_drift(self) -> bool:
        """True when the peer's last config digest differs from ours."""
        return self._peer_digest != self.config.config_digest

    @property
    def peer_config_digest(self) -> bytes:
        """The config digest of the peer's newest accepted heartbeat (ours until heard)."""
        return self._peer_digest

    @property
    def handing_over(self) -> bool:
        """True while this probe hands over to a pending master."""
        return not isinstance(self._handover, Idle)

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
        if self._stream is not None and self._stream.hole_since < INF:
            hole = self._stream.hole_since + self._bound()
        return min(
            self._next_beat,
            self._peer_deadline,
            self._ack_due,
            self._handover.deadline if isinstance(self._handover, Draining) else INF,
            INF if self._awaiting is None else self._awaiting.giveup_at,
            hole,
            self._hole_report_at,
        )

    @property
    def failovers(self) -> int:
        """Times this probe became active after start."""
        return self.stats.failovers

    @property
    def split_brains(self) -> int:
        """Split brains detected."""
        return self.stats.split_brains

    @property
    def gap_fills(self) -> int:
        """Events delivered because the active peer passed them by."""
        return self.stats.gap_fills

    @property
    def handovers_suppressed(self) -> int:
        """Sink handovers not made because the peer's verified sink fails too."""
        return self.stats.handovers_suppressed

    @property
    def replays_skipped(self) -> int:
        """Spooled or held alerts not delivered because the peer's sink acked them."""
        return self.stats.replays_skipped

    @property
    def acks_resent(self) -> int:
        """Ack datagrams sent again because the peer lacked them."""
        return self.stats.acks_resent

    @property
    def _peer_boot(self) -> bytes | None:
        return None if self._peer is None else self._peer.boot_id

    def _bound(self) -> float:
        c = self.config
        return self._beat_interval + c.beat_threshold + c.heartbeat_timeout

    def _pending(self) -> int:
        return max(0, self._in_flight) if self._active else 0

    def _idle(self) -> bool:
        return self._active and self._feed_idle and self._in_flight <= 0
