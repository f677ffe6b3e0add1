"""``NotifyCommand``: run an operator's command on every role change, in order.

keepalived's ``notify`` habit: the command gets the new role and the reason as its two
last arguments and in ``PROBEPAIR_ROLE`` / ``PROBEPAIR_REASON`` / ``PROBEPAIR_NAME``.
The failover driver must never wait for it, so ``notify`` only enqueues (a full queue
drops and logs); one task runs the commands one at a time, so a script sees the role
changes in the order they happened. Each run is bounded by ``timeout``: then its whole
process group is killed (a hanging script's children too). A failing command is
logged, never raised: a broken pager script must not take the probe down.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from probepair.errors import ConfigError

if TYPE_CHECKING:
    from probepair.failover import Role

logger = logging.getLogger(__name__)

NOTIFY_TIMEOUT: Final = 10.0  # seconds one command may run before it is killed
NOTIFY_QUEUE: Final = 32  # role changes waiting; more means the command is far too slow


def split_command(command: str) -> list[str]:
    """The command line as argv (shell quoting rules, no shell).

    Raises:
        ConfigError: unbalanced quotes or a trailing backslash.
    """
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise ConfigError("NotifyCommand", None, f"cannot split {command!r}: {exc}") from None


async def _kill_group(process: trio.Process) -> None:
    """Cancel delivery for run_process: SIGKILL the command's whole session."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


class Notifier:
    """Runs ``command ROLE REASON`` for each role change, one at a time.

    Args:
        command: the NotifyCommand property; '' turns notifications off.
        name: the probe's Name (``PROBEPAIR_NAME``).
        timeout: seconds before a command is killed.
        queue_size: notifications held while a command runs; beyond it they are dropped.

    Raises:
        ConfigError: ``command`` cannot be split into arguments.
    """

    def __init__(
        self,
        command: str,
        name: str,
        *,
        timeout: float = NOTIFY_TIMEOUT,
        queue_size: int = NOTIFY_QUEUE,
    ) -> None:
        self.argv = split_command(command)
        self.name = name
        self.timeout = timeout
        self.dropped = 0
        self._send, self._recv = trio.open_memory_channel[tuple[str, str]](queue_size)

    def notify(self, role: str, reason: str) -> None:
        """Queue a notification; never blocks (drops and logs when the queue is full)."""
        if not self.argv:
            return
        try:
            self._send.send_nowait((role, reason))
        except trio.WouldBlock:
            self.dropped += 1
            logger.warning(
                "NotifyCommand: queue full, not notifying role %s (%s); %d dropped so far",
                role,
                reason,
                self.dropped,
            )

    def on_role(self, old: Role, new: Role, reason: str) -> None:
        """``notify`` in the shape of ``pair.build_driver(on_role=...)``."""
        self.notify(new.value, reason)

    async def run(self) -> NoReturn:
        """Run queued notifications in order until cancelled."""
        async for role, reason in self._recv:
            await self._run_one(role, reason)
        raise AssertionError("unreachable: Notifier keeps its send channel open")

    async def _run_one(self, role: str, reason: str) -> None:
        argv = [*self.argv, role, reason]
        env = dict(
            os.environ, PROBEPAIR_ROLE=role, PROBEPAIR_REASON=reason, PROBEPAIR_NAME=self.name
        )
        with trio.move_on_after(self.timeout) as timer:
            try:
                result = await trio.run_process(
                    argv,
                    check=False,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
            except OSError as exc:
                logger.error("NotifyCommand %r cannot start: %s", argv[0], exc.strerror or exc)
                return
        if timer.cancelled_caught:
            logger.error(
                "NotifyCommand %r for role %s killed after %g s", argv[0], role, self.timeout
            )
        elif result.returncode != 0:
            logger.error(
                "NotifyCommand %r for role %s failed with exit status %d",
                argv[0],
                role,
                result.returncode,
            )
        else:
            logger.debug("NotifyCommand %r ran for role %s", argv[0], role)
