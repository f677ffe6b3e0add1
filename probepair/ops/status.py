"""``probepair status``: both probes of a pair side by side, and a verdict.

``render_table`` is pure (status dicts in, text out), so every verdict is tested with
plain dicts. The dicts are what ``Probe.status()`` returns (served on ``/status`` and on
the control socket); a key the other probe's version does not send shows as ``-``
rather than failing, so mixed versions during an upgrade still get a table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from probepair.config.pairwide import differences
from probepair.ops.control import ControlError
from probepair.rulesync import fetch as httpget
from probepair.rulesync import netjson

UNKNOWN: Final = "-"
DIGEST_CHARS: Final = 12  # hex chars of the rules digest shown: enough to tell versions apart
LABEL_WIDTH: Final = 18
MIN_COLUMN: Final = 18
MAX_STATUS: Final = 1 << 20  # bytes of a peer's /status (a few KiB)

Status = dict[str, Any]


def _yes_no(value: object) -> str:
    return UNKNOWN if value is None else ("yes" if value else "no")


def _number(value: object) -> str:
    return UNKNOWN if value is None or isinstance(value, bool) else str(value)


def _heard(status: Status) -> str:
    if status.get("role") == "standard":
        return "n/a"
    ago = status.get("peer_heard_seconds_ago")
    if "peer_heard_seconds_ago" in status and ago is None:
        return "never"
    return UNKNOWN if not isinstance(ago, int | float) else f"{ago:.1f} s ago"


def _heard_ago(status: Status) -> str:
    ago = status.get("peer_heard_seconds_ago")
    return "never heard" if not isinstance(ago, int | float) else f"last heard {ago:.0f} s ago"


def _drift(status: Status) -> str:
    drift = status.get("config_drift")
    if drift is None or status.get("role") == "standard":
        return UNKNOWN
    return "DRIFT" if drift else "match"


def _digest(status: Status) -> str:
    digest = status.get("rules")
    if digest is None:
        return UNKNOWN
    return digest[:DIGEST_CHARS] if digest else "(no rules)"


def _insecure(status: Status) -> str:
    if status.get("role") == "standard":
        return "n/a"
    allowed = status.get("allow_insecure_heartbeats")
    return UNKNOWN if allowed is None else ("ALLOWED" if allowed else "no")


def _ready(status: Status) -> str:
    ready = status.get("ready")
    if ready is None or status.get("role") == "standard":
        return UNKNOWN if ready is None else "n/a"
    return "yes" if ready else "NO: " + ",".join(status.get("desynchronised") or ["?"])


def _sink(status: Status) -> str:
    healthy = status.get("sink_healthy")
    if healthy is None:
        return "n/a" if status.get("role") == "standard" else UNKNOWN
    age = status.get("sink_verified_seconds_ago", "")  # absent: a peer of an older version
    checked = ""
    if age is None:
        checked = " (never verified)"
    elif isinstance(age, int | float):
        checked = f" (verified {age:.0f} s ago)"
    if healthy:
        return ("delivering" if status.get("active") else "works") + checked
    spool = status.get("spool_bytes")
    return "FAILING" + (f", spool {_number(spool)} B" if isinstance(spool, int) else "")


def _duration(seconds: float) -> str:
    minutes = int(seconds + 59) // 60  # rounded up: "in 1 min" until it opens
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d}" if hours < 48 else f"{hours // 24} days"


def _window(status: Status) -> str:
    if "failback_window" not in status or status.get("role") == "standard":
        return UNKNOWN if status.get("role") != "standard" else "n/a"
    if not status["failback_window"]:
        return "any time"
    if status.get("failback_window_open"):
        return "open"
    after = status.get("next_window_in_seconds")
    return "closed" if not isinstance(after, int | float) else f"in {_duration(after)}"


ROWS: Final[tuple[tuple[str, Callable[[Status], str]], ...]] = (
    ("name", lambda s: str(s.get("name", UNKNOWN))),
    ("mode", lambda s: str(s.get("mode", UNKNOWN))),
    ("role", lambda s: str(s.get("role", UNKNOWN))),
    ("active", lambda s: _yes_no(s.get("active"))),
    ("epoch", lambda s: _number(s.get("epoch"))),
    ("peer last heard", _heard),
    ("buffer depth", lambda s: _number(s.get("buffer_depth"))),
    ("events in", lambda s: _number(s.get("events_in"))),
    ("events out", lambda s: _number(s.get("events_out"))),
    ("config digest", _drift),
    ("rules digest", _digest),
    ("insecure beats", _insecure),
    ("ready", _ready),
    ("failback window", _window),
    ("sink", _sink),
    ("gap fills", lambda s: _number(s.get("gap_fills"))),
)

_RULES_ROW: Final = [label for label, _ in ROWS].index("rules digest")


_REJECTED: Final = {
    "mac": "bad HMAC: the two SharedSecrets differ",
    "unsigned": "the peer sends unsigned heartbeats: it has no SharedSecret",
    "version": "another heartbeat format: upgrade both probes to the same version",
}


def _rejected(status: Status) -> list[str]:
    rejected = status.get("rejected")
    if not isinstance(rejected, dict):
        return []
    lines = []
    for reason, info in sorted(rejected.items()):
        if reason in _REJECTED and isinstance(info, dict):
            lines.append(
                f"WARNING: {status.get('name', UNKNOWN)} refuses the peer's datagrams "
                f"({_REJECTED[reason]}; {info.get('count')} from {info.get('from')}, "
                f"the last {_number(info.get('seconds_ago'))} s ago)"
            )
    return lines


def verdict(local: Status, peer: Status | None, peer_error: str | None = None) -> list[str]:
    """The lines under the table: ``pair OK: ...`` or one ``WARNING: ...`` per problem."""
    if local.get("role") == "standard":
        return [
            "standard probe (no failover peer): "
            + ("active" if local.get("active") else "not active")
        ]
    warnings: list[str] = []
    probes = [local] if peer is None else [local, peer]
    for s in probes:  # a setup problem first: it explains what follows
        warnings.extend(_rejected(s))
    for s in probes:
        if "silent" in (s.get("problems") or ()):
            warnings.append(
                f"WARNING: {s.get('name', UNKNOWN)} hears nothing from "
                f"{s.get('peer_address', 'its peer')} ({_heard_ago(s)}): "
                "firewall, PeerHost or PeerPort, or the peer is down?"
            )
    active = [str(s.get("name", UNKNOWN)) for s in probes if s.get("active")]
    if peer is None:
        # the error itself is on the "peer:" line above the verdict
        warnings.append(
            "WARNING: peer status unavailable; this probe is "
            + ("active" if local.get("active") else "NOT active")
        )
        if local.get("split_brain"):
            warnings.append("WARNING: both active (split brain)")
    elif len(active) == 0:
        warnings.append("WARNING: no probe active")
    elif len(active) > 1 or local.get("split_brain") or peer.get("split_brain"):
        warnings.append("WARNING: both active (split brain)")
    rules_differ = (
        peer is not None
        and None not in (local.get("rules"), peer.get("rules"))
        and local.get("rules") != peer.get("rules")
    )
    if any(s.get("config_drift") for s in probes) or rules_differ:
        named = [] if peer is None else differences(
            local, peer, f"on {local.get('name', UNKNOWN)}", f"on {peer.get('name', UNKNOWN)}"
        )
        if named:
            why = ": " + "; ".join(named)
        else:
            why = " (rules digests differ)" if rules_differ else ""
        warnings.append("WARNING: config drift between peers" + why)
    for s in probes:
        if s.get("ready") is False and s.get("role") != "standard":
            what = ", ".join(s.get("desynchronised") or ["?"])
            warnings.append(f"WARNING: {s.get('name', UNKNOWN)} is desynchronised ({what})")
    insecure = [str(s.get("name", UNKNOWN)) for s in probes if s.get("allow_insecure_heartbeats")]
    if insecure:
        warnings.append(
            f"WARNING: AllowInsecureHeartbeats on {', '.join(insecure)}: "
            "heartbeats and acks may be forged"
        )
    if warnings:
        return warnings
    return [f"pair OK: one active ({active[0]})"]


def render_table(local: Status, peer: Status | None, peer_error: str | None = None) -> str:
    """Both probes side by side (this probe, peer), then the verdict lines.

    Args:
        local: this probe's status (from its control socket or ``/status``).
        peer: the peer's status, or None when it could not be fetched.
        peer_error: why the peer's status is missing; shown under the table.
    """
    columns = [[cell(local) for _, cell in ROWS]]
    columns.append(
        [cell(peer) for _, cell in ROWS]
        if peer is not None
        else ["(unreachable)"] + [UNKNOWN] * (len(ROWS) - 1)
    )
    if peer is not None and local.get("rules") is not None and peer.get("rules") is not None:
        same = local.get("rules") == peer.get("rules")
        columns[1][_RULES_ROW] += " (match)" if same else " (DIFFERENT)"
    width = max(MIN_COLUMN, *(len(c) + 2 for c in columns[0]))
    lines = [f"{'':<{LABEL_WIDTH}}{'this probe':<{width}}peer"]
    for i, (label, _) in enumerate(ROWS):
        lines.append(f"{label:<{LABEL_WIDTH}}{columns[0][i]:<{width}}{columns[1][i]}".rstrip())
    if peer is None and peer_error:
        lines.append(f"peer: {peer_error}")
    lines.extend(verdict(local, peer, peer_error))
    return "\n".join(lines) + "\n"


def status_url(host: str, port: int) -> str:
    """The ``/status`` URL of a probe's metrics endpoint (IPv6 hosts bracketed)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/status"


def fetch_status(url: str, timeout: float = 3.0, *, secret: bytes = b"") -> Status:
    """GET a probe's ``/status`` (blocking, for the CLI), signed with ``secret``.

    Raises:
        ControlError: naming ``url``: nothing listens, no answer within ``timeout``
            seconds, an HTTP error status, or a body that is not a JSON object.
    """
    try:
        code, body = httpget.get(url, max_bytes=MAX_STATUS, timeout=timeout, secret=secret)
    except httpget.FetchError as exc:
        raise ControlError(url, exc.message) from None
    if code == 401:
        raise ControlError(
            url,
            "HTTP 401: the peer wants a request signed with its SharedSecret (is ours the same?)",
        )
    if code != 200:
        raise ControlError(url, f"expected HTTP 200, got {code}")
    try:
        status = netjson.loads(body, max_bytes=MAX_STATUS)
    except netjson.JSONInputError as exc:
        raise ControlError(url, f"expected a JSON object: {exc.reason}") from None
    if not isinstance(status, dict):
        raise ControlError(url, f"expected a JSON object, got {body[:80]!r}")
    return status
