"""Prometheus metrics.

One Metrics object owns every metric, registered against its own CollectorRegistry
(never the global one), so tests build a fresh one each. The HTTP endpoint that serves
them (``/metrics``, ``/status``, ``/rules``) and its bounds are in ``endpoint``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from probepair._version import __version__

logger = logging.getLogger(__name__)

ROLES = ("master", "master-pending", "slave-standby", "slave-active", "standard")
# HeartbeatDecodeError reasons (wire.decode and ReplayGuard), created at start so that
# rate() sees the first rejection.
# The causes of probepair_peer_problem (``ops.problems`` says when each holds).
PEER_PROBLEMS = (
    "authentication",
    "version",
    "silent",
    "config_drift",
    "rules_differ",
    "split_brain",
)
REJECT_REASONS = (
    "short",
    "magic",
    "version",
    "malformed",
    "unsigned",
    "mac",
    "replay",
    "stale",
    "self",
    "sender",  # another sender id than the peer's current boot id came with (before the MAC)
    "source",  # not from PeerHost:PeerPort: dropped unread by anything but the count
    "unverified",  # an unknown boot id past the HMAC budget for those (peer.NEW_BOOT_MACS)
    "unfresh",  # authentic but not provably recent (failover.freshness): changed nothing
)


# probepair_control_errors_total{reason}: why a control socket request was refused.
CONTROL_ERROR_REASONS = (
    "json",  # not JSON, not UTF-8, or nested deeper than netjson allows
    "command",  # JSON, but no known command
    "too_long",  # over control.MAX_REQUEST bytes
    "timeout",  # no request line within control.CLIENT_TIMEOUT
    "uid",  # SO_PEERCRED: another user
    "internal",  # a bug in the handler (logged with its traceback)
)


# probepair_snmp_rejected_total{reason}: the codec's (feeds/snmp/ber.py), then USM's
# (feeds/snmp/usm.py REJECT_REASONS), then a message that is no trap or inform.
SNMP_REJECT_REASONS = (
    "malformed",
    "too_big",
    "too_many_varbinds",
    "unsupported_version",
    "unsupported_pdu",
    "not_a_notification",
    "unsupported_security_model",
    "unsupported_security_level",
    "not_in_time_window",
    "unknown_user",
    "unknown_engine",
    "wrong_digest",
    "decryption_error",
    "internal",  # a bug of the snmp feed's on some input (logged with its traceback)
)


# probepair_feed_frames_rejected_total{reason}: feeds/framing.py FRAME_ERROR_REASONS
# (kept equal by tests/test_tcp_framing.py; a leaf module imports no feed).
FRAME_REJECT_REASONS = (
    "too_big",  # an octet-counted MSG-LEN above the 1 MiB message limit
    "malformed",  # no MSG-LEN where an octet-counted frame must start
    "truncated",  # the connection ended inside an octet-counted frame
)
# probepair_feed_tls_handshake_failures_total{reason}: feeds/tls.py handshake_failure.
TLS_FAILURE_REASONS = (
    "timeout",  # not done within tls.HANDSHAKE_TIMEOUT: a stalled client lost its slot
    "certificate",  # FeedTLSCA set: no client certificate, or one it did not sign
    "protocol",  # no TLS (plain syslog to a TLS port), no common version or cipher
    "closed",  # the client closed or reset the connection during the handshake
)


class Metrics:
    """Every probepair metric; names are a contract (issues 3 and 5)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.active = Gauge(
            "probepair_active", "1 while this probe forwards to the sink", registry=r
        )
        self.role = Gauge(
            "probepair_role", "current failover role (1 for the current one)", ["role"], registry=r
        )
        self.buffer_depth = Gauge(
            "probepair_buffer_depth", "events held by a standby slave", registry=r
        )
        self.buffer_bytes = Gauge(
            "probepair_buffer_bytes", "payload bytes held by a standby slave", registry=r
        )
        self.failovers = Counter(
            "probepair_failovers", "times this probe became active by takeover", registry=r
        )
        self.heartbeats_sent = Counter(
            "probepair_heartbeats_sent", "heartbeats sent to the peer", registry=r
        )
        self.heartbeats_received = Counter(
            "probepair_heartbeats_received", "valid heartbeats received from the peer", registry=r
        )
        self.heartbeats_rejected = Counter(
            "probepair_heartbeats_rejected", "datagrams dropped, by reason", ["reason"], registry=r
        )
        self.events_received = Counter(
            "probepair_events_received", "events read from the feed", registry=r
        )
        self.events_forwarded = Counter(
            "probepair_events_forwarded", "alerts the sink acknowledged", registry=r
        )
        self.events_discarded = Counter(
            "probepair_events_discarded", "events not forwarded, by reason", ["reason"], registry=r
        )
        self.duplicates_avoided = Counter(
            "probepair_duplicates_avoided",
            "buffered events dropped because the peer delivered them",
            registry=r,
        )
        self.peer_heartbeat_age = Gauge(
            "probepair_peer_heartbeat_age_seconds",
            "seconds since the peer was last heard",
            registry=r,
        )
        self.beat_interval = Gauge(
            "probepair_beat_interval_seconds", "heartbeat interval in force", registry=r
        )
        self.takeover_bound = Gauge(
            "probepair_takeover_bound_seconds", "silence after which a slave takes over", registry=r
        )
        self.split_brain = Gauge(
            "probepair_split_brain", "1 while both probes are active", registry=r
        )
        self.rules_reloads = Counter(
            "probepair_rules_reloads", "rules reloads, by result", ["result"], registry=r
        )
        self.rules_errors = Counter("probepair_rules_errors", "runtime errors in rules", registry=r)
        self.rules_over_budget = Counter(
            "probepair_rules_over_budget",
            "events whose rules ran past RulesTimeBudget (delivered with @RulesOverBudget)",
            registry=r,
        )
        self.sink_errors = Counter("probepair_sink_errors", "failed sink deliveries", registry=r)
        self.sink_checks = Counter(
            "probepair_sink_checks",
            "checks of an idle sink (no delivery for a while: a standby's), by result",
            ["result"],
            registry=r,
        )
        self.sink_verified_age = Gauge(
            "probepair_sink_verified_age_seconds",
            "seconds since a delivery or a check last showed the sink working (NaN: never)",
            registry=r,
        )
        self.sink_write_seconds = Histogram(
            "probepair_sink_write_seconds",
            "time to deliver one batch to the sink",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.spool_bytes = Gauge(
            "probepair_spool_bytes", "bytes waiting in the store-and-forward spool", registry=r
        )
        self.buffer_limit = Gauge(
            "probepair_buffer_limit",
            "events a standby probe holds at most (BufferSize)",
            registry=r,
        )
        # The kernel keeps the UDP drop count; a collector reads it at each scrape.
        self.kernel_drops: Callable[[], int] | None = None
        r.register(_KernelDrops(self))
        self.feed_connections = Gauge(
            "probepair_feed_connections", "open tcp feed connections", registry=r
        )
        self.feed_connections_limit = Gauge(
            "probepair_feed_connections_limit", "FeedMaxConnections of the tcp feed", registry=r
        )
        self.feed_connections_refused = Counter(
            "probepair_feed_connections_refused",
            "tcp feed connections closed at once: FeedMaxConnections were open",
            registry=r,
        )
        self.feed_connections_idle_closed = Counter(
            "probepair_feed_connections_idle_closed",
            "tcp feed connections closed after FeedIdleTimeout without data",
            registry=r,
        )
        # -- the tcp feed's framing and TLS (issue 23) --
        self.feed_frames_rejected = Counter(
            "probepair_feed_frames_rejected",
            "tcp feed connections closed on a framing error, by reason (FRAME_REJECT_REASONS)",
            ["reason"],
            registry=r,
        )
        for reason in FRAME_REJECT_REASONS:
            self.feed_frames_rejected.labels(reason=reason)
        self.feed_framing = Counter(
            "probepair_feed_framing_detected",
            "tcp feed connections by the framing detected on them: octet-counted, newline",
            ["framing"],
            registry=r,
        )
        for framing in ("octet-counted", "newline"):
            self.feed_framing.labels(framing=framing)
        self.feed_tls_handshake_failures = Counter(
            "probepair_feed_tls_handshake_failures",
            "tcp feed TLS handshakes that failed, by reason (TLS_FAILURE_REASONS)",
            ["reason"],
            registry=r,
        )
        for reason in TLS_FAILURE_REASONS:
            self.feed_tls_handshake_failures.labels(reason=reason)
        self.feed_manager_renamed = Counter(
            "probepair_feed_manager_renamed",
            "json records with a $FeedManager token: a Manager key renamed ($Manager is "
            "reserved for ProbeWatch self-events), or a FeedManager key of their own",
            registry=r,
        )
        self.split_brains = Counter("probepair_split_brains", "split brains detected", registry=r)
        self.gap_fills = Counter(
            "probepair_gap_fills",
            "held events delivered because the active peer passed them by (it missed them)",
            registry=r,
        )
        self.handovers = Counter(
            "probepair_handovers",
            "times this probe stepped down from active and handed over, by reason",
            ["reason"],
            registry=r,
        )
        self.handovers_suppressed = Counter(
            "probepair_handovers_suppressed",
            "sink handovers not made, by reason (peer_sink: the peer's verified sink fails too)",
            ["reason"],
            registry=r,
        )
        self.replay_skipped = Counter(
            "probepair_replay_skipped",
            "spooled or held alerts not delivered because the peer's sink acknowledged them "
            "(a handover or a flush during this sink's outage)",
            registry=r,
        )
        self.sink_healthy = Gauge(
            "probepair_sink_healthy",
            "1 while the sink works (delivering, or verified by a check on a standby), 0 while "
            "it fails",
            registry=r,
        )
        self.sink_healthy.set(1)
        self.config_drift = Gauge(
            "probepair_config_drift",
            "1 when the peer's pair-wide settings (intervals, rules digest) differ from ours",
            registry=r,
        )
        self.peer_problem = Gauge(
            "probepair_peer_problem",
            "1 while this cause keeps the pair from working as one: authentication (the "
            "SharedSecrets differ), version, silent (nothing heard: firewall, PeerHost), "
            "config_drift, rules_differ, split_brain",
            ["cause"],
            registry=r,
        )
        for cause in PEER_PROBLEMS:
            self.peer_problem.labels(cause=cause).set(0)
        self.failback_window_open = Gauge(
            "probepair_failback_window_open",
            "1 while a returning master may take the role back (FailbackWindow open or unset)",
            registry=r,
        )
        self.failback_window_open.set(1)
        self.ready = Gauge(
            "probepair_ready",
            "1 while this probe's config and rules digests match the master's (readiness)",
            registry=r,
        )
        self.ready.set(1)
        self.rules_syncs = Counter(
            "probepair_rules_syncs",
            "rules syncs from the master, by result (refused: unsigned or tampered archive)",
            ["result"],
            registry=r,
        )
        self.info = Info(
            "probepair",
            "version, mode and node of this probe; allow_insecure_heartbeats=true: "
            "AllowInsecureHeartbeats is set",
            registry=r,
        )
        self.http_errors = Counter(
            "probepair_http_errors",
            "HTTP endpoint connections closed on an error, by reason (endpoint.ERROR_REASONS)",
            ["reason"],
            registry=r,
        )
        self.control_errors = Counter(
            "probepair_control_errors",
            "control socket requests refused as malformed, by reason",
            ["reason"],
            registry=r,
        )
        for reason in CONTROL_ERROR_REASONS:
            self.control_errors.labels(reason=reason)
        # -- the snmp feed (issue 22) --
        self.snmp_received = Counter(
            "probepair_snmp_received",
            "traps and informs accepted by the snmp feed, by SNMP version",
            ["version"],
            registry=r,
        )
        self.snmp_rejected = Counter(
            "probepair_snmp_rejected",
            "SNMP messages dropped, by reason (SNMP_REJECT_REASONS)",
            ["reason"],
            registry=r,
        )
        self.snmp_dropped = Counter(
            "probepair_snmp_dropped",
            "traps discarded unread because their host is on the drop list (drop_list_add)",
            registry=r,
        )
        self.snmp_informs_answered = Counter(
            "probepair_snmp_informs_answered", "Responses sent to informs once queued", registry=r
        )
        self.snmp_reports = Counter(
            "probepair_snmp_reports",
            "SNMPv3 Reports sent (engine discovery, time window, errors), by reason",
            ["reason"],
            registry=r,
        )
        for reason in SNMP_REJECT_REASONS:
            self.snmp_rejected.labels(reason=reason)
        for version in ("1", "2", "3"):
            self.snmp_received.labels(version=version)
        # Called before each exposition, to bring counters kept elsewhere up to date.
        self.before_collect: list[Callable[[], None]] = []
        for reason in ("rules", "buffer_full", "buffer_bytes", "retention", "spool_full"):
            self.events_discarded.labels(reason=reason)
        for result in ("success", "failure"):
            self.rules_reloads.labels(result=result)
        for reason in ("sink", "operator", "rules", "failback"):
            self.handovers.labels(reason=reason)
        for result in ("success", "refused", "failure"):
            self.rules_syncs.labels(result=result)
        for reason in REJECT_REASONS:
            self.heartbeats_rejected.labels(reason=reason)

    def count(self, name: str, **labels: str) -> float:
        """The current value of a sample, e.g. ``count("probepair_sink_checks_total",
        result="failure")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def set_info(self, mode: str, node: str, allow_insecure_heartbeats: bool = False) -> None:
        self.info.info(
            {
                "version": __version__,
                "mode": mode,
                "node": node,
                "allow_insecure_heartbeats": "true" if allow_insecure_heartbeats else "false",
            }
        )

    def set_role(self, role: str, active: bool) -> None:
        for r in ROLES:
            self.role.labels(role=r).set(1 if r == role else 0)
        self.active.set(1 if active else 0)

    def exposition(self) -> bytes:
        for hook in self.before_collect:
            hook()
        return generate_latest(self.registry)


class _KernelDrops(Collector):
    """``probepair_feed_kernel_drops_total``: a counter the kernel keeps for us."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "probepair_feed_kernel_drops",
            "datagrams the kernel dropped before the UDP feed read them",
        )
        source = self._metrics.kernel_drops
        family.add_metric([], float(source() if source is not None else 0))
        yield family

__all__ = ["Metrics"]
