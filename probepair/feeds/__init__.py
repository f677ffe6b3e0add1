"""Input feeds: each turns a source into batches of Events on a memory channel."""

from __future__ import annotations

from probepair.feeds.base import Feed, make_feed

__all__ = ["Feed", "make_feed"]
