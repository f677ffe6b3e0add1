"""The sink protocol and the registry of built-in sinks.

A sink takes batches of ``(event key, alert JSON bytes)`` and returns only once the
batch is delivered, returning the keys it delivered: those, and only those, are acked
to the peer probe (DESIGN.md "Sinks and store-and-forward"). A failure raises SinkError;
the runner then spools and retries.
"""

from __future__ import annotations

import contextlib
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
