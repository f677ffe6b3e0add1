"""Input feeds: each turns a source into batches of Events on a memory channel.

The factory lives here, not in ``base``: the implementations import ``base``, and a
``base`` that imported them back made the feeds one import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from probepair.feeds.base import Feed

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.metrics import Metrics

__all__ = ["Feed", "make_feed"]


def make_feed(
    props: Props, wall_clock: Callable[[], float], metrics: Metrics | None = None
) -> Feed:
    """The feed ``props.FeedType`` names, configured from ``props``; the tcp feed counts
    its connections in ``metrics`` (the snmp feed its messages too)."""
    from probepair.feeds.file import FileFeed
    from probepair.feeds.stdin import StdinFeed
    from probepair.feeds.tcp import TcpFeed
    from probepair.feeds.udp import UdpFeed

    if props.FeedType == "tcp":
        return TcpFeed(props, wall_clock, metrics)
    if props.FeedType == "snmp":
        from probepair.feeds.snmp.feed import SnmpFeed

        return SnmpFeed(props, wall_clock, metrics)
    kinds: dict[str, Callable[[Props, Callable[[], float]], Feed]] = {
        "udp": UdpFeed,
        "file": FileFeed,
        "stdin": StdinFeed,
    }
    return kinds[props.FeedType](props, wall_clock)
