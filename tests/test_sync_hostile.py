"""The sync and status clients against hostile peers: every bad answer is a located error.

A real loopback server that answers whatever a test scripts (non-ASCII signature lines,
nested JSON, huge or dripping bodies, silence); the blocking clients run in a worker
thread, as the CLI and ``Readiness`` run them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from probepair.rulesync import pull as rulesync
from probepair.ops.control import ControlError
from probepair.rulesync.tree import MAGIC, ArchiveRefused, RulesSyncError, RulesTree, pack, unpack
from probepair.rulesync.pull import Readiness, fetch_archive
from probepair.ops.status import fetch_status

SECRET = b"s" * 32
Script = Callable[[trio.SocketStream], Awaitable[None]]


def _head(body_length: int | None = None, extra: bytes = b"") -> bytes:
    length = b"" if body_length is None else b"Content-Length: %d\r\n" % body_length
    return b"HTTP/1.1 200 OK\r\n" + length + extra + b"Connection: close\r\n\r\n"


def _answer(body: bytes) -> Script:
    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(_head(len(body)) + body)

    return script


async def _serve(nursery: trio.Nursery, script: Script) -> str:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                await script(stream)
            except trio.BrokenResourceError:
                pass  # the client gave up, as it should

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    host, port = listeners[0].socket.getsockname()[:2]
    return f"http://{host}:{port}/x"


def test_a_non_ascii_signature_line_is_refused_not_a_typeerror() -> None:
    good = pack(RulesTree("main.rules", {"main.rules": b"@Summary = $Line\n"}), SECRET)
    line_end = len(MAGIC) + 64
    for bad_line in ("é" * 32, "\u0100" * 21 + "x", "\xff" * 64):
        raw = bad_line.encode("utf-8")[:64].ljust(64, b"a")
        data = good[: len(MAGIC)] + raw + good[line_end:]
        with pytest.raises(ArchiveRefused, match=r"^peer: signature does not match"):
            unpack(data, SECRET, "peer")
    assert unpack(good, SECRET, "peer").main == "main.rules"


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 40 + b"1" + b"}" * 40, b"\xff\xfe not json", b"[1, 2]"],
    ids=["brackets", "deep-object", "binary", "not-an-object"],
)
async def test_status_fetch_of_hostile_json_is_a_located_error(body: bytes) -> None:
    async with trio.open_nursery() as nursery:
        url = await _serve(nursery, _answer(body))
        with pytest.raises(ControlError, match=r"^http://127\.0\.0\.1:\d+/x: expected a JSON"):
            await trio.to_thread.run_sync(fetch_status, url)
        nursery.cancel_scope.cancel()


async def test_readiness_survives_a_nested_status_answer() -> None:
    # response.json() raised RecursionError here, in a task of the probe's nursery.
    async with trio.open_nursery() as nursery:
        url = await _serve(nursery, _answer(b"[" * 100_000))
        r = Readiness(
            None,  # type: ignore[arg-type]  # _what_differs does not use the machine
            url,
            url,
            lambda: {},
            False,
            lambda _u: None,
            lambda: True,
            lambda _r, _d: None,
            lambda _r: None,
        )
        differs, rules = await r._what_differs()
        assert differs == [f"config or rules ({url} does not answer)"] and rules is None
        nursery.cancel_scope.cancel()


async def test_an_archive_declared_over_the_cap_is_refused_before_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rulesync, "MAX_ARCHIVE", 1000)

    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(_head(10**12))
        await trio.sleep_forever()  # never sends the terabyte

    async with trio.open_nursery() as nursery:
        url = await _serve(nursery, script)
        with (
            trio.fail_after(5),
            pytest.raises(
                RulesSyncError,
                match=r"^http://.*/x: answer of 1000000000000 bytes, more than the 1000",
            ),
        ):
            await trio.to_thread.run_sync(fetch_archive, url)
        nursery.cancel_scope.cancel()


async def test_an_undeclared_body_over_the_cap_stops_at_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rulesync, "MAX_ARCHIVE", 100_000)

    async def script(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(_head())
        for _ in range(10_000):  # 640 MB if nobody stopped reading
            await stream.send_all(b"x" * 65536)

    async with trio.open_nursery() as nursery:
        url = await _serve(nursery, script)
        with (
            trio.fail_after(5),
            pytest.raises(RulesSyncError, match=r"answer larger than 100000 bytes"),
        ):
            await trio.to_thread.run_sync(fetch_archive, url)
        nursery.cancel_scope.cancel()


async def _drip(stream: trio.SocketStream) -> None:
    await stream.receive_some(65536)
    await stream.send_all(_head(10_000))
    while True:  # one byte every 0.3 s: never trips a per-read timeout
        await stream.send_all(b"x")
        await trio.sleep(0.3)


async def _silent(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


@pytest.mark.parametrize("script", [_drip, _silent], ids=["drip", "silent"])
async def test_a_slow_peer_hits_the_overall_deadline(script: Script) -> None:
    async with trio.open_nursery() as nursery:
        url = await _serve(nursery, script)
        start = trio.current_time()
        with trio.fail_after(6):
            with pytest.raises(
                RulesSyncError, match=r"^http://.*/x: no complete answer within 1 s"
            ):
                await trio.to_thread.run_sync(fetch_archive, url, 1.0)
            with pytest.raises(ControlError, match=r"^http://.*/x: no complete answer within 1 s"):
                await trio.to_thread.run_sync(fetch_status, url, 1.0)
        assert trio.current_time() - start < 2 * (1.0 + rulesync.httpget.STALL_TIMEOUT)
        nursery.cancel_scope.cancel()
