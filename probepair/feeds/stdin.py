"""stdin feed: one record per line; the probe stops cleanly at end of input."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from probepair.events import Batch, KeyMaker
from probepair.feeds.base import send_batch
from probepair.feeds.lines import LineSplitter

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

READ_SIZE = 65536


class StdinFeed:
    """Reads file descriptor 0 without blocking the trio loop."""

    def __init__(
        self,
        props: Props,
        wall_clock: Callable[[], float],
        *,
        keys: KeyMaker | None = None,
        index: int = 0,
    ) -> None:
        self.name = "stdin"
        self._keys = keys if keys is not None else KeyMaker(props.KeyWindow)
        self._index = index
        self._wall_clock = wall_clock

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        splitter = LineSplitter(self._keys, trio.current_time, self._wall_clock, self._index)
        task_status.started("stdin")
        if os.fstat(0).st_mode & 0o170000 == 0o100000:  # regular file: reads never block
            reader: Any = None
        else:
            reader = trio.lowlevel.FdStream(os.dup(0))
        try:
            while True:
                if reader is None:
                    chunk = os.read(0, READ_SIZE)
                    await trio.lowlevel.checkpoint()
                else:
                    chunk = await reader.receive_some(READ_SIZE)
                if not chunk:
                    batch = splitter.finish()
                    if batch:
                        await send_batch(send, batch)
                    return
                batch = splitter.feed(chunk)
                if batch:
                    await send_batch(send, batch)
        finally:
            if reader is not None:
                with trio.CancelScope(shield=True):
                    await reader.aclose()
