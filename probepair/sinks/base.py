"""The sink protocol and the registry of built-in sinks.

A sink takes batches of ``(event key, alert JSON bytes)`` and returns only once the
batch is delivered, returning the keys it delivered: those, and only those, are acked
to the peer probe (DESIGN.md "Sinks and store-and-forward"). A failure raises SinkError;
the runner then spools and retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from probepair.events import Item




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
