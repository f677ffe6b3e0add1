"""The sink protocol and the registry of built-in sinks.

A sink takes batches of ``(event key, alert JSON bytes)`` and returns only once the
batch is delivered, returning the keys it delivered: those, and only those, are acked
to the peer probe (DESIGN.md "Sinks and store-and-forward"). A failure raises SinkError;
the runner then spools and retries.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Collection

    from probepair.events import Item

logger = logging.getLogger(__name__)


# A rules target's table ("custom.vmstatus"): the rules compiler sets an alert's Table
# only from a registertarget() name (no assignment to @Table compiles), so event text
# never names a table. The SQL sinks still take only names of this shape, and at most
# MAX_TARGET_TABLES of them per process: a bound that holds whatever the rules do.
TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
MAX_TARGET_TABLES: Final = 64
RESERVED_TABLES: Final = frozenset({"alerts_status", "delivered_keys"})


def target_table(table: object) -> str | None:
    """The SQL table name of an alert's ``Table`` field; None means alerts.status (no
    field, not a table name, or a name the sink keeps for itself)."""
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        return None
    name = table.replace(".", "_")
    return None if name.lower() in RESERVED_TABLES else name


def admit_target(sink: str, table: str, known: Collection[str], refused: set[str]) -> bool:
    """Whether a SQL sink writes ``table``: one of the ``known`` target tables, or room
    for one more. Past MAX_TARGET_TABLES its alerts stay in alerts_status, and each
    refused name is logged once (remembered in ``refused``)."""
    if table in known or len(known) < MAX_TARGET_TABLES:
        return True
    if table not in refused:
        refused.add(table)
        logger.warning(
            "%s: target table %r refused: already %d target tables (the bound); its "
            "alerts go to alerts_status", sink, table, MAX_TARGET_TABLES,
        )  # fmt: skip
    return False


class Sink(Protocol):
    """Where alerts go. Opened once; ``deliver`` may be retried after a SinkError."""

    name: str

    async def open(self) -> None:
        """Connect or open files; raise SinkError if that fails (the runner retries)."""

    async def deliver(self, items: list[Item]) -> list[bytes]:
        """Deliver ``items`` in order; return their keys; raise SinkError on failure."""

    async def aclose(self) -> None:
        """Flush and release everything; bounded in time by the caller."""


class CheckedSink(Sink, Protocol):
    """A sink that can tell, without delivering anything, whether a delivery now would
    work: what a standby runs on a cadence, so that the health its heartbeats report
    is verified, not assumed (issue 21). Every sink type but stdout has one."""

    async def check(self) -> None:
        """Return if the sink can take alerts now; raise SinkError saying why not.
        Bounded in time by the caller; it writes no alert."""


class LivingSink(Sink, Protocol):
    """A sink that owns something with a lifetime of its own (the nats sink's asyncio
    thread): ``lifetime()`` starts it, and its exit stops it, bounded in time, however
    the block ends. ``open``/``deliver``/``check``/``aclose`` are called inside it."""

    def lifetime(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Enter before ``open``; leave after ``aclose`` (or instead of it, on an error)."""


def lifetime(sink: Sink) -> contextlib.AbstractAsyncContextManager[None]:
    """``sink.lifetime()``, or nothing to enter for a sink without one (most sinks)."""
    own = getattr(sink, "lifetime", None)
    return own() if own is not None else contextlib.nullcontext()
