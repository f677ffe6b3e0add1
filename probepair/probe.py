"""The trio runtime: one nursery, one task per stage, a clean stop.

Theory of operation
-------------------
    feeds --(batches of Events)--> Processor --(batches of alerts)--> SinkRunner --> sink
                                     |  gate: PeerDriver (pair) / AlwaysForward (standard)
                                     v
                         heartbeats + acks to the peer (peer.py)

Every arrow is a bounded memory channel of *batches*; a full channel blocks its producer
(back-pressure reaches the UDP socket, whose overflow the kernel counts). A clean stop
(SIGTERM/SIGINT, or the end of every feed, as stdin's) cancels only the feeds; the
processor drains what they accepted, the sink runner delivers it (or spools it), the
sink is flushed, and only then are the peer link and the metrics endpoint cancelled:
nothing accepted is lost.

Feeds (``Feeds``, or the one-feed shorthand) run side by side in one nursery, each with
its own clone of the channel's send end; each event carries its feed's index, which
the processor reads per batch to pick the format. The pipeline nursery holds the
feeds, processor and sink runner; the outer nursery holds what outlives them (signals,
metrics, the failover driver).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from probepair.config.cron import FailbackWindow
from probepair.config.paths import default_spool
from probepair.config.secret import read_metrics_token
from probepair.errors import RulesError
from probepair.failover import ACTIVE_ROLES, HandoverReason, Mode, Role
from probepair.feeds import make_feeds
from probepair.metrics import Metrics
from probepair.ops import probeview
from probepair.ops.control import make_handler, serve_control, socket_path
from probepair.ops.endpoint import EndpointAuth, serve_metrics
from probepair.ops.notify import Notifier
from probepair.ops.problems import CAUSES
from probepair.pair.driver import PeerDriver
from probepair.pair.observer import PairObserver, build_driver, pair_digest, settings_digest
from probepair.pair.window import drive_window, local_zone
from probepair.pipeline.channels import (
    BoundedSendChannel,
    ReceiveEnd,
    SendEnd,
    batch_bytes,
    items_bytes,
    open_bounded_channel,
)
from probepair.pipeline.processor import AlwaysForward, Gate, Processor, self_event
from probepair.rulesync.install import recover as recover_install
from probepair.rulesync.pull import Approve, Readiness, sync_once
from probepair.rulesync.tree import RulesSyncError, RulesTree, pack, read_tree
from probepair.sinks import make_sink
from probepair.sinks.runner import SinkRunner, check_interval
from probepair.sinks.spool import Spool

if TYPE_CHECKING:
    import socket

    from probepair.config.props import Props
    from probepair.events import Batch
    from probepair.feeds.base import Feed
    from probepair.rules import Program

logger = logging.getLogger(__name__)

RULES_POLL_INTERVAL = 2.0  # seconds between checks of RulesFile's mtime (reload on change)




def load_program(props: Props) -> Program | None:
    """The compiled rules, or None when ``RulesFile`` is '' (tokens become the alert).

    Raises:
        RulesError: the rules file does not compile (located message).
    """
    if not props.RulesFile:
        return None
    from probepair.rules import load_rules

    return load_rules(props.RulesFile)


def spool_path(props: Props, *, create: bool = False) -> str:
    """``SAFFileName``, or ``<Name>.saf`` in the state directory (see ``paths``)."""
    return props.SAFFileName or default_spool(props.Name, create=create)


class Probe:
    """One probe process: owns the stages and their lifetimes."""

    def __init__(
        self,
        props: Props,
        *,
        wall_clock: Callable[[], float],
        ready: Callable[[str], None] | None = None,
    ) -> None:
        self.props = props
        self.metrics = Metrics()
        self.metrics.set_info(props.Mode, props.Name, props.AllowInsecureHeartbeats)
        self.metrics.beat_interval.set(props.BeatInterval)
        self.metrics.takeover_bound.set(props.takeover_bound)
        self.metrics.buffer_limit.set(props.BufferSize)
        self.wall_clock = wall_clock
        # The READY line goes to stdout, unless the stdout sink owns it (JSON lines only).
        ready_to = sys.stderr if props.SinkType == "stdout" else sys.stdout
        self._ready = ready or (lambda line: print(line, file=ready_to, flush=True))
        if props.RulesFile:
            recover_install(props.RulesFile)  # a sync cut short: its old or its new tree
        self.program = load_program(props)
        self.tree = self._read_tree()
        self._archive: tuple[str, bytes] | None = None  # (digest, signed archive) served
        self.readiness: Readiness | None = None
        self._rules_mtime = self._mtime()
        self.gate: Gate = AlwaysForward()
        self.driver: PeerDriver | None = None
        self.runner: SinkRunner | None = None
        # Every feed of Feeds (or the one-feed shorthand), one key maker between them.
        self.feeds: list[Feed] = make_feeds(props, wall_clock, self.metrics)
        # A feed that tokenises itself (snmp, at most one) hands the processor its
        # tokens and its counters for mttrapd's rules functions; its drop list sends
        # ProbeWatch events.
        tokens_of = {}
        control = None
        for i, feed in enumerate(self.feeds):
            if (control := getattr(feed, "control", None)) is not None:
                control.on_blockade = self._on_blockade
                tokens_of[i] = control.taken
                break
        self.control = control
        self.processor = Processor(
            props,
            self.program,
            self.gate,
            self.metrics,
            wall_clock,
            tokens_of=tokens_of,
            traps=control,
        )
        self._stop = trio.Event()
        self._feed_done = trio.Event()
        self.notifier = Notifier(props.NotifyCommand, props.Name)
        self._self_send: BoundedSendChannel[Batch] | None = None
        self.addresses: dict[str, str] = {}
        self.started = 0.0  # trio time run() began (a probe just started heard nothing yet)
        self.window = (
            FailbackWindow(props.FailbackWindow, props.FailbackWindowLength, local_zone())
            if props.FailbackWindow and props.Mode != "standard"
            else None
        )

    def _mtime(self) -> float:
        try:
            return os.stat(self.props.RulesFile).st_mtime if self.props.RulesFile else 0.0
        except OSError:
            return 0.0

    def _read_tree(self) -> RulesTree | None:
        """The running rules tree as files (for its digest and /rules); None: no rules."""
        if self.program is None:
            return None
        try:
            return read_tree(self.props.RulesFile, self.program.files)
        except OSError as exc:
            logger.error("cannot read the rules tree for its digest: %s", exc)
            return None

    @property
    def rules_digest(self) -> str:
        """The rules tree digest ('' without rules): what readiness and status compare."""
        if self.tree is not None:
            return self.tree.digest
        return getattr(self.program, "digest", "")

    def rules_archive(self) -> tuple[int, bytes]:
        """``GET /rules``: the signed tree, or an error status with the reason."""
        secret = self.props.SharedSecret.encode()
        if not secret:
            return 403, b"no SharedSecret is set: /rules is refused\n"
        tree = self.tree
        if tree is None:
            return 404, b"no rules tree: RulesFile is '' or unreadable\n"
        if self._archive is None or self._archive[0] != tree.digest:
            try:
                settings = settings_digest(self.props).hex()
                self._archive = (tree.digest, pack(tree, secret, settings))
            except RulesSyncError as exc:
                return 409, f"{exc}\n".encode()
        return 200, self._archive[1]

    def _pull_rules(self, url: str, approve: Approve) -> None:
        """RulesSync pull (in a worker thread): fetch, verify, approve, compile, install."""
        secret = self.props.SharedSecret.encode()
        sync_once(url, self.props.RulesFile, secret, self.tree, approve=approve)

    def _on_readiness(self, ready: bool, differs: list[str]) -> None:
        self.metrics.ready.set(1 if ready else 0)
        if ready:
            logger.warning("ready: config and rules match the master's")
            self.send_self_event("Ready")
        else:
            logger.warning("desynchronised from the master (%s)", ", ".join(differs))
            self.send_self_event("Desynchronised: " + ", ".join(differs))

    def send_self_event(self, summary: str) -> None:
        """Queue a ProbeWatch event (never blocks: dropped and logged if the queue is full)."""
        if self._self_send is None:
            return
        try:
            self._self_send.send_nowait([self_event(self.props.Name, summary, self.wall_clock)])
        except trio.WouldBlock:
            logger.warning("ProbeWatch event %r dropped: the event queue is full", summary)
        except trio.ClosedResourceError:
            pass  # stopping: "Going Down ..." was the last one

    def _on_blockade(self, host: str, blocked: bool) -> None:
        """mttrapd's ProbeWatch messages for its drop list (drop_list_add/remove)."""
        self.send_self_event(f"mttrapd on {host} is {'blocked' if blocked else 'unblocked'}")

    def _on_role(self, old: Role, new: Role, reason: str) -> None:
        verb = "Became active" if new in ACTIVE_ROLES else "Became standby"
        readiness = self.readiness
        if new is Role.SLAVE_ACTIVE and readiness is not None and not readiness.ready:
            # Availability first: take over anyway, but say it loudly everywhere.
            differs = ", ".join(readiness.differs)
            logger.error(
                "took over while desynchronised from the master (%s): alerts may differ "
                "from the ones the master would write",
                differs,
            )
            reason = f"{reason} (desynchronised: {differs})"
        self.send_self_event(f"{verb} ({new.value}): {reason}")
        self.notifier.on_role(old, new, reason)

    async def _self_events(self, send: BoundedSendChannel[Batch]) -> None:
        """'Running ...' now, 'Going Down ...' at stop; then the channel closes."""
        async with send:
            self._self_send = send
            self.send_self_event("Running ...")
            await self._feed_done.wait()  # so "Going Down ..." follows the feed's last event
            # As mttrapd does on exit: every host still on the drop list is unblocked,
            # so no "is blocked" problem outlives the probe in the event list.
            control = self.control
            for host in sorted(control.drop_list) if control is not None else ():
                summary = f"mttrapd on {host} is unblocked"
                await send.send([self_event(self.props.Name, summary, self.wall_clock)])
            await send.send([self_event(self.props.Name, "Going Down ...", self.wall_clock)])
            self._self_send = None

    def stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            logger.info("stopping: %s", reason)
            self._stop.set()

    def reload_rules(self, why: str) -> bool:
        """Compile RulesFile anew and swap it in; on error keep the running rules."""
        self._rules_mtime = self._mtime()
        try:
            program = load_program(self.props)
        except (RulesError, OSError) as exc:
            self.metrics.rules_reloads.labels(result="failure").inc()
            logger.error("rules reload (%s) failed, keeping the running rules: %s", why, exc)
            return False
        self.program = self.processor.program = program
        self.tree = self._read_tree()
        if self.driver is not None:
            # Heartbeats carry the rules tree digest: the peer sees the new rules at once.
            digest = pair_digest(self.props, self.rules_digest)
            self.driver.machine.config_digest_changed(digest)
        self.metrics.rules_reloads.labels(result="success").inc()
        logger.warning("rules reloaded (%s) from %s", why, self.props.RulesFile)
        return True

    def status(self) -> dict[str, Any]:
        """This probe's side of ``probepair status`` (``ops.probeview``)."""
        return probeview.status(self)

    async def _watch_signals(self) -> None:
        # The receiver gives back, as it closes, the handlers it found. The probe still
        # spools and closes its files after that, and a second SIGTERM there (an
        # impatient supervisor, a double Ctrl-C) would kill it with the default action:
        # so the handlers it finds are "ignore", and the old ones come back only when
        # no signal stopped us (a probe run inside a test).
        stopping = (signal.SIGTERM, signal.SIGINT)
        before = {stop: signal.getsignal(stop) for stop in stopping}
        for stop in stopping:
            signal.signal(stop, signal.SIG_IGN)
        stopped_by_signal = False
        try:
            with trio.open_signal_receiver(signal.SIGHUP, *stopping) as signals:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self.reload_rules("SIGHUP")
                    else:
                        stopped_by_signal = True
                        self.stop(signal.Signals(signum).name)
        finally:
            if not stopped_by_signal:
                for stop, handler in before.items():
                    signal.signal(stop, handler)

    async def _watch_rules_file(self) -> None:
        while True:
            await trio.sleep(RULES_POLL_INTERVAL)
            mtime = self._mtime()
            if mtime != self._rules_mtime:
                self._rules_mtime = mtime
                self.reload_rules("RulesFile changed")

    def _readiness(self, driver: PeerDriver) -> Readiness:
        props = self.props
        return Readiness(
            driver.machine,
            partial(self._peer_url, "/status"),
            partial(self._peer_url, "/rules"),
            self._digests,
            props.RulesSync == "pull",
            self._pull_rules,
            lambda: self.reload_rules("RulesSync pull"),
            self._on_readiness,
            lambda result: self.metrics.rules_syncs.labels(result=result).inc(),
            secret=props.SharedSecret.encode(),
            settings=settings_digest(props),
        )

    def _peer_url(self, path: str) -> str:
        return probeview.peer_endpoint(self, path)

    def _digests(self) -> dict[str, Any]:
        return probeview.digests(self)

    def _has_problem(self, cause: str) -> int:
        return probeview.has_problem(self, cause)

    def _operator_mode(self, mode: Mode) -> None:
        assert self.driver is not None
        self.driver.request_mode(mode, HandoverReason.OPERATOR)

    def _pipeline_idle(self, feed_recv: ReceiveEnd[Batch]) -> bool:
        """Nothing is on its way to the failover gate: the feed holds and has nothing
        unread, the channel is empty and the rules task waits on it (a task that has
        just taken a batch is not waiting yet, though the channel already looks empty).
        """
        # Only datagram feeds can tell (udp, snmp over UDP); the others are never idle,
        # and with several feeds every one of them must be.
        stats = feed_recv.statistics()
        if stats.current_buffer_used or not stats.tasks_waiting_receive:
            return False
        for feed in self.feeds:
            idle: Callable[[], bool] | None = getattr(feed, "idle", None)
            if idle is None or not idle():
                return False
        return True

    def _count_kernel_drops(self) -> None:
        from probepair.feeds.udp import kernel_drops

        # udp, snmp over UDP: the series is the sum over the probe's UDP sockets.
        socks: list[socket.socket] = [
            sock for feed in self.feeds if (sock := getattr(feed, "socket", None)) is not None
        ]
        if socks:
            self.metrics.kernel_drops = lambda: sum(kernel_drops(sock) for sock in socks)

    async def _run_feeds(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The feeds, cancelled by stop(); started with the list of their addresses.
        The channel closes when they have all ended (stdin's end: once every feed has
        ended, the probe stops; a listener never ends)."""
        ended: list[str] = []
        async with send, trio.open_nursery() as nursery:

            async def cancel_on_stop() -> None:
                await self._stop.wait()
                nursery.cancel_scope.cancel(reason="stop")

            async def run_one(
                feed: Feed, send: SendEnd[Batch], *, task_status: trio.TaskStatus[Any]
            ) -> None:
                async with send:
                    await feed.run(send, task_status=task_status)
                ended.append(feed.name)
                if len(ended) == len(self.feeds):
                    nursery.cancel_scope.cancel(reason="feeds ended")

            nursery.start_soon(cancel_on_stop, name="feeds-stop")
            addresses = []
            for feed in self.feeds:
                runner = partial(run_one, feed, send.clone())
                addresses.append(await nursery.start(runner, name=f"feed:{feed.name}"))
            task_status.started(addresses)
        self._feed_done.set()
        if not self._stop.is_set():
            self.stop(f"feed {', '.join(ended)} ended")

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stop(); deliver everything accepted before returning."""
        props = self.props
        self.started = trio.current_time()
        sink = make_sink(props)
        spool = (
            Spool(spool_path(props, create=True), props.MaxSAFFileSize)
            if props.StoreAndForward and props.SinkType != "stdout"
            else None
        )
        # Bounded in batches and in bytes: a burst of large datagrams cannot queue GiBs.
        feed_send, feed_recv = open_bounded_channel(props.QueueSize, props.QueueBytes, batch_bytes)
        sink_send, sink_recv = open_bounded_channel(props.QueueSize, props.QueueBytes, items_bytes)
        flush_send = sink_send.clone()
        link = None
        observer: PairObserver | None = None
        if props.Mode == "standard":
            self.metrics.set_role("standard", True)
            await flush_send.aclose()
        else:
            self.driver, link, observer = build_driver(
                props,
                self.metrics,
                flush_send,
                self.rules_digest,
                self._on_role,
                feed_idle=lambda: self._pipeline_idle(feed_recv),
            )
            self.gate = self.processor.gate = self.driver
            machine = self.driver.machine
            # A sync (or a reload on either side) can end a drift: follow the machine.
            self.metrics.config_drift.set_function(lambda: 1 if machine.config_drift else 0)
            for cause in CAUSES:
                self.metrics.peer_problem.labels(cause=cause).set_function(
                    partial(self._has_problem, cause)
                )
        runner = SinkRunner(
            sink, self.metrics, self.gate.delivered, spool,
            sync=props.SinkSync, sync_interval=props.SinkSyncInterval,
            batch_gap=props.AckInterval / 2,
            check_every=check_interval(props.SinkFailover),
        )
        self.runner = runner
        runner.on_spool_full = lambda dropped: self.send_self_event(
            f"Spool full: dropped the {dropped} oldest alerts (MaxSAFFileSize)"
        )
        if self.driver is not None:
            runner.on_health = self.driver.sink_state
            runner.on_verified = self.driver.sink_verified
            runner.covered = self.driver.covered_by_peer
            runner.spool_gate = self.driver.spool_replay
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._watch_signals, name="signals")
                outer.start_soon(self._watch_rules_file, name="rules-watch")
                outer.start_soon(self.notifier.run, name="notify")
                control = socket_path(props.Name, props.ControlSocket, create=True)
                handler = make_handler(
                    self.status,
                    self._operator_mode if self.driver else None,
                    lambda: self.reload_rules("probepair sync"),
                )
                on_control_error = self.metrics.control_errors.labels  # by reason
                await outer.start(
                    partial(
                        serve_control,
                        control,
                        handler,
                        on_error=lambda reason: on_control_error(reason=reason).inc(),
                    )
                )
                self.addresses["control"] = control
                if props.MetricsPort:
                    host, port = await outer.start(
                        serve_metrics,
                        self.metrics,
                        props.MetricsAddress,
                        props.MetricsPort,
                        self.status,
                        self.rules_archive,
                        EndpointAuth(
                            props.SharedSecret.encode(),
                            read_metrics_token(props),
                            self.wall_clock,
                        ),
                    )
                    self.addresses["metrics"] = f"{host}:{port}"
                async with trio.open_nursery() as pipeline:
                    pipeline.start_soon(runner.run, sink_recv, name="sink")

                    async def process() -> None:
                        async with sink_send, feed_recv:
                            await self.processor.run(feed_recv, sink_send)
                        if observer is not None:
                            # No takeover flush can come any more: let the runner finish.
                            await observer.close_flush()

                    pipeline.start_soon(process, name="rules")
                    pipeline.start_soon(self._self_events, feed_send.clone(), name="self-events")
                    feed_addresses = await pipeline.start(self._run_feeds, feed_send)
                    feed_bound_at = trio.current_time()
                    # Every feed's, comma-separated in Feeds order (one feed: as before).
                    self.addresses["feed"] = ",".join(map(self._format, feed_addresses))
                    if self.driver is not None:
                        self.readiness = self._readiness(self.driver)
                        self.metrics.ready.set(0 if props.Mode == "slave" else 1)
                        outer.start_soon(self.readiness.run, name="readiness")
                    if self.window is not None and self.driver is not None:
                        machine = self.driver.machine
                        gate = machine.failback
                        self.metrics.failback_window_open.set_function(
                            lambda: 1 if gate.window_open else 0
                        )
                        await outer.start(
                            drive_window, machine.window_changed, self.window, self.wall_clock
                        )
                    if link is not None and self.driver is not None:
                        # Only now that the feed is bound may we beat: a returning master's
                        # first heartbeat stops the active slave forwarding, so every event
                        # from then on must reach this probe too. The slave's feed may
                        # still hold up to BatchLatency of datagrams read before our first
                        # heartbeat (and held, not forwarded, after it): so our feed must
                        # have been bound that long before we beat (a time condition on
                        # the peer's feed, which no event here can signal).
                        await trio.sleep_until(feed_bound_at + props.BatchLatency / 1000.0)
                        host, port = await outer.start(link.serve)
                        self.addresses["heartbeat"] = f"{host}:{port}"
                        await outer.start(self.driver.run)
                    self._count_kernel_drops()
                    self._ready("READY " + " ".join(f"{k}={v}" for k, v in self.addresses.items()))
                    task_status.started(self.addresses)
                m = self.metrics
                logger.info(
                    "drained: %d events received, %d alerts delivered, %d spool bytes",
                    m.count("probepair_events_received_total"),
                    m.count("probepair_events_forwarded_total"),
                    m.count("probepair_spool_bytes"),
                )
                if self.driver is not None:
                    # Everything is delivered; let the last deliveries be acked to the peer
                    # (the driver still runs), so it does not send them again on takeover.
                    # The driver sends them within AckInterval (a send that fails counts
                    # as sent: the peer is gone); the old fixed wait is the bound.
                    with trio.move_on_after(2 * props.AckInterval):
                        await self.driver.acks_sent()
                outer.cancel_scope.cancel(reason="pipeline drained")
        finally:
            if spool is not None:
                spool.close()

    @staticmethod
    def _format(address: object) -> str:
        if isinstance(address, tuple):
            return f"{address[0]}:{address[1]}"
        return str(address)


async def run_probe(
    props: Props,
    *,
    wall_clock: Callable[[], float],
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Build and run one probe (the CLI's ``run``)."""
    probe = Probe(props, wall_clock=wall_clock)
    await probe.run(task_status=task_status)
