"""Bounded GETs of a peer's ``/rules`` and ``/status``: a cap and a deadline before parsing.

The peer is on the network, so its answer is hostile until checked: the body is read
into one ``bytearray`` (linear, never ``bytes +=``), refused as soon as it passes
``max_bytes`` (a ``Content-Length`` over the cap is refused before reading a byte), and
the whole exchange has one deadline (``get`` keeps it; ``aget``'s caller does, with
``trio.fail_after``). httpx's own timeouts are per operation (a server
dripping one byte a second never trips them), so each read is also held to
``STALL_TIMEOUT`` and the deadline is checked after each chunk: a fetch ends within
``timeout + STALL_TIMEOUT`` whatever the server does. Nothing is parsed here.
"""

from __future__ import annotations

import time
from typing import Final

import httpx

STALL_TIMEOUT: Final = 2.0  # seconds without a byte from a peer on the same LAN: it is broken


class FetchError(Exception):
    """The GET failed; ``message`` says how (the caller adds the URL and its error type)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def _timeouts(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(min(timeout, STALL_TIMEOUT), connect=timeout)


def _check_length(response: httpx.Response, max_bytes: int) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"answer of {int(declared)} bytes, more than the {max_bytes} accepted")


def _more(body: bytearray, chunk: bytes, max_bytes: int) -> None:
    body += chunk
    if len(body) > max_bytes:
        raise FetchError(f"answer larger than {max_bytes} bytes")


def get(url: str, *, max_bytes: int, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` (blocking): its status and body.

    Raises:
        FetchError: nobody answers, no complete answer within the deadline, a body
            over ``max_bytes``, or any other HTTP failure.
    """
    # Blocking code for the CLI and worker threads: no trio clock here, so the deadline
    # is the monotonic one.
    deadline = time.monotonic() + timeout
    body = bytearray()
    try:
        with httpx.stream("GET", url, timeout=_timeouts(timeout)) as response:
            _check_length(response, max_bytes)
            for chunk in response.iter_raw():
                _more(body, chunk, max_bytes)
                if time.monotonic() > deadline:
                    raise FetchError(f"no complete answer within {timeout:g} s")
    except httpx.ConnectError:
        raise FetchError("no probe answers (is its MetricsPort set and reachable?)") from None
    except httpx.TimeoutException:
        raise FetchError(f"no complete answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"request failed: {exc}") from None
    return response.status_code, bytes(body)


async def aget(url: str, *, max_bytes: int) -> tuple[int, bytes]:
    """GET ``url`` on trio: its status and body. The caller owns the deadline
    (``trio.fail_after`` around the call); each read is held to ``STALL_TIMEOUT``.

    Raises:
        FetchError: nobody answers, a stalled read, a body over ``max_bytes``, or any
            other HTTP failure.
    """
    body = bytearray()
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(STALL_TIMEOUT)) as client,
            client.stream("GET", url) as response,
        ):
            _check_length(response, max_bytes)
            async for chunk in response.aiter_raw():
                _more(body, chunk, max_bytes)
    except httpx.ConnectError:
        raise FetchError("no probe answers (is its MetricsPort set and reachable?)") from None
    except httpx.TimeoutException:
        raise FetchError(f"no byte for {STALL_TIMEOUT:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"request failed: {exc}") from None
    return response.status_code, bytes(body)
