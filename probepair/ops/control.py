"""The local control channel behind ``probepair takeover | release | status``.

A Unix domain stream socket (``ControlSocket``; '' means ``<Name>.sock`` in the
runtime directory, see ``paths``). Authentication is the kernel's:
the socket file is created mode 0600, so only its owner (and root) may connect, and
each connection's peer uid is checked again with ``SO_PEERCRED`` where the platform
has it, so a socket file later made world-writable still refuses strangers.

Protocol: the client sends one JSON line ``{"command": "takeover"}``, the server
answers one JSON line and closes. Every answer has ``"ok"``; a failure has ``"error"``.
A malformed or slow client gets an error answer (or is dropped after
``CLIENT_TIMEOUT``); it never ends the server. Decoding is total: the request is read
into a bounded buffer (``MAX_REQUEST``) under the deadline before it is parsed, and
parsed by ``netjson`` (no recursion, nesting bounded by ``MAX_DEPTH``), so ``[[[[...``
is an error answer, not a ``RecursionError`` through the probe's nursery. Each refusal
is passed to ``on_error`` (the probe counts it in ``probepair_control_errors_total``)
and logged at most once per ``LOG_INTERVAL`` per reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, NoReturn

import trio

from probepair.config.paths import default_control_socket
from probepair.errors import ProbepairError
from probepair.failover import Mode
from probepair.ops.ratelog import RateLimitedLog
from probepair.rulesync import netjson

if TYPE_CHECKING:
    Handler = Callable[[str], dict[str, Any]]

logger = logging.getLogger(__name__)

COMMANDS: Final = ("takeover", "release", "status", "reload")
CLIENT_TIMEOUT: Final = 5.0  # seconds one client may take to send its request and read the answer
MAX_REQUEST: Final = 4096  # bytes: a request is one short JSON line
MAX_RESPONSE: Final = 1 << 20  # bytes: a status answer is a few KiB
MAX_DEPTH: Final = 8  # levels of JSON nesting in a request ({"command": ...} is 1)
LOG_INTERVAL: Final = 10.0  # seconds between two log lines about the same kind of refusal
MAX_PATH: Final = 108  # bytes in sockaddr_un.sun_path (Linux), including the NUL
SOCKET_MODE: Final = 0o600  # owner read/write: connecting to a Unix socket needs write access
_UCRED: Final = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;} (Linux)


class ControlError(ProbepairError):
    """The control channel (or a peer's ``/status``) cannot answer.

    Args:
        where: the socket path or URL.
        message: what went wrong, and what to check.
    """

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


def socket_path(name: str, control_socket: str = "", *, create: bool = False) -> str:
    """The control socket path: ``ControlSocket``, or ``<Name>.sock`` in the runtime
    directory (created when ``create``; see ``paths``)."""
    return control_socket or default_control_socket(name, create=create)


def make_handler(
    status: Callable[[], dict[str, Any]],
    request_mode: Callable[[Mode], None] | None,
    reload: Callable[[], bool] | None = None,
) -> Handler:
    """A handler for ``serve_control`` over a probe.

    Args:
        status: the probe's status (``Probe.status``).
        request_mode: ``PeerDriver.request_mode``; None for a Mode standard probe, which
            has no peer, so takeover and release are refused.
        reload: reloads the rules (``probepair sync`` wrote a new tree); False: failed.
    """

    def handle(command: str) -> dict[str, Any]:
        if command == "status":
            return {"ok": True, "status": status()}
        if command == "reload":
            if reload is None or not reload():
                return {"ok": False, "error": "rules reload failed: see the probe's log"}
            return {"ok": True, "status": status()}
        if request_mode is None:
            return {
                "ok": False,
                "error": f"{command} needs Mode master or slave; this probe runs Mode standard",
            }
        request_mode(Mode.MASTER if command == "takeover" else Mode.SLAVE)
        return {"ok": True, "status": status()}

    return handle


# -- server --------------------------------------------------------------------------------


def _peer_uid(sock: trio.socket.SocketType) -> int | None:
    """The connecting process's uid, or None where SO_PEERCRED does not exist."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - not Linux: rely on the file mode alone
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return int(uid)


class _Refused(Exception):
    """A request refused before the handler ran: ``reason`` is its metric label."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(reason, error)
        self.reason = reason
        self.error = error


def _answer(request: bytes, handler: Handler) -> dict[str, Any]:
    """The response to one request line; bad input raises ``_Refused``, nothing else.

    Raises:
        _Refused: not JSON (or too deeply nested), or not a known command.
    """
    try:
        message = netjson.loads(request, max_bytes=MAX_REQUEST, max_depth=MAX_DEPTH)
    except netjson.JSONInputError:
        raise _Refused("json", 'expected one JSON line like {"command": "status"}') from None
    command = message.get("command") if isinstance(message, dict) else None
    if command not in COMMANDS:  # any JSON value: == against strings, never hashed
        raise _Refused(
            "command", f"expected command {', '.join(COMMANDS)}, got {repr(command)[:60]}"
        )
    logger.info("control: %s", command)
    try:
        result = handler(command)
    except ProbepairError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, **result}


async def _read_line(stream: trio.SocketStream) -> bytes:
    """One request line, at most MAX_REQUEST bytes (linear: one bytearray).

    Raises:
        _Refused: longer than MAX_REQUEST bytes.
    """
    buf = bytearray()
    while b"\n" not in buf:
        if len(buf) > MAX_REQUEST:
            break
        chunk = await stream.receive_some(MAX_REQUEST + 1 - len(buf) + 1)
        if not chunk:
            break
        buf += chunk
    line = bytes(buf.partition(b"\n")[0])
    if len(line) > MAX_REQUEST:
        raise _Refused("too_long", f"request longer than {MAX_REQUEST} bytes")
    return line


class _Server:
    def __init__(
        self, handler: Handler, allowed: frozenset[int], on_error: Callable[[str], None] | None
    ) -> None:
        self.handler = handler
        self.allowed = allowed
        self.on_error = on_error
        self._log = RateLimitedLog(logger, LOG_INTERVAL)

    def _refused(self, reason: str, error: str, exc: BaseException | None = None) -> None:
        if self.on_error is not None:
            self.on_error(reason)
        level = logging.ERROR if reason == "internal" else logging.WARNING
        self._log(reason, level, "control: refused a request (%s): %s", reason, error, exc_info=exc)

    async def serve_client(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                await self._serve(stream)
        except Exception as exc:  # the boundary: no request may end the probe
            self._refused("internal", f"{type(exc).__name__}: {exc}", exc)

    async def _serve(self, stream: trio.SocketStream) -> None:
        with trio.move_on_after(CLIENT_TIMEOUT) as scope:
            try:
                uid = _peer_uid(stream.socket)
                if uid is not None and uid not in self.allowed:
                    raise _Refused(
                        "uid", f"uid {uid} may not control this probe (run as its owner or root)"
                    )
                response = _answer(await _read_line(stream), self.handler)
            except _Refused as refused:
                self._refused(refused.reason, refused.error)
                response = {"ok": False, "error": refused.error}
            try:
                await stream.send_all(json.dumps(response).encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return  # the client went away: its problem
        if scope.cancelled_caught:
            self._refused("timeout", f"no request within {CLIENT_TIMEOUT:g} s")


def _remove_stale(path: str) -> None:
    """Remove a socket file a dead probe left; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(path, "exists and is not a socket; remove it or set ControlSocket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: stale
            logger.info("control: removed stale socket %s", path)
            return
    raise ControlError(
        path,
        "another probe is listening on this socket; give each probe its own Name or ControlSocket",
    )


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    # Process-wide: hold it only around synchronous calls (no await inside).
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def serve_control(
    path: str,
    handler: Handler,
    *,
    on_error: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the control channel on ``path`` until cancelled; then remove the file.

    Args:
        path: the socket file to create (a stale one is replaced).
        handler: called with the command (``takeover``, ``release`` or ``status``); it
            must not block and returns the answer; a ProbepairError becomes an error answer.
        on_error: called with the reason (``metrics.CONTROL_ERROR_REASONS``) of each
            refused request.
        task_status: started with ``path`` once clients can connect.

    Raises:
        ControlError: the path is taken by a live probe or a non-socket, or cannot be bound.
    """
    if len(os.fsencode(path)) >= MAX_PATH:
        raise ControlError(
            path,
            f"longer than the {MAX_PATH - 1} bytes a Unix socket path may "
            "have; set a shorter ControlSocket",
        )
    _remove_stale(path)
    # Bound synchronously: the umask is process-wide, so it must not be held across an
    # await (another task creating a file meanwhile would get the socket's mode).
    plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _umask(0o777 & ~SOCKET_MODE):
            plain.bind(path)
        os.chmod(path, SOCKET_MODE)
        plain.listen(16)
        sock = trio.socket.from_stdlib_socket(plain)
    except OSError as exc:
        plain.close()
        raise ControlError(
            path, f"cannot create the control socket: {exc.strerror or exc}"
        ) from None
    inode = os.stat(path).st_ino
    allowed = frozenset({0, os.getuid()})
    try:
        async with trio.open_nursery() as nursery:
            listener = trio.SocketListener(sock)
            await nursery.start(
                trio.serve_listeners, _Server(handler, allowed, on_error).serve_client, [listener]
            )
            logger.info("control socket %s", path)
            task_status.started(path)
            await trio.sleep_forever()
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == inode:  # not a newer probe's socket
                os.unlink(path)
    raise AssertionError("unreachable")  # pragma: no cover


# -- client --------------------------------------------------------------------------------


def request(path: str, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``command`` to the probe listening on ``path``; its answer (``ok`` is true).

    Blocking (for the CLI). Raises:
        ControlError: no probe listens there, permission denied, no answer within
            ``timeout`` seconds, a malformed answer, or the probe answered an error.
    """
    if command not in COMMANDS:
        raise ControlError(path, f"expected command {', '.join(COMMANDS)}, got {command!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            buf = bytearray()
            while b"\n" not in buf and len(buf) <= MAX_RESPONSE:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                path, "no probe is listening (is it running, as this user? see ControlSocket)"
            ) from None
        except PermissionError:
            raise ControlError(path, "permission denied: run as the probe's user or root") from None
        except TimeoutError:
            raise ControlError(path, f"no answer within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(path, f"cannot talk to the probe: {exc.strerror or exc}") from None
    try:
        response = netjson.loads(bytes(buf.partition(b"\n")[0]), max_bytes=MAX_RESPONSE)
    except netjson.JSONInputError:
        response = None
    if not isinstance(response, dict) or "ok" not in response:
        raise ControlError(path, f"expected a JSON answer, got {bytes(buf[:80])!r}")
    if not response["ok"]:
        raise ControlError(path, str(response.get("error", "the probe refused")))
    return response
