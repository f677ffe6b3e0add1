"""An asyncio event loop on a thread of its own, owned by a trio block, and a way for
trio to await what runs on it: for a library that runs on asyncio only (nats-py, the
nats sink). The thread lives exactly as long as ``LoopThread.running()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import trio

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT: Final = 2.0  # seconds the exit of running() waits for the thread to end


class LoopThread:
    """An asyncio event loop on its own thread, and a way for trio to await on it.

    The thread lives exactly as long as an ``async with running()`` block: started on
    entry, and on exit (however the block ends) the loop is stopped, its tasks cancelled
    and run to their end, the loop closed, and the exit waits for all that, at most
    ``STOP_TIMEOUT`` seconds (shielded: a cancelled probe still joins its thread).

    ``trio.lowlevel.start_thread_soon`` is the primitive ``trio.to_thread.run_sync`` is
    built on; ``to_thread`` itself would need a task blocked in it for the whole
    lifetime, that is a nursery around the ``yield``, and a nursery there turns every
    exception leaving the sink's block into an ExceptionGroup. The thread is one of
    trio's worker threads, named after the sink while the loop runs; once the loop has
    ended it goes back to trio's pool under its own name, idle, as after any
    ``to_thread`` call.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the loop's thread for the block's duration (see the class docstring)."""
        if self.loop is not None:
            raise RuntimeError(f"{self.name}: the asyncio loop is running already")
        # The class, not asyncio.new_event_loop(): a library that replaced the event loop
        # policy (trio-asyncio does on import) must not decide which loop this thread runs.
        loop = asyncio.SelectorEventLoop()
        ended = trio.Event()
        failed: list[Exception] = []
        token = trio.lowlevel.current_trio_token()

        def run() -> None:
            try:
                loop.run_forever()
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:  # let them see their cancellation (nats-py's reader, a reconnect)
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception as exc:  # reported by the trio side, which has a logger task
                failed.append(exc)
            finally:
                loop.close()

        def deliver(_: object) -> None:
            try:
                token.run_sync_soon(ended.set)
            except trio.RunFinishedError:
                pass  # trio ended first: nobody waits for the thread

        trio.lowlevel.start_thread_soon(run, deliver, name=self.name)
        self.loop = loop
        try:
            yield
        finally:
            self.loop = None
            with contextlib.suppress(RuntimeError):  # closed: the thread ended already
                loop.call_soon_threadsafe(loop.stop)
            with trio.move_on_after(STOP_TIMEOUT, shield=True):
                await ended.wait()
            if not ended.is_set():
                logger.error(
                    "%s: the asyncio thread did not stop within %gs; left to end on its own",
                    self.name,
                    STOP_TIMEOUT,
                )
            elif failed:
                logger.error("%s: the asyncio thread failed: %r", self.name, failed[0])

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """``await fn(*args)`` on the loop; cancelling the trio side cancels it there.

        Raises:
            RuntimeError: outside ``running()`` (a programming error, not a sink failure).
        """
        if self.loop is None:
            raise RuntimeError(f"{self.name}: used outside its lifetime()")
        cf: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        return await wait_future(cf)


async def wait_future(cf: concurrent.futures.Future[T]) -> T:
    """The result of a future completed by another thread, awaited in trio."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # trio ended first: nobody is waiting

    cf.add_done_callback(wake)
    try:
        await done.wait()
    finally:
        if not cf.done():
            cf.cancel()  # cancels the coroutine on its loop too
    return cf.result()
