"""TCP feed: newline-delimited records from any number of clients."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from probepair.errors import FeedError
from probepair.events import Batch, KeyMaker
from probepair.feeds.base import send_batch
from probepair.feeds.lines import LineSplitter

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

READ_SIZE = 65536


class TcpFeed:
    """Listens on ``FeedAddress:FeedPort``; each connection is read line by line."""

    def __init__(self, props: Props, wall_clock: Callable[[], float]) -> None:
        self.name = f"tcp:{props.FeedAddress}:{props.FeedPort}"
        self._host = props.FeedAddress
        self._port = props.FeedPort
        # One key maker for all clients: identical lines from two senders are numbered
        # in arrival order, as on the peer probe.
        self._keys = KeyMaker(props.KeyWindow)
        self._wall_clock = wall_clock

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        except OSError as exc:
            raise FeedError(self.name, f"cannot listen: {exc.strerror}") from None
        address = listeners[0].socket.getsockname()[:2]
        self.name = "tcp:{}:{}".format(*address)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, partial(self._client, send), listeners)
            task_status.started(address)

    async def _client(self, send: SendEnd[Batch], stream: trio.SocketStream) -> None:
        splitter = LineSplitter(self._keys, trio.current_time, self._wall_clock)
        async with stream:
            while True:
                try:
                    chunk = await stream.receive_some(READ_SIZE)
                except trio.BrokenResourceError:
                    chunk = b""
                if not chunk:
                    batch = splitter.finish()
                    if batch:
                        await send_batch(send, batch)
                    return
                batch = splitter.feed(chunk)
                if batch:
                    await send_batch(send, batch)
