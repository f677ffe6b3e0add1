"""The HTTP endpoint's request boundary: HEAD, every method, limits, slow clients, garbage.

Real loopback sockets where the probe's own behaviour is the point (the server must
still answer afterwards); in-memory streams under MockClock for the timers and for
Hypothesis, which throws arbitrary bytes, split arbitrarily, at one connection.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepair.metrics import Metrics
from probepair.ops import endpoint
from probepair.ops.endpoint import (
    ANSWER_TIMEOUT,
    CONNECTION_TIMEOUT,
    ERROR_REASONS,
    MAX_CONNECTIONS,
    MAX_HEAD,
    MAX_REQUEST_LINE,
    READ_TIMEOUT,
    Endpoint,
    serve_metrics,
)

STATUS: dict[str, Any] = {"name": "t", "role": "master", "nested": {"a": [1, 2]}}


def _errors(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("probepair_http_errors_total", {"reason": reason}) or 0


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


async def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` over TCP, half-close, and read the whole answer."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(data)
            try:
                await stream.send_eof()
            except trio.BrokenResourceError:
                pass  # the server answered and closed already
            out = bytearray()
            try:
                while chunk := await stream.receive_some(65536):
                    out += chunk
            except trio.BrokenResourceError:
                pass  # a reset after the answer
            return bytes(out)


def _rules() -> tuple[int, bytes]:
    return 200, b"archive bytes"


async def _with_server(metrics: Metrics, nursery: trio.Nursery) -> tuple[str, int]:
    address: tuple[str, int] = await nursery.start(
        serve_metrics, metrics, "127.0.0.1", 0, lambda: STATUS, _rules
    )
    return address


async def test_head_gives_gets_headers_and_no_body(metrics: Metrics) -> None:
    async with trio.open_nursery() as nursery:
        address = await _with_server(metrics, nursery)
        for path in ("/metrics", "/status", "/rules", "/nowhere"):
            raw = await _exchange(address, f"GET {path} HTTP/1.1\r\nHost: p\r\n\r\n".encode())
            get = _parse(raw)
            raw = await _exchange(address, f"HEAD {path} HTTP/1.1\r\nHost: p\r\n\r\n".encode())
            head = _parse(raw)
            assert head[0] == get[0], path
            assert head[1] == get[1], path
            assert int(head[1]["content-length"]) == len(get[2]) > 0, path
            assert head[2] == b"", path
        # The server is alive after all of them (the old one died at the first HEAD).
        status, _, body = _parse(await _exchange(address, b"GET /status HTTP/1.0\r\n\r\n"))
        assert status == 200 and b'"nested"' in body
        nursery.cancel_scope.cancel()
    assert _errors(metrics, "not_found") == 2  # GET and HEAD of /nowhere


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "PROPFIND", "BREW"]
)
async def test_other_methods_are_405_with_allow(metrics: Metrics, method: str) -> None:
    async with trio.open_nursery() as nursery:
        address = await _with_server(metrics, nursery)
        raw = await _exchange(address, f"{method} /metrics HTTP/1.1\r\nHost: p\r\n\r\n".encode())
        status, headers, body = _parse(raw)
        assert status == 405
        assert headers["allow"] == "GET, HEAD"
        assert int(headers["content-length"]) == len(body)
        assert _parse(await _exchange(address, b"GET /metrics HTTP/1.0\r\n\r\n"))[0] == 200
        nursery.cancel_scope.cancel()
    assert _errors(metrics, "method") == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\nHost: p\r\n" + b"X-Big: " + b"b" * MAX_HEAD + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: p\r\n" + b"X-h: v\r\n" * 3000 + b"\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n\r\nhello",
            413,
            "body_too_large",
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0"
            b"\r\n\r\n",
            413,
            "body_too_large",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", 400, "bad_request"),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400, "bad_request"),  # HTTP/1.1 needs Host
        (b"GET /metrics\r\n\r\n", 400, "bad_request"),  # HTTP/0.9
    ],
    ids=["long-line", "long-header", "many-headers", "body", "chunked", "tls", "no-host", "http09"],
)
async def test_bad_requests_get_their_status_and_count(
    metrics: Metrics, request_bytes: bytes, status: int, reason: str
) -> None:
    async with trio.open_nursery() as nursery:
        address = await _with_server(metrics, nursery)
        got, headers, body = _parse(await _exchange(address, request_bytes))
        assert got == status
        assert headers["connection"] == "close"
        assert int(headers["content-length"]) == len(body)
        assert _parse(await _exchange(address, b"GET /metrics HTTP/1.0\r\n\r\n"))[0] == 200
        nursery.cancel_scope.cancel()
    assert _errors(metrics, reason) == 1
    assert sum(_errors(metrics, r) for r in ERROR_REASONS) == 1


async def test_a_connection_closed_without_a_byte_is_not_an_error(metrics: Metrics) -> None:
    async with trio.open_nursery() as nursery:
        address = await _with_server(metrics, nursery)
        assert await _exchange(address, b"") == b""
        assert await _exchange(address, b"GET /metr") == b""  # closed mid-request
        nursery.cancel_scope.cancel()
    assert sum(_errors(metrics, r) for r in ERROR_REASONS) == 1
    assert _errors(metrics, "incomplete") == 1


def test_every_reason_is_exported_from_the_start(metrics: Metrics) -> None:
    Endpoint(metrics, lambda: STATUS)
    for reason in ERROR_REASONS:
        assert _errors(metrics, reason) == 0.0
        assert (
            metrics.registry.get_sample_value("probepair_http_errors_total", {"reason": reason})
            == 0.0
        )


# -- timers, under MockClock ------------------------------------------------------------


async def _read_all(stream: trio.abc.Stream) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some(65536):
        out += chunk
    return bytes(out)


async def test_slowloris_is_answered_408_after_the_read_timeout(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ep.handle, server)
        start = trio.current_time()
        for byte in b"GET /metrics HTTP/1.1\r\nHost":  # one byte a second, never done
            await client.send_all(bytes([byte]))
            await trio.sleep(1)
            if trio.current_time() - start >= READ_TIMEOUT:
                break
        raw = await _read_all(client)
        assert trio.current_time() - start == pytest.approx(READ_TIMEOUT, abs=1)
    assert _parse(raw)[0] == 408
    assert _errors(metrics, "timeout") == 1


async def test_a_silent_client_is_dropped(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ep.handle, server)
        raw = await _read_all(client)
    assert trio.current_time() == pytest.approx(READ_TIMEOUT + ANSWER_TIMEOUT)
    assert _parse(raw)[0] == 408
    assert _errors(metrics, "timeout") == 1


async def test_a_client_that_never_reads_is_dropped_after_the_connection_timeout(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    client, server = trio.testing.lockstep_stream_pair()  # send_all waits for a reader
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ep.handle, server)
        await client.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert trio.current_time() == pytest.approx(CONNECTION_TIMEOUT)
    assert _errors(metrics, "timeout") == 1


async def test_past_the_cap_a_connection_gets_503_at_once(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    async with trio.open_nursery() as nursery:
        idle = []
        for _ in range(MAX_CONNECTIONS):
            client, server = trio.testing.memory_stream_pair()
            idle.append(client)
            nursery.start_soon(ep.handle, server)
        await trio.testing.wait_all_tasks_blocked()
        assert ep.serving == MAX_CONNECTIONS
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(ep.handle, server)
        start = trio.current_time()
        await client.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        status, headers, _ = _parse(await _read_all(client))
        assert status == 503 and headers["retry-after"] == "1"
        assert trio.current_time() - start <= ANSWER_TIMEOUT
        assert _errors(metrics, "connections") == 1
        for c in idle:  # the idle ones close: the next request is served again
            await c.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert ep.serving == 0
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(ep.handle, server)
        await client.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert _parse(await _read_all(client))[0] == 200


# -- the boundary: nothing escapes --------------------------------------------------------


async def test_a_failing_route_is_500_and_the_endpoint_goes_on(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("status exploded")

    ep = Endpoint(metrics, broken)
    for _ in range(2):
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ep.handle, server)
            await client.send_all(b"GET /status HTTP/1.0\r\n\r\n")
            assert _parse(await _read_all(client))[0] == 500
    assert _errors(metrics, "internal") == 2


class _ExplodingStream(trio.abc.Stream):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        raise KeyError("a bug somewhere below the handler")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_an_unexpected_exception_is_counted_internal_not_raised(metrics: Metrics) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    await ep.handle(_ExplodingStream())
    assert _errors(metrics, "internal") == 1
    assert ep.serving == 0


async def _one_connection(ep: Endpoint, chunks: list[bytes]) -> bytes:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ep.handle, server)
        for chunk in chunks:
            try:
                await client.send_all(chunk)
            except trio.BrokenResourceError:
                break
        await client.send_eof()
        return await _read_all(client)


_HTTPISH = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [
                b"GET ",
                b"HEAD ",
                b"PUT ",
                b"/metrics",
                b"/status",
                b" HTTP/1.1",
                b" HTTP/1.0",
                b"\r\n",
                b"\r\n\r\n",
                b"Host: p",
                b"Content-Length: ",
                b"Transfer-Encoding: chunked",
                b"0",
                b"99999999999999999999",
                b":",
                b"\x00",
                b"\xff",
                b" ",
                b"a" * 9000,
            ]
        ),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=_HTTPISH)
def test_arbitrary_bytes_never_escape_the_handler(chunks: list[bytes]) -> None:
    metrics = Metrics()
    ep = Endpoint(metrics, lambda: STATUS, _rules)
    raw = trio.run(_one_connection, ep, chunks, clock=trio.testing.MockClock(autojump_threshold=0))
    assert raw == b"" or raw.startswith(b"HTTP/1.1 ")
    if raw:
        _, headers, body = _parse(raw)
        assert int(headers["content-length"]) == len(body) or b"HEAD " in b"".join(chunks)
    assert ep.serving == 0 and ep.refusing == 0
    assert _errors(metrics, "internal") == 0  # total: the bytes are the client's fault
    assert sum(_errors(metrics, r) for r in ERROR_REASONS) <= 1


def test_module_bounds_are_sane() -> None:
    assert MAX_REQUEST_LINE < MAX_HEAD
    assert READ_TIMEOUT < CONNECTION_TIMEOUT
    assert endpoint.MAX_BODY == 0


async def test_errors_are_logged_once_per_interval_per_reason(
    metrics: Metrics, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    ep = Endpoint(metrics, lambda: STATUS)
    caplog.set_level(logging.INFO, logger="probepair.ops.endpoint")
    for _ in range(5):
        await _one_connection(ep, [b"PUT / HTTP/1.0\r\n\r\n"])
    await trio.sleep(endpoint.LOG_INTERVAL)
    await _one_connection(ep, [b"PUT / HTTP/1.0\r\n\r\n"])
    lines = [r.getMessage() for r in caplog.records if r.name == "probepair.ops.endpoint"]
    assert lines == [
        "http: method (method b'PUT'), connection closed",
        "http: method (method b'PUT'), connection closed (4 more since the last report)",
    ]
    assert _errors(metrics, "method") == 6
