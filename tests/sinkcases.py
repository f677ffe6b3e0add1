"""What every deduplicating sink (SQLite, PostgreSQL) is held to, written once.

The two sink test files used to spell out the same alerts, deliveries and expected
rows. The cases deliver and assert what each delivery returns; the caller opens and
closes the sink (the cases run inside its ``try``/``aclose``) and compares the rows in
its own table's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probepair.config import props
from probepair.events import Item, key_of
from probepair.pipeline.alerts import serialise

if TYPE_CHECKING:
    from probepair.sinks import Sink

# Identifier, Node, Summary, Severity, Tally, FirstOccurrence, LastOccurrence, EventKey
Row = tuple[object, ...]


def alert(n: int, **fields: object) -> Item:
    """Alert ``n`` of node web1 (Summary ``event n``, Severity 4 unless given)."""
    key = key_of(b"event %d" % n)
    return key, serialise({"Node": "web1", "Summary": f"event {n}", "Severity": 4, **fields}, key)


def make(**values: object) -> props.Props:
    return props.load([("test", values)])


async def deliver_two_identifiers(sink: Sink) -> dict[str, Row]:
    """Two alerts of Identifier web1:disk (the second more severe) around one of
    web1:cpu; the row each Identifier must hold afterwards."""
    a1 = alert(1, Identifier="web1:disk", FirstOccurrence=100.0, LastOccurrence=100.0)
    a2 = alert(2, Identifier="web1:disk", FirstOccurrence=200.0, LastOccurrence=200.0,
               Severity=5)
    b = alert(3, Identifier="web1:cpu", LastOccurrence=150.0, FirstOccurrence=150.0)
    assert await sink.deliver([a1, b]) == [a1[0], b[0]]
    assert await sink.deliver([a2]) == [a2[0]]
    return {
        "web1:disk": ("web1:disk", "web1", "event 2", 5, 2, 100.0, 200.0, a2[0].hex()),
        "web1:cpu": ("web1:cpu", "web1", "event 3", 4, 1, 150.0, 150.0, b[0].hex()),
    }


REPEATED = (
    alert(1, Identifier="x", FirstOccurrence=100.0, LastOccurrence=100.0),
    alert(2, Identifier="x", FirstOccurrence=200.0, LastOccurrence=200.0),
)
# The one row REPEATED leaves, however often it is delivered.
REPEATED_ROW: Row = ("x", "web1", "event 2", 4, 2, 100.0, 200.0, REPEATED[1][0].hex())


async def deliver_repeated_keys(sink: Sink) -> None:
    """REPEATED, then again as a failover or a spool replay resends it (once in the same
    batch as well): every key is reported delivered, the row counts each alert once."""
    a1, a2 = REPEATED
    await sink.deliver([a1, a2])
    assert await sink.deliver([a1, a2, a2]) == [a1[0], a2[0], a2[0]]
