"""Why a pair is not healthy, as causes: for ``/status``, ``probepair status`` and the
``probepair_peer_problem{cause}`` gauge (issue 25).

Each cause names what an operator fixes, not a symptom: ``authentication`` (the peer's
datagrams fail their HMAC or come unsigned: the SharedSecrets differ), ``version``
(another heartbeat format), ``silent`` (nothing fresh from the peer for longer than the
takeover bound, and nothing refused either: a firewall, a wrong PeerHost or PeerPort,
or a dead peer), ``config_drift`` (pair-wide settings differ), ``rules_differ`` (the
rules trees differ), ``split_brain`` (both active). Pure: facts in, causes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from probepair.metrics import PEER_PROBLEMS
from probepair.rulesync.pull import rules_differ

CAUSES: Final = PEER_PROBLEMS
_AUTHENTICATION: Final = frozenset({"mac", "unsigned"})


def peer_problems(
    *,
    heard_ago: float | None,
    up: float,
    bound: float,
    rejected: Iterable[str],
    config_drift: bool,
    differs: Iterable[str],
    split_brain: bool,
) -> list[str]:
    """The causes that hold now, in ``CAUSES`` order.

    Args:
        heard_ago: seconds since the peer's last fresh datagram (None: never).
        up: seconds this probe has run (a probe just started has heard nothing yet).
        bound: the takeover bound (BeatInterval + BeatThreshold + 1 s).
        rejected: reasons of the peer's datagrams refused lately (``mac`` ...).
        config_drift: the peer's config digest differs from ours.
        differs: readiness's list of what differs (``rules``, ``rules file x`` ...).
        split_brain: both probes are active.
    """
    reasons = set(rejected)
    causes: set[str] = set()
    if reasons & _AUTHENTICATION:
        causes.add("authentication")
    if "version" in reasons:
        causes.add("version")
    quiet = heard_ago > bound if heard_ago is not None else up > bound
    if quiet and not causes:  # a peer whose datagrams we refuse is not silent
        causes.add("silent")
    if config_drift and not quiet:
        named = list(differs)
        rules = [d for d in named if rules_differ([d])]
        if rules:
            causes.add("rules_differ")
        if not rules or len(rules) < len(named):
            causes.add("config_drift")
    if split_brain:
        causes.add("split_brain")
    return [cause for cause in CAUSES if cause in causes]
