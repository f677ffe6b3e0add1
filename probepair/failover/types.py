"""Value types of the failover machine: modes, settings and the actions it returns.

PURE: standard library only. Import them from ``probepair.failover``, which re-exports
every name. ``Role`` lives here, not in the codec: the heartbeat codec (``probepair.failover.wire``)
imports it, so this module imports the codec only for types and at validation time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from probepair.failover.role import BOOT_ID_SIZE, DIGEST_SIZE, Role

if TYPE_CHECKING:
    from probepair.failover.wire import Ack, Heartbeat

__all__ = [
    "Action",
    "ConfigDrift",
    "DropReason",
    "Failback",
    "FailoverConfig",
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


class Mode(enum.Enum):
    """The ``Mode`` property: which side a probe starts on."""

    MASTER = "master"
    SLAVE = "slave"
    STANDARD = "standard"


class Failback(enum.Enum):
    """The ``Failback`` property: what happens when the master returns."""

    HANDSHAKE = "handshake"
    IMMEDIATE = "immediate"
    MANUAL = "manual"


class DropReason(enum.Enum):
    """Why buffered events were dropped without being forwarded (metric labels)."""

    BUFFER_FULL = "buffer_full"
    BUFFER_BYTES = "buffer_bytes"
    RETENTION = "retention"


class HandoverReason(enum.Enum):
    """Why an active probe handed the role over (``probepair_handovers_total`` labels)."""

    SINK = "sink"  # our sink failed for SinkFailover while the peer's works
    OPERATOR = "operator"  # probepair release / takeover
    RULES = "rules"  # %Mode in a rules file
    FAILBACK = "failback"  # the configured master returned


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """Failover settings (the props of the same names; durations in seconds)."""

    mode: Mode
    node_id: int
    boot_id: bytes
    beat_interval: float = 2.0
    beat_threshold: float = 1.0
    heartbeat_timeout: float = 1.0  # OMNIbus' fixed 1 s, as a property
    failback: Failback = Failback.HANDSHAKE
    ack_interval: float = 0.1
    buffer_limit: int = 1_000_000  # events
    buffer_bytes: int = 256 * 2**20  # payload bytes held (BufferBytes)
    retention: float = 60.0
    config_digest: bytes = bytes(DIGEST_SIZE)
    # How much later than an event a key the peer delivered must have reached us before
    # the event counts as missed by the peer (GapTimeout; see the package docstring).
    gap_timeout: float = 1.0
    # Our MetricsPort (0: none): heartbeats tell the peer where our /status is.
    status_port: int = 0
    sink_failover: float = 30.0  # SinkFailover; 0 = off
    failback_delay: float = 0.0  # FailbackDelay: a returning master beats this long first

    def __post_init__(self) -> None:
        if len(self.boot_id) != BOOT_ID_SIZE or len(self.config_digest) != DIGEST_SIZE:
            raise ValueError("boot_id must be 8 bytes and config_digest 4 bytes")
        if not (self.beat_interval > 0 and self.ack_interval > 0 and self.retention > 0):
            raise ValueError("beat_interval, ack_interval and retention must be positive")
        if self.beat_threshold < 0 or self.heartbeat_timeout < 0 or self.buffer_limit < 1:
            raise ValueError("negative threshold/timeout or buffer_limit below 1")
        if self.gap_timeout <= 0 or self.sink_failover < 0 or self.buffer_bytes < 1:
            raise ValueError("gap_timeout must be positive, sink_failover not negative")
        if self.failback_delay < 0:
            raise ValueError("failback_delay must not be negative")


@dataclass(frozen=True, slots=True)
class Send:
    """Encode ``msg`` and send it to the peer."""

    msg: Heartbeat | Ack


@dataclass(frozen=True, slots=True)
class RoleChanged:
    """The role changed; ``reason`` is for logs and NotifyCommand."""

    old: Role
    new: Role
    reason: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Write these (key, payload) pairs to the sink now, in this order (a takeover)."""

    items: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GapFill:
    """Write these held events to the sink now: the active peer passed them by."""

    items: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SplitBrain:
    """Both probes were seen active (``active=True``), or that ended (``False``)."""

    active: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    """The peer's config digest differs from ours (pair-wide settings disagree)."""

    local: bytes
    peer: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A valid, authenticated datagram changed nothing: it could not be proven fresh."""

    reason: str


@dataclass(frozen=True, slots=True)
class Handover:
    """This probe stepped down from active and hands the role over, for ``reason``."""

    reason: HandoverReason


Action = Send | RoleChanged | Flush | GapFill | SplitBrain | ConfigDrift | Rejected | Handover
