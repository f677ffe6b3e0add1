"""Value types of the failover machine: modes, settings and the actions it returns.

PURE: standard library only. Split from ``failover`` to keep modules small; import
them from ``probepair.failover``, which re-exports every name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from probepair.wire import BOOT_ID_SIZE, DIGEST_SIZE, Ack, Heartbeat, Role

__all__ = [
    "Action",
    "ConfigDrift",
    "DropReason",
    "Failback",
    "FailoverConfig",
    "Flush",
    "Mode",
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
    RETENTION = "retention"
    BUFFER_BYTES = "buffer_bytes"


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
    retention: float = 60.0
    config_digest: bytes = bytes(DIGEST_SIZE)
    buffer_bytes: int = 256 * 2**20  # payload bytes held at most (BufferBytes)

    def __post_init__(self) -> None:
        if len(self.boot_id) != BOOT_ID_SIZE or len(self.config_digest) != DIGEST_SIZE:
            raise ValueError("boot_id must be 8 bytes and config_digest 4 bytes")
        if not (self.beat_interval > 0 and self.ack_interval > 0 and self.retention > 0):
            raise ValueError("beat_interval, ack_interval and retention must be positive")
        if self.beat_threshold < 0 or self.heartbeat_timeout < 0 or self.buffer_limit < 1:
            raise ValueError("negative threshold/timeout or buffer_limit below 1")


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
    """Write these (key, payload) pairs to the sink now, in this order."""

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


Action = Send | RoleChanged | Flush | SplitBrain | ConfigDrift
