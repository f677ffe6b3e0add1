"""Loopback helpers for every kind of test: a port that was free, a GET by URL.

One copy of each: the e2e pair tests, the server fixtures (tests/servers.py,
tests/natscluster.py) and the metrics tests used to carry their own.
"""

from __future__ import annotations

import socket

import httpx
import trio


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out for ``kind`` on ``host`` (closed again at once).

    Pair tests need ports before the processes start (each probe names the other's
    heartbeat port) and across a restart (the feeder keeps sending to the same port);
    MetricsPort 0 means "off", not "any".
    """
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """``free_port`` for TCP."""
    return free_port(socket.SOCK_STREAM, host)


async def fetch(url: str) -> httpx.Response:
    """``GET url`` with httpx (5 s timeout), on a worker thread."""

    def get() -> httpx.Response:
        with httpx.Client(timeout=5.0) as client:
            return client.get(url)

    return await trio.to_thread.run_sync(get)
