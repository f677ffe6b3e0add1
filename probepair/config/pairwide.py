"""The settings both probes of a pair must agree on, and what differs between two.

Heartbeats carry one digest over these settings and the rules tree; when the digests
differ, ``/status`` of each side shows the values (``settings``) and each rules file's
SHA-256 (``rules_files``), and ``differences`` names what differs: the property, with
both values, or the rules file. Pure: two ``/status`` documents in, lines out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from probepair.config.props import Props

PAIR_SETTINGS: Final = (
    "BeatInterval",
    "BeatThreshold",
    "HeartbeatTimeout",
    "Failback",
    "FeedFormat",
    "KeyWindow",
    "FailbackWindow",
    "FailbackWindowLength",
    "FailbackDelay",
)
MAX_NAMED: Final = 5  # rules files named at most; the rest are counted


def pair_settings(props: Props) -> dict[str, object]:
    """The pair-wide settings by name, in digest order (as ``/status`` shows them)."""
    settings = {name: getattr(props, name) for name in PAIR_SETTINGS}
    # Several feeds: the formats they use (one feed: its format, as before). Which feed
    # listens where may differ between the two probes (UDP here, TCP there), but the
    # same message must be read in the same format on both.
    settings["FeedFormat"] = ",".join(sorted({feed.FeedFormat for feed in props.feeds}))
    return settings


def file_digests(files: Mapping[str, bytes], main: str) -> dict[str, str]:
    """Each rules file's SHA-256 (hex), by its path relative to the RulesFile directory;
    the main file under ``""`` (it counts by role: the two sides may name it apart)."""
    return {
        "" if name == main else name: hashlib.sha256(data).hexdigest()
        for name, data in files.items()
    }


def differences(local: Mapping[str, Any], peer: Mapping[str, Any], here: str = "here",
                there: str = "on the peer") -> list[str]:
    """What differs between two ``/status`` documents: ``BeatInterval (2 here, 3 on
    the peer)``, ``rules file include/a.rules``; [] when neither side tells (an older
    peer) or nothing differs."""
    out: list[str] = []
    ours, theirs = local.get("settings"), peer.get("settings")
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        for name in PAIR_SETTINGS:
            if name in ours and name in theirs and ours[name] != theirs[name]:
                out.append(f"{name} ({ours[name]!r} {here}, {theirs[name]!r} {there})")
    ours, theirs = local.get("rules_files"), peer.get("rules_files")
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        changed = sorted(
            name or "the main rules file"
            for name in set(ours) | set(theirs)
            if ours.get(name) != theirs.get(name)
        )
        shown = [f"rules file {name}" for name in changed[:MAX_NAMED]]
        if len(changed) > MAX_NAMED:
            shown.append(f"{len(changed) - MAX_NAMED} more rules files")
        out.extend(shown)
    return out
