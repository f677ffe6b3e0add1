"""UDP feed (syslog over UDP): one datagram is one record.

The receive loop drains the socket with non-blocking reads and only awaits
readability when it is empty: a plain ``await sock.recv()`` per datagram costs ~6 µs
in trio and drops half of a 150k/s flood, the drain costs ~1.1 µs (DESIGN.md).
SO_RCVBUF is raised to ``rmem_max`` (SO_RCVBUFFORCE when root) to ride out bursts.
Each datagram's sender becomes ``Event.source`` (``$PeerAddress``, ``$PeerPort``);
``datagrams`` reads them with ``recvmmsg``, so that costs what ``recv`` did.
At everyday rates the feed batches in time as well (``BatchLatency``, see
``_drain_forever``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from probepair.errors import FeedError
from probepair.events import Batch, Event, KeyMaker
from probepair.feeds.base import MAX_BATCH, MAX_BATCH_BYTES, send_batch
from probepair.feeds.datagrams import ReadBatch, Source, reader
from probepair.sockopts import raise_rcvbuf, readable_now

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

# Datagrams per batch worth gathering: a wake-up costs ~165 µs of CPU however much it
# carries (bench/cost.py), ~1.3 µs an event at 128; bigger batches only add latency.
BATCH_TARGET = 128
MIN_BATCH = 16  # datagrams a batch may hold at least: 16 x 64 KiB = MAX_BATCH_BYTES


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped for ``sock`` (its /proc/net/udp ``drops``)."""
    try:
        inode = Path(f"/proc/self/fd/{sock.fileno()}").readlink().name  # socket:[123]
        wanted = inode[len("socket:[") : -1]
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 12 and cols[9] == wanted:
                    return int(cols[12])
    except (OSError, ValueError):
        pass
    return 0


class UdpFeed:
    """Datagrams on ``FeedAddress:FeedPort``."""

    def __init__(
        self,
        props: Props,
        wall_clock: Callable[[], float],
        *,
        keys: KeyMaker | None = None,
        index: int = 0,
    ) -> None:
        """``keys``: the probe's one key maker, shared by its feeds (``make_feeds``);
        ``index``: this feed's place in ``Feeds`` (``Event.feed``)."""
        self.name = f"udp:{props.FeedAddress}:{props.FeedPort}"
        self._address = (props.FeedAddress, props.FeedPort)
        self._keys = keys if keys is not None else KeyMaker(props.KeyWindow)
        self._index = index
        self._wall_clock = wall_clock
        self._rcvbuf = props.FeedRcvBuf
        self._latency = props.BatchLatency / 1000.0  # seconds
        self._held: list[bytes] = []
        self.socket: socket.socket | None = None
        self.batched = True  # recvmmsg where the platform has it (tests turn it off)
        self._read: ReadBatch = lambda raws, sources, limit: True  # set by run()

    def idle(self) -> bool:
        """True if nothing is unread in the socket nor read and held for a batch, now.

        A fresh non-blocking look, never a remembered state: a probe woken from a stall
        has a full socket although this task was waiting when it stopped. The failover
        machine claims IDLE to the peer only on this (which lets the standby fill gaps).
        """
        sock = self.socket
        if sock is None or self._held:
            return False
        return not readable_now(sock)

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        with sock:
            sock.setblocking(False)
            if self._rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
            else:
                raise_rcvbuf(sock)
            try:
                sock.bind(self._address)
            except OSError as exc:
                raise FeedError(self.name, f"cannot bind: {exc.strerror}") from None
            self.socket = sock
            self.name = "udp:{}:{}".format(*sock.getsockname()[:2])
            task_status.started(sock.getsockname()[:2])
            await self._drain_forever(sock, send)

    async def _drain_forever(self, sock: socket.socket, send: SendEnd[Batch]) -> None:
        # The loop per datagram is only read + rstrip + append (datagrams.reader):
        # keys and Events are made per batch (KeyMaker.keys), which halves the feed's
        # per-event cost.
        #
        # Batching in time (BatchLatency, issue 13): at everyday rates datagrams come
        # one at a time, and handing each on alone wakes every stage of the pipeline
        # per event (~100 µs of CPU an event at 1k/s). Instead the socket is the
        # buffer: after a drain that emptied it, the feed sleeps for ``latency`` and
        # drains again, so whatever arrived meanwhile (it waited at most ``latency``)
        # goes on as one batch, one wake-up per batch. While windows bring several
        # datagrams the feed keeps polling like that; once one brings a single datagram
        # or none, it waits for readability again (an idle probe costs nothing), reads
        # what is there and, unless that is a backlog (a burst, a stall: drained and
        # handed on at once), waits ``latency`` for company. At higher rates the
        # window shrinks to what gathers BATCH_TARGET datagrams. A socket that still
        # holds datagrams after a drain (a burst, a backlog) is drained again at once:
        # floods are batched by size, as before. Only this task sleeps: heartbeats,
        # failover timers, acks and takeover flushes run meanwhile.
        #
        # What a window brought is everything read between finding the socket empty
        # (``opened_at``: the feed began to sleep, or woke from idle) and finding it
        # empty again: ``gathered`` datagrams over all the drains of up to ``count``
        # each, in ``drained_at - opened_at``. Both the rate and the idle check use
        # that whole count. Taken from the last drain alone (a short remainder after
        # MAX_BATCH-sized ones), a window at 100k/s snapped back towards ``latency``
        # or even to idle, the socket queued a full window each time (1-2 MB) and
        # the kernel dropped at 100-130k/s.
        read = reader(sock, batched=self.batched)
        self._read = read
        keys = self._keys.keys
        index = self._index
        now = trio.current_time
        wall = self._wall_clock
        latency = window = self._latency
        held: list[bytes] = []  # read on waking from idle, waiting out the window
        held_from: list[Source] = []  # their senders
        count = MAX_BATCH  # datagrams a batch may hold: fewer when they are long
        gathered = 0  # datagrams read since opened_at, over every drain
        opened_at = now()  # when the socket was last found empty and the feed waited
        while True:
            raws, held = held, []
            sources, held_from = held_from, []
            self._held = held
            empty = read(raws, sources, max(0, count - len(raws)))
            drained_at = now()
            gathered += len(raws)
            if raws:
                # Long datagrams make short batches (sized from the last batch, so the
                # drain stays recv + append): about MAX_BATCH_BYTES a batch (issue 9).
                size = sum(map(len, raws)) + 1
                count = max(MIN_BATCH, min(MAX_BATCH, MAX_BATCH_BYTES * len(raws) // size))
                received = wall()
                batch = [
                    Event(raw, key, received, {}, False, source, index)
                    for raw, key, source in zip(
                        raws, keys(raws, drained_at), sources, strict=True
                    )
                ]
                try:
                    # No schedule point here: the sleep or checkpoint below is one, and
                    # it saves the scheduler a round per batch.
                    send.send_nowait(batch)
                except trio.WouldBlock:
                    await send_batch(send, batch)
            if not empty:
                await trio.lowlevel.checkpoint()
                continue
            if not latency:
                gathered = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            if gathered < 2:
                await trio.lowlevel.wait_readable(sock)
                drained_at = now()
                window = latency
                backlog = not read(held, held_from, count)
            else:
                # The last window brought ``gathered`` datagrams in the time since
                # ``opened_at`` (the sleep and the drains): the next one need only be
                # long enough for BATCH_TARGET at that rate (never longer than
                # ``latency``). Waiting for more would add latency, not save CPU.
                window = min(latency, BATCH_TARGET * (drained_at - opened_at) / gathered)
                backlog = False
            gathered, opened_at = 0, drained_at
            if backlog:
                continue  # a backlog (a burst, a stall): no reason to wait
            try:
                await trio.sleep_until(drained_at + window)
            except trio.Cancelled:
                # Stopping: what was read, and what the kernel queued during the
                # window, is accepted too.
                await self._last_batch(send, held, held_from)
                raise

    async def _last_batch(
        self, send: SendEnd[Batch], raws: list[bytes], sources: list[Source]
    ) -> None:
        self._read(raws, sources, MAX_BATCH - len(raws))
        if raws:
            received = self._wall_clock()
            keys = self._keys.keys(raws, trio.current_time())
            index = self._index
            await send_batch(send, [
                Event(r, k, received, {}, False, s, index)
                for r, k, s in zip(raws, keys, sources, strict=True)
            ])
