"""Signed requests to /status and /rules, signed answers, and the /metrics bearer token.

The verifier is pure (``now`` is an argument); the endpoint runs on loopback with the
real clients (``rulesync.fetch``) so that both ends of the scheme are tested together.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
import trio

from probepair.config.httpauth import (
    MAX_SKEW,
    RequestVerifier,
    Unauthorized,
    authorization,
    check_bearer,
    check_response,
    response_mac,
)
from probepair.metrics import Metrics
from probepair.ops.endpoint import EndpointAuth, serve_metrics
from probepair.rulesync import fetch as httpget

SECRET = b"k" * 32
NOW = 1_700_000_000.0
NONCE = "0123456789abcdef" * 2
STATUS: dict[str, Any] = {"name": "t", "role": "master", "rules": "abc"}


def _header(secret: bytes = SECRET, target: str = "/status", now: float = NOW,
            nonce: str = NONCE, method: str = "GET") -> bytes:
    return authorization(secret, method, target, now=now, nonce=nonce).encode()


def test_a_signed_request_is_accepted_once() -> None:
    v = RequestVerifier(SECRET)
    assert v.verify("GET", "/status", _header(), now=NOW + 1) == NONCE
    with pytest.raises(Unauthorized, match=r"^replayed request \(nonce seen before\)$"):
        v.verify("GET", "/status", _header(), now=NOW + 2)


@pytest.mark.parametrize(
    ("header", "method", "target", "now", "reason"),
    [
        (None, "GET", "/status", NOW, r"^no Authorization header \(Probepair-HMAC expected\)$"),
        (b"Bearer x", "GET", "/status", NOW, r"^malformed Authorization header"),
        (_header(b"another secret of 32 bytes......"), "GET", "/status", NOW,
         r"^signature does not match \(another SharedSecret\?\)$"),
        (_header(), "GET", "/rules", NOW, r"^signature does not match"),  # another path
        (_header(), "HEAD", "/status", NOW, r"^signature does not match"),  # another method
        (_header(target="/status?x=1"), "GET", "/status", NOW, r"^signature does not match"),
        (_header(), "GET", "/status", NOW + MAX_SKEW + 1,
         r"^timestamp -31 s from this host's clock, more than 30 s"),
        (_header(), "GET", "/status", NOW - MAX_SKEW - 1, r"^timestamp \+31 s"),
    ],
)
def test_unsigned_forged_or_stale_requests_are_refused(
    header: bytes | None, method: str, target: str, now: float, reason: str
) -> None:
    v = RequestVerifier(SECRET)
    with pytest.raises(Unauthorized, match=reason):
        v.verify(method, target, header, now=now)
    assert len(v) == 0  # nothing unauthenticated is remembered


def test_the_nonce_cache_is_bounded_in_size_and_time() -> None:
    v = RequestVerifier(SECRET, capacity=3)
    nonces = [f"{i:032x}" for i in range(4)]
    for i, nonce in enumerate(nonces[:3]):
        v.verify("GET", "/status", _header(nonce=nonce), now=NOW + i)
    with pytest.raises(Unauthorized, match=r"^more than 3 signed requests within the window$"):
        v.verify("GET", "/status", _header(nonce=nonces[3], now=NOW + 3), now=NOW + 3)
    # Once a nonce's request can no longer be fresh it is forgotten, not before.
    later = NOW + 2 * MAX_SKEW + 0.5
    v.verify("GET", "/status", _header(nonce=nonces[3], now=later), now=later)
    assert len(v) == 3  # the first went, the next two stay (still inside their window)
    with pytest.raises(Unauthorized, match=r"^replayed"):
        v.verify("GET", "/status", _header(nonce=nonces[1], now=later), now=later)


def test_answers_are_bound_to_the_request_nonce() -> None:
    sig = response_mac(SECRET, NONCE, 200, b"body")
    assert check_response(SECRET, NONCE, 200, b"body", sig)
    assert not check_response(SECRET, "f" * 32, 200, b"body", sig)  # replayed to another
    assert not check_response(SECRET, NONCE, 200, b"body!", sig)
    assert not check_response(SECRET, NONCE, 404, b"body", sig)
    assert not check_response(SECRET, NONCE, 200, b"body", "")
    assert not check_response(SECRET, NONCE, 200, b"body", "é" * 64)  # no TypeError


def test_bearer_tokens_compare_whole() -> None:
    assert check_bearer(b"Bearer tok", b"tok")
    assert not check_bearer(b"Bearer to", b"tok")
    assert not check_bearer(b"Bearer tokk", b"tok")
    assert not check_bearer(None, b"tok")
    assert not check_bearer(b"Bearer ", b"")


# -- the endpoint with the real clients ------------------------------------------------


def _errors(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("probepair_http_errors_total", {"reason": reason}) or 0


async def _serve(nursery: trio.Nursery, metrics: Metrics, auth: EndpointAuth) -> str:
    host, port = await nursery.start(
        serve_metrics, metrics, "127.0.0.1", 0, lambda: STATUS, lambda: (200, b"archive"), auth
    )
    return f"http://{host}:{port}"


async def _get(url: str, **kw: Any) -> tuple[int, bytes]:
    return await trio.to_thread.run_sync(partial(httpget.get, url, max_bytes=1 << 20,
                                                 timeout=5.0, **kw))


async def test_status_and_rules_need_a_signed_request() -> None:
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        base = await _serve(nursery, metrics, EndpointAuth(SECRET))
        for path in ("/status", "/rules"):
            code, body = await _get(base + path)
            assert code == 401 and body.startswith(b"unauthorized"), path
            code, body = await _get(base + path, secret=b"w" * 32)
            assert code == 401, path
            code, body = await _get(base + path, secret=SECRET)  # the answer is checked too
            assert code == 200, path
        assert (await _get(base + "/rules", secret=SECRET))[1] == b"archive"
        assert (await _get(base + "/metrics"))[0] == 200  # open by default
        nursery.cancel_scope.cancel()
    assert _errors(metrics, "unauthorized") == 4


async def test_a_captured_request_replays_to_nothing() -> None:
    import httpx

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        base = await _serve(nursery, metrics, EndpointAuth(SECRET))
        import time

        headers = {"Authorization": authorization(SECRET, "GET", "/status", now=time.time(),
                                                  nonce=NONCE)}

        def once() -> int:
            return httpx.get(base + "/status", headers=headers).status_code

        assert await trio.to_thread.run_sync(once) == 200
        assert await trio.to_thread.run_sync(once) == 401
        nursery.cancel_scope.cancel()
    assert _errors(metrics, "unauthorized") == 1


async def test_a_fake_server_without_the_secret_is_not_believed() -> None:
    """A server on the peer's address that answers 200 unsigned (or with another secret)."""
    async with trio.open_nursery() as nursery:
        base = await _serve(nursery, Metrics(), EndpointAuth())  # insecure: unsigned answers
        with pytest.raises(httpget.FetchError, match=r"^the answer is not signed with "
                                                     r"SharedSecret for this request"):
            await _get(base + "/status", secret=SECRET)
        nursery.cancel_scope.cancel()


async def test_insecure_mode_serves_status_and_refuses_rules(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio.open_nursery() as nursery:
        base = await _serve(nursery, Metrics(), EndpointAuth())
        assert (await _get(base + "/status"))[0] == 200
        nursery.cancel_scope.cancel()
    assert any(re.match(r"^no SharedSecret: /status is served unauthenticated", r.message)
               for r in caplog.records)


async def test_metrics_bearer_token() -> None:
    import httpx

    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        base = await _serve(nursery, metrics, EndpointAuth(SECRET, b"tok-123"))

        def get(headers: dict[str, str]) -> httpx.Response:
            return httpx.get(base + "/metrics", headers=headers)

        assert (await trio.to_thread.run_sync(get, {})).status_code == 401
        bad = await trio.to_thread.run_sync(get, {"Authorization": "Bearer tok-12"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"] == 'Bearer realm="probepair"'
        good = await trio.to_thread.run_sync(get, {"Authorization": "Bearer tok-123"})
        assert good.status_code == 200 and b"probepair_" in good.content
        nursery.cancel_scope.cancel()
    assert _errors(metrics, "unauthorized") == 2
