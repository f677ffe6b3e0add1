"""NATS JetStream sink: each alert a message, ``Nats-Msg-Id`` = its event key.

Delivery means stored: an alert counts as delivered (and is acked to the peer probe)
only when JetStream's publish ack for it arrives, which the stream leader sends once the
message is on a quorum of its replicas. The stream drops a second publish with a
``Nats-Msg-Id`` it saw within its duplicate window, so a takeover's flush, a replayed
spool chunk or a retried batch is stored once (the ack says ``duplicate``).

Pipelining: every alert of a batch is published at once, all with one reply subject
for the batch (a wildcard subscription takes the acks); the batch is delivered when as
many acks came back, failed when one of them is an error or they do not all arrive
within ``ACK_TIMEOUT``. A failed batch is retried or spooled whole by the runner: the
alerts the stream already stored come back as duplicates, harmless within the window.

Under trio: nats-py is asyncio-only. It runs on its own asyncio event loop in one
thread (trio's ``start_thread_soon``); trio hands each batch over with
``run_coroutine_threadsafe`` and sleeps until the batch's future is done. The thread's
lifetime is the sink's ``lifetime()`` block, which ``SinkRunner.run`` enters around
everything it does: the block's exit, however it comes (drained, cancelled, an error),
closes the connection and stops and joins the thread, each bounded (``CLOSE_TIMEOUT``,
``STOP_TIMEOUT``), so no thread outlives the nursery the runner's task runs in. Measured
against trio-asyncio with this same publisher (``bench/nats_bridge.py``, R1 stream,
loaded 2-core machine): the thread is as fast or a little faster (26k vs 23k alerts/s at
batches of 16, 55k vs 47k/s at 1024; the runs overlap within their noise). Both need a
block held around the runner (``lifetime()`` here, ``open_loop()`` there); the thread
wins on what that block is: a sink's own, that nothing outside this module knows is
asyncio, where trio-asyncio replaces asyncio's event loop policy for the whole process
when imported.

The duplicate window is a promise with a limit: a resend older than the window (a spool
replayed after a long outage) would be stored twice. The sink logs a warning when it
delivers again after an outage longer than the stream's window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

import orjson
import trio

from probepair.config.redact import redact_credentials
from probepair.errors import ConfigError, SinkError
from probepair.events import Item
from probepair.sinks.asyncbridge import LoopThread
from probepair.sinks.runner import BACKOFF_MAX

if TYPE_CHECKING:
    from probepair.config.props import Props

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds a batch waits for its publish acks before it fails (and is spooled). Acks
# normally take milliseconds; a stream whose leader died gets no leader for a few
# seconds, and waiting that long would back up the pipeline (QueueSize batches, ~2.5 s
# at 2,000 events/s) into the feed, where a UDP socket drops. Spool instead.
ACK_TIMEOUT: Final = 1.0
CONNECT_WAIT: Final = 2.0  # seconds open() waits for a first connection
PUBLISH_WAIT: Final = 0.5  # seconds a batch waits for a (re)connection before it fails
RECONNECT_WAIT: Final = 0.5  # seconds between two reconnect rounds over the server list
PENDING_BYTES: Final = 16 << 20  # client buffer: a full runner batch (4096 alerts) many times
# The stream lookup/creation (JetStream API): short, for the same reason as ACK_TIMEOUT;
# when the API does not answer (its meta leader is being elected) publishing goes on and
# the lookup is tried again STREAM_RETRY seconds later.
STREAM_TIMEOUT: Final = 1.0
STREAM_RETRY: Final = 10.0
# Seconds the sink's lifetime waits at its end: for the connection to close (when the
# runner's aclose was not reached), then for the asyncio thread to stop.
CLOSE_TIMEOUT: Final = 2.0
LOG_INTERVAL: Final = 10.0  # seconds between two logged client errors (connection refused ...)
DEFAULT_TABLE: Final = "alerts.status"  # a target table that adds no subject token
_TABLE_MARK: Final = b'"Table":'
_TOKEN_BAD: Final = re.compile(r"[^A-Za-z0-9_\-]")
_SUBJECT: Final = re.compile(r"^[^\s.*>]+(\.[^\s.*>]+)*$")
_STREAM: Final = re.compile(r"^[^\s.*>/\\]+$")


def parse_servers(url: str) -> list[str]:
    """The server URLs of ``SinkUrl``: ``nats://`` or ``tls://``, comma-separated.

    Raises:
        ConfigError: naming SinkUrl and the entry that is not a NATS server URL.
    """
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ConfigError("sink nats", "SinkUrl", "SinkType 'nats' needs nats://host:port")
    for server in servers:
        try:
            parts = urlsplit(server)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ConfigError(
                "sink nats",
                "SinkUrl",
                "expected nats://host:port or tls://host:port, "
                f"got {redact_credentials(server)!r}",
            )
        del port  # parsed only to reject a port that is not a number
    return servers


def subject_token(table: str) -> str:
    """A rules target's table as one subject token (``custom.vmstatus`` -> ``custom_vmstatus``)."""
    return _TOKEN_BAD.sub("_", table) or "_"


class _Batch:
    """The acks one published batch is waiting for."""

    __slots__ = ("duplicates", "future", "left")

    def __init__(self, count: int, future: asyncio.Future[int]) -> None:
        self.left = count
        self.duplicates = 0
        self.future = future


class Publisher:
    """The asyncio side: one NATS connection, the stream, pipelined publishes.

    Every method runs on the publisher's asyncio loop (the bridge's thread).
    """

    def __init__(
        self,
        props: Props,
        servers: list[str],
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Log rate limits and the stream lookup's retry interval only: no protocol timer.
        self._clock = clock
        self.servers = servers
        self.subject = props.SinkSubject
        self.stream = props.SinkStream
        self.replicas = props.SinkReplicas
        self.window = props.SinkDedupWindow
        self.creds = props.SinkCredentialsFile
        self.client_name = f"probepair-{props.Name}"
        self.name = name
        self.stream_window: float | None = None  # the stream's window, once looked up
        self._nc: Any = None  # nats.aio.client.Client (nats-py is untyped)
        self._connecting: asyncio.Task[None] | None = None
        self._reply = ""
        self._batches: dict[int, _Batch] = {}
        self._next_batch = 0
        self._subjects: dict[str, str] = {}
        self._last_log = -LOG_INTERVAL
        self._closing = False
        self._lookup_after = -STREAM_RETRY

    # -- connection ---------------------------------------------------------------------

    def _log_limited(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            logger.warning(message, *args)

    async def _on_error(self, exc: Exception) -> None:
        self._log_limited("%s: %s", self.name, exc or type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            logger.warning("%s: disconnected, reconnecting", self.name)

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        where = f"{url.hostname}:{url.port}" if url is not None else "?"
        logger.warning("%s: reconnected to %s", self.name, where)

    async def _connect(self) -> None:
        import nats

        wants_tls = any(s.startswith("tls:") for s in self.servers)
        tls = ssl.create_default_context() if wants_tls else None
        self._nc = await nats.connect(
            self.servers,
            name=self.client_name,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # forever: the runner spools meanwhile
            reconnect_time_wait=RECONNECT_WAIT,
            connect_timeout=2,
            pending_size=PENDING_BYTES,
            tls=tls,
            user_credentials=self.creds or None,
        )
        # One wildcard subscription takes the acks of every batch (reply <prefix>.<batch>).
        self._reply = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._reply + "*", cb=self._on_ack)

    async def connected(self, wait: float) -> bool:
        """Start connecting (in the background, for ever) and wait up to ``wait`` s.

        True once connected *and* subscribed to the acks' inbox.

        Raises:
            SinkError: the connection attempt failed for good (a bad .creds file ...);
                the next call starts a new one.
        """
        task = self._connecting
        if task is None or (
            task.done() and (task.cancelled() or (self._nc is not None and self._nc.is_closed))
        ):
            task = self._connecting = asyncio.get_running_loop().create_task(self._connect())
        if not task.done():
            await asyncio.wait([task], timeout=wait)
        if not task.done() or task.cancelled():
            return False
        exc = task.exception()
        if exc is not None:
            self._connecting = None
            raise SinkError(self.name, f"cannot connect: {exc!r}")
        return self._nc is not None and bool(self._nc.is_connected)

    async def check(self, wait: float) -> None:
        """Connected, and JetStream answers for the account (``account_info``): what a
        publish needs, without publishing.

        Raises:
            SinkError: not connected within ``wait``, or JetStream does not answer.
        """
        if not await self.connected(wait):
            raise SinkError(self.name, "not connected")
        js = self._nc.jetstream(timeout=STREAM_TIMEOUT)
        try:
            await js.account_info()
        except Exception as exc:  # nats-py raises unrelated types; all mean "not now"
            raise SinkError(self.name, f"JetStream does not answer: {exc!r}") from None

    async def ensure_stream(self) -> None:
        """Look the stream up, or create it with SinkReplicas and SinkDedupWindow.

        Raises:
            SinkError: the stream does not exist and cannot be created.
        """
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        js = self._nc.jetstream(timeout=STREAM_TIMEOUT)
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream,
                subjects=[self.subject, self.subject + ".>"],
                num_replicas=self.replicas,
                duplicate_window=self.window,
            )
            try:
                info = await js.add_stream(config)
            except Exception as exc:  # nats-py raises unrelated types; all mean "not now"
                raise SinkError(
                    self.name, f"cannot create stream {self.stream!r}: {exc!r}"
                ) from None
            logger.warning(
                "%s: created stream %s (%d replicas, duplicate window %gs)",
                self.name,
                self.stream,
                self.replicas,
                self.window,
            )
        window = float(info.config.duplicate_window or 0.0)
        replicas = int(info.config.num_replicas or 1)
        if window != self.window or replicas != self.replicas:
            logger.warning(
                "%s: stream %s has %d replicas and a duplicate window of %gs "
                "(SinkReplicas %d, SinkDedupWindow %gs apply only to a stream the sink creates)",
                self.name,
                self.stream,
                replicas,
                window,
                self.replicas,
                self.window,
            )
        self.stream_window = window

    async def _look_up_stream(self) -> None:
        """ensure_stream() once; when the API does not answer, publish meanwhile."""
        now = self._clock()
        if self.stream_window is not None or now < self._lookup_after:
            return
        try:
            await self.ensure_stream()
        except SinkError:
            raise
        except Exception as exc:  # a timeout, "JetStream not available" ...: try later
            self._lookup_after = now + STREAM_RETRY
            self._log_limited("%s: stream %s lookup: %r; publishing", self.name, self.stream, exc)

    # -- publishing ---------------------------------------------------------------------

    def subject_of(self, payload: bytes) -> str:
        """SinkSubject, plus ``.<Table>`` when the alert names a target table."""
        if _TABLE_MARK not in payload:
            return self.subject
        try:
            table = orjson.loads(payload).get("Table")
        except (orjson.JSONDecodeError, AttributeError):
            return self.subject
        if not isinstance(table, str) or not table or table == DEFAULT_TABLE:
            return self.subject
        subject = self._subjects.get(table)
        if subject is None:
            subject = self._subjects[table] = f"{self.subject}.{subject_token(table)}"
        return subject

    async def _on_ack(self, msg: Any) -> None:
        batch = self._batches.get(int(msg.subject[len(self._reply) :]))
        if batch is None or batch.future.done():
            return  # a late ack of a batch that timed out (and is retried whole)
        data: bytes = msg.data
        error = ""
        if not data:
            status = (msg.headers or {}).get("Status", "")
            error = f"no stream answers on {self.subject!r} (status {status or '?'})"
        elif b'"error"' in data:
            err = orjson.loads(data).get("error", {})
            error = f"JetStream refused a message: {err.get('description', err)}"
        elif b'"duplicate"' in data and orjson.loads(data).get("duplicate"):
            batch.duplicates += 1  # the server writes '"duplicate": true' (with a space)
        if error:
            batch.future.set_exception(SinkError(self.name, error))
            return
        batch.left -= 1
        if batch.left == 0:
            batch.future.set_result(batch.duplicates)

    async def publish(self, items: list[Item]) -> int:
        """Publish ``items``, wait for every ack; the number the stream called duplicates.

        Raises:
            SinkError: not connected, an ack is an error, or acks missing after ACK_TIMEOUT.
        """
        if not await self.connected(PUBLISH_WAIT):
            shown = redact_credentials(",".join(self.servers))
            raise SinkError(self.name, f"no NATS server answers at {shown}")
        await self._look_up_stream()
        from nats.errors import Error as NatsError

        loop = asyncio.get_running_loop()
        batch_id = self._next_batch
        self._next_batch += 1
        batch = _Batch(len(items), loop.create_future())
        self._batches[batch_id] = batch
        reply = f"{self._reply}{batch_id}"
        publish = self._nc.publish
        subject = self.subject
        subject_of = self.subject_of
        try:
            for key, payload in items:
                await publish(
                    subject_of(payload) if _TABLE_MARK in payload else subject,
                    payload,
                    reply=reply,
                    headers={"Nats-Msg-Id": key.hex()},
                )
            return await asyncio.wait_for(batch.future, ACK_TIMEOUT)
        except TimeoutError:
            raise SinkError(
                self.name,
                f"{batch.left} of {len(items)} publish acks missing after {ACK_TIMEOUT:g}s",
            ) from None
        except NatsError as exc:
            raise SinkError(self.name, f"cannot publish: {exc!r}") from None
        finally:
            del self._batches[batch_id]

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


class NatsSink:
    """Publishes alerts into a JetStream stream; delivered = publish-acked."""

    def __init__(self, props: Props, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.servers = parse_servers(props.SinkUrl)
        for prop, value, pattern in (
            ("SinkSubject", props.SinkSubject, _SUBJECT),
            ("SinkStream", props.SinkStream, _STREAM),
        ):
            if not pattern.match(value):
                what = "a stream name" if prop == "SinkStream" else "a subject without wildcards"
                raise ConfigError("sink nats", prop, f"expected {what}, got {value!r}")
        self.name = f"nats:{props.SinkStream}"
        creds = props.SinkCredentialsFile
        if creds and not os.path.isfile(creds):
            raise ConfigError("sink nats", "SinkCredentialsFile", f"no such file: {creds!r}")
        resend_age = props.takeover_bound + BACKOFF_MAX
        if props.SinkDedupWindow < 2 * resend_age:
            logger.warning(
                "%s: SinkDedupWindow %gs is short: a takeover (%gs) plus the sink's longest "
                "back-off (%gs) may resend alerts older than the window, stored twice then",
                self.name,
                props.SinkDedupWindow,
                props.takeover_bound,
                BACKOFF_MAX,
            )
        self.publisher = Publisher(props, self.servers, self.name)
        self.duplicates = 0  # messages the stream had already stored (resends)
        self._wall_clock = wall_clock
        self._thread = LoopThread(f"probepair-{self.name}")
        self._failing_since: float | None = None  # wall time of this outage's first failure

    @asynccontextmanager
    async def lifetime(self) -> AsyncIterator[None]:
        """The asyncio bridge: its thread runs for this block (``SinkRunner.run`` enters
        it), and the block's exit closes the connection (when ``aclose`` was not reached)
        and joins the thread, each bounded in time."""
        async with self._thread.running():
            try:
                yield
            finally:
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await self.aclose()

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        return await self._thread.run(fn, *args)  # type: ignore[arg-type]

    def spooled_before(self, wall: float) -> None:
        """The runner found a spool from an earlier run, last written at ``wall``."""
        if self._failing_since is None or wall < self._failing_since:
            self._failing_since = wall

    def _failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = self._wall_clock()

    async def open(self) -> None:
        try:
            if not await self._call(self.publisher.connected, CONNECT_WAIT):
                shown = redact_credentials(",".join(self.servers))
                raise SinkError(self.name, f"no NATS server answers at {shown}")
        except SinkError:
            self._failed()
            raise

    async def check(self) -> None:
        try:
            await self._call(self.publisher.check, CONNECT_WAIT)
        except SinkError:
            self._failed()
            raise

    async def deliver(self, items: list[Item]) -> list[bytes]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        try:
            duplicates = await self._call(self.publisher.publish, items)
        except SinkError:
            self._failed()
            raise
        if duplicates:
            self.duplicates += duplicates
            logger.info(
                "%s: %d of %d alerts were already in the stream (resent)",
                self.name,
                duplicates,
                len(items),
            )
        if self._failing_since is not None:
            self._check_outage()
        return [key for key, _ in items]

    def _check_outage(self) -> None:
        """Warn when the alerts spooled since the outage began are older than the window."""
        assert self._failing_since is not None
        age = self._wall_clock() - self._failing_since
        self._failing_since = None
        window = self.publisher.stream_window
        if window is None:  # the stream lookup has not answered yet
            window = self.publisher.window
        if age > window:
            logger.warning(
                "%s: delivering again after %.0fs of outage, longer than stream %s's "
                "duplicate window (%gs): spooled or resent alerts the stream had stored "
                "before the outage may now be stored twice",
                self.name,
                age,
                self.publisher.stream,
                window,
            )

    async def aclose(self) -> None:
        if self._thread.loop is not None:  # else the lifetime ended: nothing is open
            await self._thread.run(self.publisher.close)
