"""Event sinks: deliver serialised alerts and acknowledge what they delivered."""

from __future__ import annotations

from probepair.sinks.base import Item, Sink, make_sink

__all__ = ["Item", "Sink", "make_sink"]
