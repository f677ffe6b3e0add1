"""Event sinks: deliver serialised alerts and acknowledge what they delivered.

The factory lives here, not in ``base``: the implementations import ``base``, and a
``base`` that imported them back made the sinks one import circle. The implementations
are imported when a sink is made (psycopg, httpx and nats-py cost start-up time for
every command otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from probepair.events import Item
from probepair.sinks.base import Sink, lifetime

if TYPE_CHECKING:
    from probepair.config.props import Props

__all__ = ["Item", "Sink", "lifetime", "make_sink"]


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
