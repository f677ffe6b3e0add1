"""The feed protocol and the registry of built-in feeds.

A feed sends *batches* (lists) of Events: at 100k events/s a channel send per event
would cost more than the rest of the pipeline. A feed blocks when the channel is full
(back-pressure): a UDP feed then leaves datagrams in the kernel buffer, whose overflow
the kernel counts (``probepair_feed_kernel_drops_total``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from probepair.events import Batch
    from probepair.pipeline.channels import SendEnd

MAX_BATCH = 512  # records per channel send: amortises the send, keeps latency < 1 ms
MAX_BATCH_BYTES = 1 << 20  # about the most raw bytes in a batch (512 x 64 KiB would be 32 MiB)


class Feed(Protocol):
    """A source of events; ``run`` returns when the source ends (stdin EOF)."""

    name: str

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = ...,
    ) -> None: ...


STOP_GRACE = 5.0  # seconds a cancelled feed may wait to hand over its last batch


async def send_batch(send: SendEnd[Batch], batch: Batch) -> None:
    """Send ``batch``; if the feed is being stopped meanwhile, still hand it over.

    A datagram read from the socket is accepted: a clean stop (which cancels the feed)
    must not lose the batch that was waiting for room in the channel. The retry is
    shielded and bounded, then the cancellation goes on.
    """
    try:
        await send.send(batch)
    except trio.Cancelled:
        with trio.move_on_after(STOP_GRACE, shield=True):
            await send.send(batch)
        raise
