"""Input feeds: each turns a source into batches of Events on a memory channel.

The factory lives here, not in ``base``: the implementations import ``base``, and a
``base`` that imported them back made the feeds one import circle.

Several feeds (``Feeds``) share one ``KeyMaker``: the key is the payload's digest and
its occurrence index among identical payloads in ``KeyWindow``, counted over every feed
of the probe. So the same message gets the same key whichever listener it came in on,
and two copies of it that reach one probe on two listeners are numbered 0 and 1, as
the peer numbers the two copies it gets (README "Several feeds").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from probepair.events import KeyMaker
from probepair.feeds.base import Feed

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.metrics import Metrics

__all__ = ["Feed", "make_feed", "make_feeds"]


def make_feed(
    props: Props,
    wall_clock: Callable[[], float],
    metrics: Metrics | None = None,
    *,
    keys: KeyMaker | None = None,
    index: int = 0,
) -> Feed:
    """The feed ``props.FeedType`` names, configured from ``props``; the tcp feed counts
    its connections in ``metrics`` (the snmp feed its messages too). ``keys``: the key
    maker it shares with the probe's other feeds; ``index``: its place in ``Feeds``."""
    from probepair.feeds.file import FileFeed
    from probepair.feeds.stdin import StdinFeed
    from probepair.feeds.tcp import TcpFeed
    from probepair.feeds.udp import UdpFeed

    if props.FeedType == "tcp":
        return TcpFeed(props, wall_clock, metrics, keys=keys, index=index)
    if props.FeedType == "snmp":
        from probepair.feeds.snmp.feed import SnmpFeed

        return SnmpFeed(props, wall_clock, metrics, keys=keys, index=index)
    kinds: dict[str, Callable[..., Feed]] = {
        "udp": UdpFeed,
        "file": FileFeed,
        "stdin": StdinFeed,
    }
    return kinds[props.FeedType](props, wall_clock, keys=keys, index=index)


def make_feeds(
    props: Props, wall_clock: Callable[[], float], metrics: Metrics | None = None
) -> list[Feed]:
    """Every feed of ``props`` (``Feeds``, else the one-feed shorthand), in order, with
    one key maker between them (see the module docstring)."""
    from probepair.feeds.tcp import TcpFeed

    keys = KeyMaker(props.KeyWindow)
    feeds = [
        make_feed(feed, wall_clock, metrics, keys=keys, index=i)
        for i, feed in enumerate(props.feeds)
    ]
    tcp = [feed for feed in feeds if isinstance(feed, TcpFeed)]
    if len(tcp) > 1:
        # FeedMaxConnections is per listener: the descriptors and the limit the
        # metric shows are for all of them.
        total = sum(feed.clients_reserved for feed in tcp)
        for feed in tcp:
            feed.clients_reserved = total
        if metrics is not None:
            metrics.feed_connections_limit.set(total)
    return feeds
