"""What a running probe says about itself and its peer: ``/status``, the problems that
keep the pair from working as one, where the peer's endpoint is (trio shell, reads only).

The probe wires; this reads what it wired (``StatusSource``), so the view of a probe is
written in one place and the probe module keeps one job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from probepair._version import __version__
from probepair.config.pairwide import file_digests, pair_settings
from probepair.ops.problems import peer_problems
from probepair.pair.observer import settings_digest
from probepair.pair.window import window_status
from probepair.rulesync.pull import peer_url

if TYPE_CHECKING:
    from probepair.config.cron import FailbackWindow
    from probepair.config.props import Props
    from probepair.metrics import Metrics
    from probepair.pair.driver import PeerDriver
    from probepair.rulesync.pull import Readiness
    from probepair.rulesync.tree import RulesTree
    from probepair.sinks.runner import SinkRunner

__all__ = ["StatusSource", "digests", "has_problem", "peer_endpoint", "problems", "status"]

REJECTION_WINDOW = 60.0  # seconds a refused datagram stays in /status ("rejected")


class StatusSource(Protocol):
    """What the view reads of a probe (``probe.Probe`` is one)."""

    props: Props
    metrics: Metrics
    addresses: dict[str, str]
    driver: PeerDriver | None
    readiness: Readiness | None
    runner: SinkRunner | None
    tree: RulesTree | None
    window: FailbackWindow | None
    started: float  # trio time the probe's run began
    wall_clock: Callable[[], float]

    @property
    def rules_digest(self) -> str: ...


def _age(age_then: float, heard: float | None) -> float | None:
    """An age the peer reported (as of its heartbeat heard at ``heard``) as of now;
    None when it is unknown (never verified, or the peer never heard)."""
    if heard is None or math.isinf(age_then):
        return None
    return round(age_then + trio.current_time() - heard, 3)


def _host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 host bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def status(src: StatusSource) -> dict[str, Any]:
    """This probe's side of ``probepair status`` (served on /status and the control socket)."""
    status: dict[str, Any] = {
        "name": src.props.Name,
        "version": __version__,
        "mode": src.props.Mode,
        "role": "standard",
        "active": True,
        "addresses": src.addresses,
        "rules": src.rules_digest,
        "settings_digest": settings_digest(src.props).hex(),
        "ready": True if src.readiness is None else src.readiness.ready is True,
        "desynchronised": [] if src.readiness is None else src.readiness.differs,
        **digests(src),
        "allow_insecure_heartbeats": src.props.AllowInsecureHeartbeats,
        "events_in": int(src.metrics.count("probepair_events_received_total")),
        "events_out": int(src.metrics.count("probepair_events_forwarded_total")),
    }
    if src.driver is not None:
        m = src.driver.machine
        heard = m.peer_last_heard
        status.update(
            role=m.role.value,
            active=m.active,
            epoch=m.epoch,
            buffer_depth=m.buffer_depth,
            beat_interval=m.beat_interval,
            peer_role=m.peer_role.value if m.peer_role else None,
            peer_heard_seconds_ago=None if heard is None else trio.current_time() - heard,
            split_brain=m.split_brain,
            config_drift=m.config_drift,
            sink_healthy=m.sink_healthy,
            sink_verified_seconds_ago=verified_age(src),
            spool_bytes=m.spool_bytes,
            peer_sink_failing_seconds=m.peer_sink_failing,
            peer_sink_verified_seconds_ago=_age(m.peer_sink_verified_age, heard),
            peer_status_address=peer_status_address(src),
            peer_address=_host_port(src.props.PeerHost, src.props.PeerPort),
            problems=problems(src),
            rejected=rejections(src),
            peer_spool_bytes=m.peer_spool_bytes,
            gap_fills=m.gap_fills,
        )
        status.update(window_status(src.window, m.failback, src.wall_clock()))
    return status


def peer_endpoint(src: StatusSource, path: str) -> str:
    """The peer's endpoint, in the README's order. /status: where the peer's
    authenticated heartbeats come from, at the MetricsPort they announce (on one
    host PeerHost with our own MetricsPort is ourselves), else PeerMetricsPort.
    /rules: PeerMetricsPort when set (an operator's choice), else the same."""
    props = src.props
    heard = peer_status_address(src)
    if path == "/rules" and props.PeerMetricsPort:
        return peer_url(props.PeerHost, props.PeerMetricsPort, path)
    if heard is not None:
        return peer_url(str(heard[0]), int(str(heard[1])), path)
    port = props.PeerMetricsPort or (props.MetricsPort if path == "/rules" else 0)
    return peer_url(props.PeerHost, port, path) if port else ""


def digests(src: StatusSource) -> dict[str, Any]:
    """What readiness compares with the master's /status: digests, then by name."""
    props, tree = src.props, src.tree
    return {
        "rules": src.rules_digest,
        "settings_digest": settings_digest(props).hex(),
        "settings": pair_settings(props),
        "rules_files": {} if tree is None else file_digests(tree.files, tree.main),
    }


def problems(src: StatusSource) -> list[str]:
    """The causes (``ops.problems``) that keep the pair from working as one now."""
    driver = src.driver
    if driver is None:
        return []
    m = driver.machine
    now = trio.current_time()
    heard = m.peer_last_heard
    return peer_problems(
        heard_ago=None if heard is None else now - heard,
        up=now - src.started,
        bound=src.props.takeover_bound,
        rejected=rejections(src),
        config_drift=m.config_drift,
        differs=[] if src.readiness is None else src.readiness.differs,
        split_brain=m.split_brain,
    )


def has_problem(src: StatusSource, cause: str) -> int:
    """1 while ``cause`` is one of ``problems`` (the gauge probepair_peer_problem{cause})."""
    try:
        return 1 if cause in problems(src) else 0
    except RuntimeError:  # scraped outside the trio run (at its end)
        return 0


def rejections(src: StatusSource) -> dict[str, dict[str, object]]:
    """Datagrams refused lately (REJECTION_WINDOW) for a setup problem: reason ->
    count, seconds since the last, and the address they came from."""
    assert src.driver is not None
    now = trio.current_time()
    return {
        reason: {"count": count, "seconds_ago": round(now - at, 3), "from": host}
        for reason, (at, count, host) in src.driver.rejections.items()
        if now - at < REJECTION_WINDOW
    }


def peer_status_address(src: StatusSource) -> list[object] | None:
    """[host, port] of the peer's /status: its heartbeats' source address and the
    MetricsPort they announce (None: not heard yet, or it has no endpoint)."""
    driver = src.driver
    if driver is None or driver.peer_host is None or not driver.machine.peer_status_port:
        return None
    return [driver.peer_host, driver.machine.peer_status_port]


def verified_age(src: StatusSource) -> float | None:
    """Seconds since the sink last showed it works (a delivery or a check)."""
    runner = src.runner
    age = math.nan if runner is None else runner.verified_age()
    return None if math.isnan(age) else round(age, 3)
