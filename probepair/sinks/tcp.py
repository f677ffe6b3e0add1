"""TCP sink: newline-delimited JSON to ``SinkAddress`` (host:port).

A batch counts as delivered once the kernel accepted all of it; a broken connection
raises SinkError and the next delivery reconnects (the runner backs off and spools).
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING

import trio

from probepair.errors import SinkError
from probepair.events import Item

if TYPE_CHECKING:
    from probepair.config.props import Props

CONNECT_TIMEOUT = 5.0  # seconds
SEND_TIMEOUT = 10.0  # seconds for one batch; a stuck receiver becomes a SinkError


def split_address(address: str, what: str = "SinkAddress") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SinkError(f"tcp:{address}", f"{what} must be host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class TcpSink:
    def __init__(self, props: Props) -> None:
        self.name = f"tcp:{props.SinkAddress}"
        self._host, self._port = split_address(props.SinkAddress)
        self._stream: trio.SocketStream | None = None

    async def open(self) -> None:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                self._stream = await trio.open_tcp_stream(self._host, self._port)
        except (OSError, trio.TooSlowError) as exc:
            raise SinkError(self.name, f"cannot connect: {exc}") from None

    async def deliver(self, items: list[Item]) -> list[bytes]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []  # b"\n".join([]) + b"\n" would write an empty line
        if self._stream is None:
            await self.open()
        assert self._stream is not None
        data = b"\n".join([payload for _, payload in items]) + b"\n"
        try:
            with trio.fail_after(SEND_TIMEOUT):
                await self._stream.send_all(data)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            trio.TooSlowError,
        ) as exc:
            await self._drop()
            raise SinkError(self.name, f"connection lost: {exc or type(exc).__name__}") from None
        return [key for key, _ in items]

    async def check(self) -> None:
        """Connected, and the collector has not closed the connection (an idle standby
        would not notice otherwise until its first delivery)."""
        if self._stream is not None:
            sock = self._stream.socket
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
            if readable:
                try:
                    data = await sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    await self._drop()
                    raise SinkError(self.name, "connection closed by the collector")
        if self._stream is None:
            await self.open()
        await trio.lowlevel.checkpoint()

    async def _drop(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with trio.move_on_after(1, shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        await self._drop()
