"""Building a probe's failover side from its props, and observing it.

``build_driver`` turns props into a FailoverMachine + UdpLink + PeerDriver; ``PairObserver``
is the driver's observer: it hands flushed events to the sink channel, keeps the
metrics, logs role changes, and tells listeners (self-events, notify command).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from probepair.config.pairwide import pair_settings
from probepair.failover import (
    ACTIVE_ROLES,
    DropReason,
    Failback,
    FailoverConfig,
    FailoverMachine,
    HandoverReason,
    Mode,
    Role,
)
from probepair.failover.wire import config_digest, node_id_of
from probepair.metrics import REJECT_REASONS
from probepair.pair.driver import PeerDriver, UdpLink, new_boot_id

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.events import Item
    from probepair.metrics import Metrics

logger = logging.getLogger(__name__)

FLUSH_CHUNK = 4096  # events per channel send when a takeover flushes the buffer


def failover_config(props: Props, rules_digest: str = "") -> FailoverConfig:
    """The machine's settings; the digest covers what both peers must agree on."""
    return FailoverConfig(
        mode=Mode(props.Mode),
        node_id=node_id_of(f"{props.Name}:{props.heartbeat_port}"),
        boot_id=new_boot_id(),
        beat_interval=props.BeatInterval,
        beat_threshold=props.BeatThreshold,
        heartbeat_timeout=props.HeartbeatTimeout,
        failback=Failback(props.Failback),
        ack_interval=props.AckInterval,
        buffer_limit=props.BufferSize,
        buffer_bytes=props.BufferBytes,
        retention=props.BufferRetention,
        gap_timeout=props.GapTimeout,
        sink_failover=props.SinkFailover,
        failback_delay=props.FailbackDelay,
        config_digest=pair_digest(props, rules_digest),
        status_port=props.MetricsPort,
    )


def settings_digest(props: Props) -> bytes:
    """The digest of the pair-wide settings both peers must agree on, rules aside."""
    return config_digest(*pair_settings(props).values())


def pair_digest(props: Props, rules_digest: str) -> bytes:
    """What heartbeats carry: the settings digest and the rules tree digest together."""
    return config_digest(settings_digest(props), rules_digest)


class PairObserver:
    """Implements peer.PeerObserver for a running probe."""

    def __init__(
        self,
        metrics: Metrics,
        machine: FailoverMachine,
        flush_send: trio.abc.SendChannel[list[Item]],
        on_role: Callable[[Role, Role, str], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._machine = machine
        self._flush_send = flush_send
        self._on_role = on_role
        self._flush_lock = trio.Lock()
        self._flush_closed = False
        self._seen: dict[object, int] = {"dup": 0, "fo": 0, "gap": 0, "suppressed": 0, "skipped": 0}
        # Children looked up once: a flood of rejections costs ~0.3 us a count, not ~1.3.
        self._rejected = {r: metrics.heartbeats_rejected.labels(reason=r) for r in REJECT_REASONS}
        self._seen.update((reason, 0) for reason in DropReason)
        metrics.buffer_depth.set_function(lambda: machine.buffer_depth)
        metrics.buffer_bytes.set_function(lambda: machine.buffer_bytes)
        metrics.beat_interval.set_function(lambda: machine.beat_interval)
        metrics.peer_heartbeat_age.set_function(self._peer_age)
        metrics.before_collect.append(self.sync)
        metrics.set_role(machine.role.value, machine.active)

    def _peer_age(self) -> float:
        heard = self._machine.peer_last_heard
        return float("inf") if heard is None else max(0.0, trio.current_time() - heard)

    def sync(self) -> None:
        """Counters the machine keeps itself, brought into the metrics as deltas."""
        m, seen = self._machine, self._seen
        for reason, count in m.dropped.items():
            if count > seen[reason]:
                self._metrics.events_discarded.labels(reason=reason.value).inc(count - seen[reason])
                seen[reason] = count
        avoided = m.duplicates_avoided + m.acked
        if avoided > seen["dup"]:
            self._metrics.duplicates_avoided.inc(avoided - seen["dup"])
            seen["dup"] = avoided
        if m.gap_fills > seen["gap"]:
            self._metrics.gap_fills.inc(m.gap_fills - seen["gap"])
            seen["gap"] = m.gap_fills
        if m.handovers_suppressed > seen["suppressed"]:
            self._metrics.handovers_suppressed.labels(reason="peer_sink").inc(
                m.handovers_suppressed - seen["suppressed"]
            )
            seen["suppressed"] = m.handovers_suppressed
        if m.replays_skipped > seen["skipped"]:
            self._metrics.replay_skipped.inc(m.replays_skipped - seen["skipped"])
            seen["skipped"] = m.replays_skipped
        if m.failovers > seen["fo"]:
            self._metrics.failovers.inc(m.failovers - seen["fo"])
            seen["fo"] = m.failovers

    async def on_flush(self, items: list[tuple[bytes, bytes]]) -> None:
        logger.warning("flushing %d buffered events to the sink", len(items))
        await self._send_held(items)

    async def on_gap_fill(self, items: list[tuple[bytes, bytes]]) -> None:
        self.sync()
        await self._send_held(items)

    async def _send_held(self, items: list[tuple[bytes, bytes]]) -> None:
        async with self._flush_lock:
            if self._flush_closed:
                logger.error("%d held events not delivered: the probe is stopping", len(items))
                return
            for i in range(0, len(items), FLUSH_CHUNK):
                await self._flush_send.send(items[i : i + FLUSH_CHUNK])

    def on_handover(self, reason: HandoverReason) -> None:
        self._metrics.handovers.labels(reason=reason.value).inc()

    async def close_flush(self) -> None:
        """No more flushes: the sink runner may finish once the pipeline has drained."""
        async with self._flush_lock:
            self._flush_closed = True
            await self._flush_send.aclose()

    def on_role_changed(self, old: Role, new: Role, reason: str) -> None:
        self._metrics.set_role(new.value, new in ACTIVE_ROLES)
        self.sync()
        if self._on_role is not None:
            self._on_role(old, new, reason)

    def on_heartbeat_sent(self) -> None:
        self._metrics.heartbeats_sent.inc()
        self.sync()

    def on_heartbeat_received(self) -> None:
        self._metrics.heartbeats_received.inc()

    def on_rejected(self, reason: str) -> None:
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self._metrics.heartbeats_rejected.labels(reason=reason)
        child.inc()

    def on_foreign(self, count: int) -> None:
        """``count`` datagrams dropped by the link for their source address."""
        self._rejected["source"].inc(count)

    def on_split_brain(self, active: bool, detail: str) -> None:
        self._metrics.split_brain.set(1 if active else 0)
        if active:
            self._metrics.split_brains.inc()

    def on_config_drift(self, local: bytes, peer: bytes) -> None:
        self._metrics.config_drift.set(1)


def build_driver(
    props: Props,
    metrics: Metrics,
    flush_send: trio.abc.SendChannel[list[Item]],
    rules_digest: str = "",
    on_role: Callable[[Role, Role, str], None] | None = None,
    feed_idle: Callable[[], bool] | None = None,
) -> tuple[PeerDriver, UdpLink, PairObserver]:
    """A PeerDriver for ``props`` (Mode master or slave), not yet running, its link, and
    its observer (the runtime closes the observer's flush path when it stops)."""
    machine = FailoverMachine(failover_config(props, rules_digest), now=trio.current_time())
    observer = PairObserver(metrics, machine, flush_send, on_role)
    link = UdpLink(
        props.ListenAddress,
        props.heartbeat_port,
        props.PeerHost,
        props.PeerPort,
        on_foreign=observer.on_foreign,
    )
    driver = PeerDriver(machine, link, props.SharedSecret.encode(), observer, feed_idle=feed_idle)
    return driver, link, observer
