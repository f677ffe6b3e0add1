"""Bounded GETs of a peer's ``/rules`` and ``/status``: a cap and a deadline before parsing.

The peer is on the network, so its answer is hostile until checked: the body is read
into one ``bytearray`` (linear, never ``bytes +=``), refused as soon as it passes
``max_bytes`` (a ``Content-Length`` over the cap is refused before reading a byte), and
the whole exchange has one deadline (``get`` keeps it; ``aget``'s caller does, with
``trio.fail_after``). httpx's own timeouts are per operation (a server
dripping one byte a second never trips them), so each read is also held to
``STALL_TIMEOUT`` and the deadline is checked after each chunk: a fetch ends within
``timeout + STALL_TIMEOUT`` whatever the server does. Nothing is parsed here.

Given the secret, a GET is signed (``config.httpauth``: timestamp, fresh nonce, HMAC)
and a 200 answer must carry the peer's signature bound to that nonce: an answer from
anyone without the secret, or one replayed from an earlier request, is refused.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import httpx

from probepair.config.httpauth import SIGNATURE_HEADER, authorization, check_response

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


def _sign(url: str, secret: bytes, wall_clock: Callable[[], float]) -> tuple[str, dict[str, str]]:
    """A fresh nonce and the headers of a signed GET of ``url`` (none without a secret)."""
    if not secret:
        return "", {}
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    nonce = secrets.token_hex(16)
    return nonce, {
        "Authorization": authorization(secret, "GET", target, now=wall_clock(), nonce=nonce)
    }


def _check_signed(response: httpx.Response, body: bytes, secret: bytes, nonce: str) -> None:
    if not secret or response.status_code != 200:
        return  # errors (401 first of all) are not signed: the caller reports the status
    signature = response.headers.get(SIGNATURE_HEADER, "")
    if not check_response(secret, nonce, response.status_code, body, signature):
        raise FetchError(
            "the answer is not signed with SharedSecret for this request "
            "(not the peer probe, another secret, or a replayed answer): refused"
        )


def _more(body: bytearray, chunk: bytes, max_bytes: int) -> None:
    body += chunk
    if len(body) > max_bytes:
        raise FetchError(f"answer larger than {max_bytes} bytes")


def get(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    secret: bytes = b"",
    wall_clock: Callable[[], float] = time.time,
) -> tuple[int, bytes]:
    """GET ``url`` (blocking): its status and body.

    Args:
        secret: SharedSecret: sign the request and require a signed 200 answer.
        wall_clock: seconds since the epoch, for the request's timestamp.

    Raises:
        FetchError: nobody answers, no complete answer within the deadline, a body
            over ``max_bytes``, a 200 answer not signed for this request (given a
            secret), or any other HTTP failure.
    """
    # Blocking code for the CLI and worker threads: no trio clock here, so the deadline
    # is the monotonic one.
    deadline = time.monotonic() + timeout
    body = bytearray()
    nonce, headers = _sign(url, secret, wall_clock)
    try:
        with httpx.stream("GET", url, headers=headers, timeout=_timeouts(timeout)) as response:
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
    _check_signed(response, bytes(body), secret, nonce)
    return response.status_code, bytes(body)


async def aget(
    url: str,
    *,
    max_bytes: int,
    secret: bytes = b"",
    wall_clock: Callable[[], float] = time.time,
) -> tuple[int, bytes]:
    """GET ``url`` on trio: its status and body. The caller owns the deadline
    (``trio.fail_after`` around the call); each read is held to ``STALL_TIMEOUT``.

    Args:
        secret: SharedSecret: sign the request and require a signed 200 answer.
        wall_clock: seconds since the epoch, for the request's timestamp.

    Raises:
        FetchError: nobody answers, a stalled read, a body over ``max_bytes``, a 200
            answer not signed for this request (given a secret), or any other HTTP
            failure.
    """
    body = bytearray()
    nonce, headers = _sign(url, secret, wall_clock)
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(STALL_TIMEOUT)) as client,
            client.stream("GET", url, headers=headers) as response,
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
    _check_signed(response, bytes(body), secret, nonce)
    return response.status_code, bytes(body)
