"""mttrapd's trap statistics and drop list, shared by the SNMP feed and the rules.

PURE: standard library only. The feed counts a trap when it queues it (``queued``)
and the processor when it takes it out (``taken``); the rules read the counts and
change the drop list through ``read_trap_count()``, ``read_drop_count()``,
``get_queue_size()``, ``drop_list_add(host)`` and ``drop_list_remove(host)``
(rules.functions.TrapFunctions). A host on the drop list has its traps discarded by
the feed before they are decoded or queued (counted per host and in
``probepair_snmp_dropped_total``): the flood stops costing anything but a recv.

Hosts are source IP addresses as ``$PeerIPaddress`` shows them (the stock
flood-control rules pass ``$IPaddress``, which is the same for a trap that is not
relayed). Memory is bounded: queued counts exist only while traps are queued, the
drop list holds at most ``MAX_DROP_LIST`` hosts and drop counts exist only for hosts
that were on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from probepair.events import Event

MAX_DROP_LIST: Final = 65536  # hosts; drop_list_add past it returns 0 and adds nothing
MAX_DROP_COUNTS: Final = 4 * MAX_DROP_LIST  # hosts with a drop count kept


class TrapControl:
    """The counters and the drop list; ``on_blockade(host, blocked)`` is called when
    the drop list changes (the probe sends mttrapd's ProbeWatch events from it)."""

    def __init__(self) -> None:
        self.queued: dict[str, int] = {}
        self.queue = 0
        self.drops: dict[str, int] = {}
        self.dropped_total = 0
        self.drop_list: set[str] = set()
        self.events = 0  # traps accepted since start ($EventCount)
        self.on_blockade: Callable[[str, bool], None] | None = None

    # -- the feed's side --

    def queue_one(self, host: str) -> int:
        """Count a trap from ``host`` going into the queue; its ``$EventCount``."""
        self.queued[host] = self.queued.get(host, 0) + 1
        self.queue += 1
        self.events += 1
        return self.events

    def drop_one(self, host: str) -> None:
        """Count a trap from ``host`` (on the drop list) discarded."""
        if host in self.drops or len(self.drops) < MAX_DROP_COUNTS:
            self.drops[host] = self.drops.get(host, 0) + 1
        self.dropped_total += 1

    def taken(self, event: Event) -> dict[str, str]:
        """The processor takes ``event`` out of the queue: its tokens."""
        tokens = event.tokens
        host = tokens.get("PeerIPaddress", "")
        left = self.queued.get(host, 0) - 1
        if left > 0:
            self.queued[host] = left
        else:
            self.queued.pop(host, None)
        self.queue = max(0, self.queue - 1)
        return tokens

    # -- the rules' side (rules.functions.TrapFunctions) --

    def read_trap_count(self, host: str = "") -> int:
        return self.queued.get(host, 0) if host else self.queue

    def read_drop_count(self, host: str = "") -> int:
        return self.drops.get(host, 0) if host else self.dropped_total

    def get_queue_size(self) -> int:
        return self.queue

    def drop_list_add(self, host: str) -> int:
        if not host or host in self.drop_list or len(self.drop_list) >= MAX_DROP_LIST:
            return 0
        self.drop_list.add(host)
        if self.on_blockade is not None:
            self.on_blockade(host, True)
        return 1

    def drop_list_remove(self, host: str) -> int:
        if host not in self.drop_list:
            return 0
        self.drop_list.discard(host)
        if self.on_blockade is not None:
            self.on_blockade(host, False)
        return 1
