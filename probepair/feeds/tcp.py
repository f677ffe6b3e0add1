"""TCP feed: newline-delimited records from any number of clients, within bounds.

What one client, or many, can cost the probe (issue 19):

- **Descriptors.** At most ``FeedMaxConnections`` clients are served at once; one more is
  accepted and closed at once with a reset (counted in
  ``probepair_feed_connections_refused_total``, logged at most once a minute), so it
  learns at once instead of waiting in a backlog nobody serves. Before listening, the
  feed makes sure ``FeedMaxConnections + FD_RESERVE`` descriptors fit under
  ``RLIMIT_NOFILE`` (raising the soft limit up to the hard one if needed; if the hard
  limit is too low, a ``ConfigError``, exit 2): feed clients can never take the
  descriptors ``/metrics``, the control socket, the sink and the spool need. Before
  this, 1,000 idle clients under systemd's default limit of 1,024 left ``accept`` failing
  with EMFILE everywhere: ``/metrics`` and ``probepair status`` stopped answering.
- **Time.** A client that sends nothing for ``FeedIdleTimeout`` seconds is closed
  (counted in ``probepair_feed_connections_idle_closed_total``); its unterminated last
  line is a record, as at end of stream (``LineSplitter.finish``). So is the one read
  when the probe stops: what was read from a socket is accepted.
- **Memory.** A pending line or frame is at most ``lines.MAX_LINE`` (plus one read) per
  client.

Framing (issue 23, ``framing``): each connection is RFC 6587 octet-counted (its first
bytes are ``<digits> ``) or newline-framed; an octet-counted message is one event, newlines
and all. A framing error (a MSG-LEN above ``MAX_LINE``, no MSG-LEN where one is due, a
frame cut off at the end) closes that connection only, after the frames before it, and
is counted in ``probepair_feed_frames_rejected_total{reason}``.

TLS (RFC 5425, ``tls``): with ``FeedTLSCert`` every connection is a TLS server stream
(``trio.SSLStream``). The handshake holds the connection's slot for at most
``tls.HANDSHAKE_TIMEOUT`` seconds; a failed or late one closes the connection and is
counted in ``probepair_feed_tls_handshake_failures_total{reason}``. Framing runs on the
decrypted bytes, exactly as without TLS, so keys do not depend on the transport.

If ``accept`` fails with EMFILE or ENFILE anyway (descriptors used up by something
else), ``trio.serve_listeners`` logs it and tries again 100 ms later: the listener
neither spins nor ends, and connections wait in the kernel's backlog meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import socket
import struct
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from probepair.errors import ConfigError, FeedError
from probepair.events import Batch, KeyMaker
from probepair.feeds.base import send_batch
from probepair.feeds.datagrams import Source, source_of
from probepair.feeds.framing import FrameError, Framing, SyslogFramer
from probepair.feeds.lines import MAX_LINE, events_of
from probepair.feeds.tls import HANDSHAKE_TIMEOUT, handshake_failure, server_context
from probepair.metrics import Metrics

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

logger = logging.getLogger(__name__)

READ_SIZE = 65536
# Descriptors kept for everything but feed clients: stdio, trio's epoll and wake-up
# pair, the heartbeat socket, three listeners (feed, metrics, control), their clients
# (scrapes, `probepair status`), the sink's connections, the spool, the logs, rules
# reloads, NotifyCommand's pipes. About 20 are in use at start; 256 leaves room for
# the HTTP endpoint's own connection cap, and with FeedMaxConnections' default (256)
# fits systemd's default soft limit of 1,024 with half of it to spare.
FD_RESERVE: Final = 256
REFUSED_LOG_INTERVAL: Final = 60.0  # seconds between log lines about refused clients
# Seconds between two log lines about one kind of bad client (a framing error, a failed
# TLS handshake): one bad sender reconnecting in a loop must not flood the log.
BAD_CLIENT_LOG_INTERVAL: Final = 60.0
# SO_LINGER on, 0 s: close() sends a reset (no FIN handshake, no TIME_WAIT left behind).
_RESET: Final = struct.pack("ii", 1, 0)


def descriptor_limit(soft: int, hard: int, max_connections: int) -> int | None:
    """The soft RLIMIT_NOFILE to set for ``max_connections`` clients; None: ``soft`` will do.

    Raises:
        ConfigError: ``hard`` is too low for ``max_connections`` plus ``FD_RESERVE``.
    """
    needed = max_connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard == resource.RLIM_INFINITY or hard >= needed:
        return needed
    raise ConfigError(
        f"RLIMIT_NOFILE {hard}",
        "FeedMaxConnections",
        f"expected at most {max(hard - FD_RESERVE, 0)} (the open-files limit less "
        f"{FD_RESERVE} descriptors kept for the probe itself), got {max_connections}: "
        "lower it, or raise the limit (systemd: LimitNOFILE=)",
    )


def reserve_descriptors(max_connections: int) -> int:
    """Make the open-files limit hold ``max_connections`` clients and ``FD_RESERVE`` more.

    Returns:
        The soft limit now in force.

    Raises:
        ConfigError: the hard limit is too low, or the soft one cannot be raised.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = descriptor_limit(soft, hard, max_connections)
    if wanted is None:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"RLIMIT_NOFILE {soft}",
            "FeedMaxConnections",
            f"needs an open-files limit of {wanted}, and raising it failed: {exc}",
        ) from None
    logger.info("open-files limit raised from %d to %d for the tcp feed", soft, wanted)
    return wanted


class TcpFeed:
    """Listens on ``FeedAddress:FeedPort``; each connection is read line by line."""

    def __init__(
        self,
        props: Props,
        wall_clock: Callable[[], float],
        metrics: Metrics | None = None,
        *,
        keys: KeyMaker | None = None,
        index: int = 0,
    ) -> None:
        self.name = f"tcp:{props.FeedAddress}:{props.FeedPort}"
        self._host = props.FeedAddress
        self._port = props.FeedPort
        # One key maker for all clients (and, given, for all the probe's feeds):
        # identical lines from two senders are numbered in arrival order, as on the
        # peer probe.
        self._keys = keys if keys is not None else KeyMaker(props.KeyWindow)
        self._index = index
        self._wall_clock = wall_clock
        self._max = props.FeedMaxConnections
        self._idle = props.FeedIdleTimeout or math.inf
        self._metrics = metrics if metrics is not None else Metrics()
        self._metrics.feed_connections_limit.set(self._max)
        # Clients all the probe's tcp feeds may hold at once: make_feeds sets the sum,
        # so the descriptor reserve covers every listener, not just this one.
        self.clients_reserved = self._max
        self.open = 0  # clients being served
        self._refused = 0  # refused since the last log line about them
        self._refused_logged = -math.inf
        self._bad_logged: dict[str, float] = {}  # kind -> when last logged
        self._bad_held: dict[str, int] = {}  # kind -> occurrences not logged since
        # Loaded here, not in run(): a bad certificate or key stops the start (exit 2).
        self._tls = server_context(props)

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        reserve_descriptors(self.clients_reserved)
        try:
            listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        except OSError as exc:
            raise FeedError(self.name, f"cannot listen: {exc.strerror}") from None
        address = listeners[0].socket.getsockname()[:2]
        self.name = "tcp:{}:{}".format(*address)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, partial(self.serve, send), listeners)
            task_status.started(address)

    async def serve(self, send: SendEnd[Batch], stream: trio.abc.Stream) -> None:
        """Read one accepted connection until it ends, idles out or the feed stops; or
        refuse it at once if ``FeedMaxConnections`` are open. The caller closes it."""
        # No checkpoint before the count: the check and the increment are one step.
        if self.open >= self._max:
            self._refuse(stream)
            return  # serve_listeners closes it
        self.open += 1
        self._metrics.feed_connections.inc()
        try:
            source = _source(stream)  # before TLS: the socket's peer
            if self._tls is not None:
                tls = await self._handshake(stream)
                if tls is None:
                    return  # counted; serve_listeners closes the socket
                stream = tls
            await self._read(send, stream, source)
        finally:
            self.open -= 1
            self._metrics.feed_connections.dec()

    async def _handshake(self, stream: trio.abc.Stream) -> trio.SSLStream[trio.abc.Stream] | None:
        """The TLS server stream over ``stream`` once its handshake is done; None if it
        failed or took longer than HANDSHAKE_TIMEOUT (counted, logged)."""
        assert self._tls is not None
        tls = trio.SSLStream(stream, self._tls, server_side=True, https_compatible=True)
        reason = detail = ""
        with trio.move_on_after(HANDSHAKE_TIMEOUT) as timer:
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                reason = handshake_failure(exc)
                detail = str(exc.__cause__ or exc)
        if timer.cancelled_caught:
            reason, detail = "timeout", f"not done within {HANDSHAKE_TIMEOUT:g}s"
        if not reason:
            return tls
        self._metrics.feed_tls_handshake_failures.labels(reason=reason).inc()
        self._bad_client(
            f"tls:{reason}",
            "feed %s: TLS handshake with %s failed (%s): %s "
            "(probepair_feed_tls_handshake_failures_total)",
            self.name, _peer(stream), reason, detail,
        )
        return None

    def _bad_client(self, kind: str, msg: str, *args: object) -> None:
        """Log a warning about one kind of bad client at most once per interval."""
        now = trio.current_time()
        if now - self._bad_logged.get(kind, -math.inf) < BAD_CLIENT_LOG_INTERVAL:
            self._bad_held[kind] = self._bad_held.get(kind, 0) + 1
            return
        self._bad_logged[kind] = now
        held = self._bad_held.pop(kind, 0)
        if held:
            msg += " (%d more since the last report)"
            args = (*args, held)
        logger.warning(msg, *args)

    def _refuse(self, stream: trio.abc.Stream) -> None:
        if isinstance(stream, trio.SocketStream):
            with contextlib.suppress(OSError):
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        self._metrics.feed_connections_refused.inc()
        self._refused += 1
        now = trio.current_time()
        if now - self._refused_logged >= REFUSED_LOG_INTERVAL:
            logger.warning(
                "feed %s: refused %d connection(s): FeedMaxConnections (%d) are open "
                "(counted in probepair_feed_connections_refused_total, logged every %gs)",
                self.name,
                self._refused,
                self._max,
                REFUSED_LOG_INTERVAL,
            )
            self._refused, self._refused_logged = 0, now

    async def _read(
        self, send: SendEnd[Batch], stream: trio.abc.Stream, source: Source | None
    ) -> None:
        framer = SyslogFramer(MAX_LINE)
        async with stream:
            try:
                while True:
                    # The idle timer covers only the wait for data, never send_batch: a
                    # client whose lines wait for room in the channel is not idle.
                    with trio.move_on_after(self._idle) as idle:
                        try:
                            chunk = await stream.receive_some(READ_SIZE)
                        except trio.BrokenResourceError:
                            chunk = b""
                    if idle.cancelled_caught:
                        self._metrics.feed_connections_idle_closed.inc()
                        logger.debug("feed %s: closed a client idle for %gs", self.name, self._idle)
                        break
                    if not chunk:
                        break
                    undecided = framer.framing is Framing.UNDECIDED
                    try:
                        payloads = framer.feed(bytes(chunk))  # no copy: a socket gives bytes
                    except FrameError as exc:
                        # Octet counting cannot find the next frame: deliver what came
                        # before, then close this connection (only this one).
                        self._rejected(exc, stream)
                        await self._deliver(send, exc.frames, source)
                        return
                    if undecided:
                        self._detected(framer)
                    await self._deliver(send, payloads, source)
            except trio.Cancelled:
                # The probe stops: the unterminated line read so far is a record too.
                # send_batch hands it over shielded (bounded) and raises Cancelled again.
                await self._deliver(send, self._finish(framer, stream), source)
                raise
            await self._deliver(send, self._finish(framer, stream), source)

    async def _deliver(
        self, send: SendEnd[Batch], payloads: list[bytes], source: Source | None
    ) -> None:
        if payloads:
            batch = events_of(
                payloads, self._keys, trio.current_time(), self._wall_clock(), source, self._index
            )
            await send_batch(send, batch)

    def _finish(self, framer: SyslogFramer, stream: trio.abc.Stream) -> list[bytes]:
        """What the end of the stream completes: an unterminated last line, or nothing
        (an octet-counted frame cut off is counted as truncated and dropped)."""
        undecided = framer.framing is Framing.UNDECIDED
        try:
            payloads = framer.finish()
        except FrameError as exc:
            self._rejected(exc, stream)
            return []
        if undecided:
            self._detected(framer)
        return payloads

    def _detected(self, framer: SyslogFramer) -> None:
        if framer.framing is not Framing.UNDECIDED:
            self._metrics.feed_framing.labels(framing=framer.framing.value).inc()

    def _rejected(self, exc: FrameError, stream: trio.abc.Stream) -> None:
        self._metrics.feed_frames_rejected.labels(reason=exc.reason).inc()
        self._bad_client(
            f"frame:{exc.reason}",
            "feed %s: closed the connection from %s: framing error (%s) at %s "
            "(probepair_feed_frames_rejected_total)",
            self.name, _peer(stream), exc.reason, exc,
        )


def _source(stream: trio.abc.Stream) -> Source | None:
    """The client's (host, port), IPv4-mapped shown as IPv4; None without a socket."""
    if isinstance(stream, trio.SocketStream):
        try:
            return source_of(stream.socket.getpeername())
        except OSError:
            return None
    return None


def _peer(stream: trio.abc.Stream) -> str:
    """The client's address for log lines ("?" for a stream without a socket)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            host, port = stream.socket.getpeername()[:2]
        except OSError:
            return "?"
        return f"{host}:{port}"
    return "?"
