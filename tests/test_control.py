"""The control channel over a real Unix socket: round trip, bad input, file lifecycle."""

from __future__ import annotations

import os
import socket
import stat
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepair.ops import control
from probepair.ops.control import (
    ControlError,
    make_handler,
    request,
    serve_control,
    socket_path,
)
from probepair.failover import Mode
from probepair.metrics import CONTROL_ERROR_REASONS


def _handler(command: str) -> dict[str, Any]:
    return {"echo": command}


async def _raw(path: Path, data: bytes) -> dict[str, Any]:
    """Send raw bytes and read the one-line answer."""
    import json

    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        buf = b""
        with trio.fail_after(5):
            while b"\n" not in buf:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
    answer: dict[str, Any] = json.loads(buf)
    return answer


async def test_round_trip_with_the_blocking_client(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    async with trio.open_nursery() as nursery:
        assert await nursery.start(serve_control, str(path), _handler) == str(path)
        answer = await trio.to_thread.run_sync(request, str(path), "takeover")
        assert answer == {"ok": True, "echo": "takeover"}
        nursery.cancel_scope.cancel()


async def test_socket_is_mode_0600_and_removed_when_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, str(path), _handler)
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays: a probe that died without cleaning up
    assert path.exists()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, str(path), _handler)
        answer = await _raw(path, b'{"command": "status"}\n')
        assert answer == {"ok": True, "echo": "status"}
        nursery.cancel_scope.cancel()


async def test_a_live_socket_or_a_regular_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, str(path), _handler)
        with pytest.raises(ControlError, match="another probe is listening") as info:
            await serve_control(str(path), _handler)
        assert info.value.where == str(path)
        nursery.cancel_scope.cancel()
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        await serve_control(str(path), _handler)
    assert path.read_text() == "not a socket"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"not json\n", 'expected one JSON line like {"command": "status"}'),
        (b"\xff\xfe\n", 'expected one JSON line like {"command": "status"}'),
        (b"[1, 2]\n", "expected command takeover, release, status, reload, got None"),
        (
            b'{"command": "reboot"}\n',
            "expected command takeover, release, status, reload, got 'reboot'",
        ),
        (b"x" * 5000 + b"\n", "request longer than 4096 bytes"),
    ],
)
async def test_malformed_requests_get_an_error_and_the_server_goes_on(
    tmp_path: Path, data: bytes, error: str
) -> None:
    path = tmp_path / "p.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, str(path), _handler)
        assert await _raw(path, data) == {"ok": False, "error": error}
        assert await _raw(path, b'{"command": "release"}\n') == {"ok": True, "echo": "release"}
        nursery.cancel_scope.cancel()


async def test_handler_errors_become_answers_and_request_raises_them(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    async with trio.open_nursery() as nursery:
        handler = make_handler(lambda: {"name": "s"}, None)  # a Mode standard probe
        await nursery.start(serve_control, str(path), handler)
        with pytest.raises(ControlError) as info:
            await trio.to_thread.run_sync(request, str(path), "takeover")
        assert str(info.value) == (
            f"{path}: takeover needs Mode master or slave; this probe runs Mode standard"
        )
        answer = await trio.to_thread.run_sync(request, str(path), "status")
        assert answer == {"ok": True, "status": {"name": "s"}}
        nursery.cancel_scope.cancel()


def test_make_handler_maps_commands_to_modes() -> None:
    modes: list[Mode] = []
    handle = make_handler(lambda: {"role": "x"}, modes.append)
    assert handle("takeover") == {"ok": True, "status": {"role": "x"}}
    assert handle("release")["ok"]
    assert handle("status")["ok"]
    assert modes == [Mode.MASTER, Mode.SLAVE]


def test_reload_runs_the_probes_reload_and_says_when_it_failed() -> None:
    results = [True, False]
    handle = make_handler(lambda: {"role": "x"}, None, lambda: results.pop(0))
    assert handle("reload") == {"ok": True, "status": {"role": "x"}}
    assert handle("reload") == {"ok": False, "error": "rules reload failed: see the probe's log"}
    assert make_handler(lambda: {}, None)("reload")["ok"] is False


def test_request_errors_name_the_socket(tmp_path: Path) -> None:
    missing = str(tmp_path / "probepair-m.sock")
    with pytest.raises(ControlError) as info:
        request(missing, "status")
    assert str(info.value) == (
        f"{missing}: no probe is listening (is it running, as this user? see ControlSocket)"
    )
    with pytest.raises(
        ControlError, match="expected command takeover, release, status, reload, got 'x'"
    ):
        request(missing, "x")


def test_request_times_out_on_a_silent_server(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with pytest.raises(ControlError, match=r"no answer within 0\.2 s"):
            request(path, "status", timeout=0.2)


async def test_path_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / ("x" * 120))
    with pytest.raises(ControlError, match="longer than the 107 bytes"):
        await serve_control(path, _handler)


def test_socket_path_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    assert socket_path("m") == str(tmp_path / "run" / "m.sock")
    assert not (tmp_path / "run").exists()
    assert socket_path("m", create=True) == str(tmp_path / "run" / "m.sock")
    assert (tmp_path / "run").is_dir()
    assert socket_path("m", "/run/probepair/m.sock") == "/run/probepair/m.sock"


async def test_a_client_with_another_uid_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1)
    nobody = frozenset({os.getuid() + 4242})  # neither us nor root (when we are not root)
    refused: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            trio.serve_listeners,
            control._Server(_handler, nobody, refused.append).serve_client,
            [trio.SocketListener(sock)],
        )
        answer = await _raw(Path(path), b'{"command": "takeover"}\n')
        nursery.cancel_scope.cancel()
    assert answer == {
        "ok": False,
        "error": f"uid {os.getuid()} may not control this probe (run as its owner or root)",
    }
    assert refused == ["uid"]


@pytest.mark.parametrize(
    ("data", "reason", "error"),
    [
        (b"[" * 4000 + b"\n", "json", 'expected one JSON line like {"command": "status"}'),
        (
            b'{"command": ' + b"[" * 2000 + b"]" * 2000 + b"}\n",
            "json",
            'expected one JSON line like {"command": "status"}',
        ),
        (
            b'{"a": [[[[[[[[[[1]]]]]]]]]]}\n',
            "json",
            'expected one JSON line like {"command": "status"}',
        ),
        (
            b'{"command": ["status"]}\n',
            "command",
            "expected command takeover, release, status, reload, got ['status']",
        ),
        (
            b'{"command": {"x": 1}}\n',
            "command",
            "expected command takeover, release, status, reload, got {'x': 1}",
        ),
        (b"\x00\xff" * 3000 + b"\n", "too_long", "request longer than 4096 bytes"),
        (b"1e999999\n", "json", 'expected one JSON line like {"command": "status"}'),
    ],
    ids=[
        "nested-brackets",
        "nested-command",
        "deep-object",
        "list-command",
        "dict-command",
        "binary",
        "huge-number",
    ],
)
async def test_nesting_and_garbage_get_an_error_answer_and_are_counted(
    tmp_path: Path, data: bytes, reason: str, error: str
) -> None:
    # [[[[... raised RecursionError out of json.loads, through the probe's nursery.
    path = tmp_path / "p.sock"
    refused: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_control, str(path), _handler, on_error=refused.append))
        assert await _raw(path, data) == {"ok": False, "error": error}
        assert await _raw(path, b'{"command": "status"}\n') == {"ok": True, "echo": "status"}
        nursery.cancel_scope.cancel()
    assert refused == [reason]


async def test_a_silent_client_is_counted_as_a_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "p.sock"
    refused: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_control, str(path), _handler, on_error=refused.append))
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            assert await stream.receive_some(100) == b""  # dropped after CLIENT_TIMEOUT
        nursery.cancel_scope.cancel()
    assert refused == ["timeout"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=5000) | st.text('[]{}",:0 \\').map(str.encode))
def test_answer_is_total_on_arbitrary_bytes(data: bytes) -> None:
    try:
        answer = control._answer(data, _handler)
    except control._Refused as refused:
        assert refused.reason in CONTROL_ERROR_REASONS
    else:
        assert answer["ok"] is True


def test_the_client_refuses_a_nested_answer(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        import threading

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"[" * 100000 + b"\n")

        thread = threading.Thread(target=answer)
        thread.start()
        with pytest.raises(ControlError, match=r"expected a JSON answer, got b'\[\[\["):
            request(str(path), "status")
        thread.join()


class _UmaskSeen(trio.abc.Instrument):
    """Reads the process umask before every task step."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def before_task_step(self, task: object) -> None:
        mask = os.umask(0o022)
        os.umask(mask)
        self.seen.add(mask)


async def test_no_task_runs_under_the_control_sockets_umask(tmp_path: Path) -> None:
    """The umask is process-wide: held across an await, another task creating a file
    would get the socket's 0600-style mode (issue 20, runtime hygiene)."""
    path = tmp_path / "c.sock"
    seen = _UmaskSeen()
    mask = os.umask(0o022)
    os.umask(mask)
    trio.lowlevel.add_instrument(seen)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, str(path), _handler)
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(seen)
    assert seen.seen == {mask}
