"""The sink protocol and the registry of built-in sinks.

A sink takes batches of ``(event key, alert JSON bytes)`` and returns only once the
batch is delivered, returning the keys it delivered: those, and only those, are acked
to the peer probe (DESIGN.md "Sinks and store-and-forward"). A failure raises SinkError;
the runner then spools and retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from probepair.props import Props

Item = tuple[bytes, bytes]  # (8-byte event key, serialised alert without newline)


class Sink(Protocol):
    """Where alerts go. Opened once; ``deliver`` may be retried after a SinkError."""

    name: str

    async def open(self) -> None:
        """Connect or open files; raise SinkError if that fails (the runner retries)."""

    async def deliver(self, items: list[Item]) -> list[bytes]:
        """Deliver ``items`` in order; return their keys; raise SinkError on failure."""

    async def aclose(self) -> None:
        """Flush and release everything; bounded in time by the caller."""


def make_sink(props: Props) -> Sink:
    """The sink ``props.SinkType`` names, configured from ``props``."""
    from probepair.sinks.alertmanager import AlertmanagerSink
    from probepair.sinks.file import FileSink, StdoutSink
    from probepair.sinks.http import HttpSink
    from probepair.sinks.jetstream import NatsSink
    from probepair.sinks.postgres import PostgresSink
    from probepair.sinks.sqlite import SqliteSink
    from probepair.sinks.tcp import TcpSink

    kinds: dict[str, Callable[[Props], Sink]] = {
        "file": FileSink,
        "stdout": StdoutSink,
        "tcp": TcpSink,
        "http": HttpSink,
        "sqlite": SqliteSink,
        "postgres": PostgresSink,
        "alertmanager": AlertmanagerSink,
        "nats": NatsSink,
    }
    return kinds[props.SinkType](props)
