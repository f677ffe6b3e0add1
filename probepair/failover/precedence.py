"""Who stays active when both probes are (PURE): the split-brain verdict.

Both sides compute the same verdict from the same two tuples, without negotiating:
higher epoch (an explicit switch is newest), then master by effective mode, then master
by configuration, then higher node id, then higher boot id.
"""

from __future__ import annotations

from typing import Final

from probepair.failover.types import Role
from probepair.failover.wire import Flag, Heartbeat

MASTER_ROLES: Final = frozenset({Role.MASTER, Role.MASTER_PENDING})

Precedence = tuple[int, bool, bool, int, bytes]

_LABELS: Final = (
    "higher epoch",
    "master by mode",
    "configured master",
    "higher node id",
    "higher boot id",
)


def of_heartbeat(hb: Heartbeat) -> Precedence:
    """The sender's precedence as its heartbeat states it."""
    return (
        hb.epoch,
        hb.role in MASTER_ROLES,
        bool(hb.flags & Flag.CONFIGURED_MASTER),
        hb.sender,
        hb.boot_id,
    )


def verdict(ours: Precedence, theirs: Precedence) -> tuple[bool, str]:
    """Whether ``ours`` wins against ``theirs``, and why (for logs)."""
    for mine, other, label in zip(ours, theirs, _LABELS, strict=True):
        if mine != other:
            return mine > other, label  # type: ignore[operator]
    return True, "same precedence"  # only our own datagram could get here
