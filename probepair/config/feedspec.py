"""Feeds: one feed's settings (``FeedSpec``), read from ``Feeds`` and checked (PURE).

``props`` owns the property table; a feed definition holds the one-feed properties
(``FEED_KEYS``), converted by the table's own checks and defaulted from it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from probepair.errors import ConfigError

SNMP_PORT: Final = 162  # FeedPort of FeedType snmp unless a source sets it (RFC 3413 §4)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One entry of ``Feeds``: a feed's own settings, by their one-feed property names.

    A key a definition leaves out has the property's built-in default (not the
    top-level value: with ``Feeds`` the top-level feed properties are not set at all).
    """

    FeedType: str
    FeedAddress: str
    FeedPort: int
    FeedFormat: str
    FeedFile: str
    FeedTLSCert: str
    FeedTLSKey: str
    FeedTLSCA: str


# The properties a feed definition holds (FeedSpec's fields): with Feeds set, none of
# them may be set at the top level as well (the one-feed shorthand is one or the other).
FEED_KEYS: Final = tuple(f.name for f in fields(FeedSpec))


def convert_feeds(
    raw: object,
    source: str,
    convert: Callable[[str, object, str], object],
    defaults: Mapping[str, object],
) -> tuple[FeedSpec, ...]:
    """``Feeds`` from a props file (a YAML list of mappings) or the command line (the
    same as JSON or as ``--dumpprops`` prints it); errors name ``Feeds[i].Key``.

    ``convert`` checks one value as its one-feed property; ``defaults`` are their
    built-in defaults (both from the property table, which lives in ``props``)."""
    if isinstance(raw, str) and (not raw.strip() or raw.lstrip().startswith("[")):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError:
            raise ConfigError(
                source, "Feeds", "expected a list of feed definitions (on the command "
                f"line as JSON: [{{\"FeedType\": \"udp\"}}]), got {raw!r}"
            ) from None
    if not isinstance(raw, list | tuple):
        raise ConfigError(source, "Feeds", f"expected a list of feed definitions, got {raw!r}")
    specs: list[FeedSpec] = []
    for i, item in enumerate(raw):
        where = f"Feeds[{i}]"
        if isinstance(item, FeedSpec):
            specs.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(
                source, where, f"expected a mapping of {', '.join(FEED_KEYS)}, got {item!r}"
            )
        values: dict[str, Any] = {k: defaults[k] for k in FEED_KEYS}
        for key, value in item.items():
            if key not in FEED_KEYS:
                close = next(iter(difflib.get_close_matches(str(key), FEED_KEYS, n=1)), None)
                hint = f" (did you mean {close!r}?)" if close else ""
                raise ConfigError(
                    source, f"{where}.{key}",
                    f"unknown key in a feed definition{hint}; expected one of "
                    + ", ".join(FEED_KEYS),
                )
            try:
                values[key] = convert(key, value, source)
            except ConfigError as exc:
                raise ConfigError(source, f"{where}.{key}", exc.message) from None
        if values["FeedType"] == "snmp" and "FeedPort" not in item:
            values["FeedPort"] = SNMP_PORT
        specs.append(FeedSpec(**values))
    return tuple(specs)


def check_feeds(feeds: Sequence[FeedSpec], several: bool, origin: Mapping[str, str]) -> None:
    """Each feed's TLS settings fit its type; at most one snmp feed (one drop list, one
    set of mttrapd's counters for the rules); no two feeds on one address and port.

    ``several``: the feeds come from ``Feeds`` (errors name ``Feeds[i].Key``), not from
    the one-feed properties."""
    bound: dict[tuple[str, str, int], int] = {}
    for i, feed in enumerate(feeds):

        def where(name: str, i: int = i) -> tuple[str, str]:
            if several:
                return origin["Feeds"], f"Feeds[{i}].{name}"
            return origin.get(name, "defaults"), name

        for name in ("FeedTLSKey", "FeedTLSCA"):
            if getattr(feed, name) and not feed.FeedTLSCert:
                raise ConfigError(*where(name), "needs FeedTLSCert: the feed's certificate")
        if feed.FeedTLSCert and feed.FeedType != "tcp":
            raise ConfigError(
                *where("FeedTLSCert"), f"needs FeedType tcp, got {feed.FeedType!r}"
            )
        if not several:
            continue
        if feed.FeedType == "snmp" and any(
            f.FeedType == "snmp" for f in feeds[:i]
        ):
            raise ConfigError(*where("FeedType"), "only one feed of a probe may be snmp")
        if feed.FeedType in ("stdin", "file") and any(
            (f.FeedType, f.FeedFile) == (feed.FeedType, feed.FeedFile) for f in feeds[:i]
        ):
            raise ConfigError(
                *where("FeedType"), f"a second {feed.FeedType} feed of the same input"
            )
        kinds = {"udp": ("udp",), "tcp": ("tcp",), "snmp": ("udp", "tcp")}.get(feed.FeedType, ())
        for kind in kinds if feed.FeedPort else ():
            seen = bound.setdefault((kind, feed.FeedAddress, feed.FeedPort), i)
            if seen != i:
                raise ConfigError(
                    *where("FeedPort"),
                    f"Feeds[{seen}] listens on {kind} {feed.FeedAddress}:{feed.FeedPort} already",
                )
