"""The probe's HTTP endpoint: ``/metrics``, ``/status`` and ``/rules`` over h11 on trio.

Theory of operation. Anything on the network may connect here (scrapers, load-balancer
health checks, uptime monitors, port scanners), so every connection is hostile until it
has sent one complete, small, bodiless GET or HEAD request. Each connection carries one
request and one response (``Connection: close``), and is bounded in every dimension:

- at most ``MAX_CONNECTIONS`` are served at once; one past the cap gets a quick 503 (a
  second pool of the same size for those answers; past both, it is closed at once);
- the request head must be complete within ``READ_TIMEOUT`` (slowloris: 408 and close)
  and the whole connection done within ``CONNECTION_TIMEOUT`` (a slow reader);
- a request line over ``MAX_REQUEST_LINE`` bytes is 414, a head (line plus headers) over
  ``MAX_HEAD`` is 431 (h11's own ``max_incomplete_event_size``), any request body is 413
  (nothing here takes one), a method other than GET and HEAD is 405 with ``Allow``;
- HEAD gets exactly GET's status and headers, ``Content-Length`` included, and no body
  (RFC 9110 section 9.3.2): h11 frames a HEAD response as bodiless, so the body is never
  handed to it.

``/status`` and ``/rules`` answer only a request signed with SharedSecret
(``config.httpauth``: a timestamp, a fresh nonce and an HMAC over method and target;
each nonce is accepted once), and sign their answer bound to that nonce. Without a
secret (insecure mode, as heartbeats are then unsigned) ``/status`` is served to anyone
(with a warning at start) and ``/rules`` is refused (403). ``/metrics`` is open unless
``MetricsAuth: bearer`` (a constant-time comparison with MetricsTokenFile's token).
Refused requests get 401 and count as ``reason="unauthorized"``.

Every error closes its own connection only: it is counted in
``probepair_http_errors_total{reason}``, logged at most once per ``LOG_INTERVAL`` per
reason, and never raised. The connection handler catches ``Exception`` at its boundary
(reason ``internal``, logged with the traceback) so that no bug in one request reaches
the nursery that runs the probe. Cancellation (``trio.Cancelled``, a BaseException) still
passes through: the probe stopping is not an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, NoReturn

import h11
import orjson
import trio
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from probepair.config.httpauth import (
    SCHEME,
    SIGNATURE_HEADER,
    RequestVerifier,
    Unauthorized,
    check_bearer,
    response_mac,
)
from probepair.ops.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from probepair.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 32  # served at once: a scraper or two plus `probepair status`
MAX_REQUEST_LINE: Final = 8192  # bytes: nginx's default large_client_header_buffers (8k)
MAX_HEAD: Final = 16384  # bytes of request line and headers; h11's default is 16 KiB too
MAX_BODY: Final = 0  # bytes: GET and HEAD carry no body here
READ_TIMEOUT: Final = 5.0  # seconds from accept to a complete request head
CONNECTION_TIMEOUT: Final = 10.0  # seconds for a whole connection (Prometheus' scrape timeout)
ANSWER_TIMEOUT: Final = 0.5  # seconds to send an error answer (and drain) before closing
RECEIVE_SIZE: Final = 4096  # bytes per read
DRAIN_LIMIT: Final = 65536  # bytes read and discarded after an answer, so close() sends FIN
LOG_INTERVAL: Final = 10.0  # seconds between two log lines about the same kind of error
ALLOW: Final = "GET, HEAD"
# Label values of probepair_http_errors_total, created at start so that rate() sees the
# first one.
ERROR_REASONS: Final = (
    "bad_request",  # 400: not HTTP/1.x (h11 refused it)
    "uri_too_long",  # 414
    "headers_too_large",  # 431
    "body_too_large",  # 413
    "method",  # 405
    "not_found",  # 404
    "connections",  # 503: over MAX_CONNECTIONS
    "timeout",  # 408 or dropped: the request or the connection took too long
    "incomplete",  # the client closed in the middle of its request
    "broken",  # the connection failed (reset, broken pipe)
    "internal",  # a bug: an exception in the handler (logged with its traceback)
    "unauthorized",  # 401: /status or /rules unsigned, badly signed or replayed; a bad token
)

RulesArchive = Callable[[], tuple[int, bytes]]  # (HTTP status, body) of GET /rules


class _Reject(Exception):
    """The request is refused: answer ``status`` (None: close without an answer)."""

    def __init__(
        self, reason: str, status: int | None, detail: str, *extra: tuple[str, str]
    ) -> None:
        super().__init__(reason, status, detail)
        self.reason = reason
        self.status = status
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True, slots=True)
class EndpointAuth:
    """Who may read what.

    Args:
        secret: SharedSecret; b"" (insecure mode): ``/status`` open, ``/rules`` 403.
        metrics_token: MetricsAuth bearer's token; b"": ``/metrics`` open.
        wall_clock: seconds since the epoch (signed requests carry a timestamp).
    """

    secret: bytes = b""
    metrics_token: bytes = b""
    wall_clock: Callable[[], float] = time.time  # the probe injects its own


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    body: bytes
    extra: tuple[tuple[str, str], ...] = ()


def _text(status: int, text: str, *extra: tuple[str, str]) -> _Answer:
    return _Answer(status, "text/plain; charset=utf-8", text.encode() + b"\n", extra)


class Endpoint:
    """The routes and the per-connection bounds; ``handle`` is the connection handler.

    Args:
        metrics: the probe's metrics (``/metrics``; errors are counted there).
        status: the probe's status for ``/status``.
        rules: ``/rules`` (status, body); None: no such route.
        auth: who may read what; None: nobody is asked (as ``EndpointAuth()``).
    """

    def __init__(
        self,
        metrics: Metrics,
        status: Callable[[], dict[str, Any]],
        rules: RulesArchive | None = None,
        auth: EndpointAuth | None = None,
    ) -> None:
        self.metrics = metrics
        self.status = status
        self.rules = rules
        self.auth = auth or EndpointAuth()
        self._verifier = RequestVerifier(self.auth.secret) if self.auth.secret else None
        self.serving = 0
        self.refusing = 0
        self._log = RateLimitedLog(logger, LOG_INTERVAL)
        for reason in ERROR_REASONS:
            metrics.http_errors.labels(reason=reason)

    # -- counting ---------------------------------------------------------------------

    def _error(self, reason: str, detail: str, exc: BaseException | None = None) -> None:
        self.metrics.http_errors.labels(reason=reason).inc()
        level = logging.ERROR if reason == "internal" else logging.INFO
        self._log(reason, level, "http: %s (%s), connection closed", reason, detail, exc_info=exc)

    # -- routes -----------------------------------------------------------------------

    def _route(self, request: h11.Request) -> _Answer:
        method, target = request.method, request.target
        path = target.split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            raise _Reject("method", 405, f"method {method[:32]!r}")
        if path == b"/metrics":
            if self.auth.metrics_token and not check_bearer(
                _header(request, b"authorization"), self.auth.metrics_token
            ):
                raise _Reject(
                    "unauthorized", 401, "/metrics without the bearer token",
                    ("WWW-Authenticate", 'Bearer realm="probepair"'),
                )  # fmt: skip
            return _Answer(200, CONTENT_TYPE_LATEST, self.metrics.exposition())
        if path not in (b"/status", b"/rules") or (path == b"/rules" and self.rules is None):
            raise _Reject("not_found", 404, f"no route {path[:64]!r}")
        nonce = self._authenticate(request)
        if path == b"/status":
            code, kind = 200, "application/json"
            body = orjson.dumps(self.status(), option=orjson.OPT_INDENT_2)
        else:
            assert self.rules is not None
            code, body = self.rules()
            kind = "application/octet-stream" if code == 200 else "text/plain"
        if nonce is None:
            return _Answer(code, kind, body)
        signature = response_mac(self.auth.secret, nonce, code, body)
        return _Answer(code, kind, body, ((SIGNATURE_HEADER, signature),))

    def _authenticate(self, request: h11.Request) -> str | None:
        """The request's nonce once its signature is checked; None: no secret to check."""
        if self._verifier is None:
            return None  # insecure mode: warned about at start
        try:
            return self._verifier.verify(
                request.method.decode("ascii"),
                request.target.decode("ascii", "surrogateescape"),
                _header(request, b"authorization"),
                now=self.auth.wall_clock(),
            )
        except Unauthorized as exc:
            path = request.target.split(b"?", 1)[0][:64].decode("ascii", "replace")
            raise _Reject(
                "unauthorized", 401, f"{path}: {exc.reason}",
                ("WWW-Authenticate", f'{SCHEME} realm="probepair"'),
            ) from None  # fmt: skip

    # -- one connection ---------------------------------------------------------------

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection; never raises (but Cancelled) whatever the client sends."""
        try:
            if self.serving >= MAX_CONNECTIONS:
                self._error("connections", f"more than {MAX_CONNECTIONS} at once")
                if self.refusing < MAX_CONNECTIONS:
                    self.refusing += 1
                    try:
                        answer = _text(503, "too many connections", ("Retry-After", "1"))
                        await self._answer(stream, h11.Connection(h11.SERVER), answer, b"")
                    finally:
                        self.refusing -= 1
                return
            self.serving += 1
            try:
                with trio.move_on_after(CONNECTION_TIMEOUT) as scope:
                    await self._serve(stream)
                if scope.cancelled_caught:
                    self._error("timeout", f"connection open over {CONNECTION_TIMEOUT:g} s")
            finally:
                self.serving -= 1
        except Exception as exc:  # the boundary: nothing from one request reaches the probe
            self._error("internal", f"{type(exc).__name__}: {exc}", exc)
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        method = b""  # of the request, once read: a HEAD answer has no body, even an error
        try:
            try:
                with trio.fail_after(READ_TIMEOUT):
                    request = await self._read_request(stream, conn)
            except trio.TooSlowError:
                raise _Reject("timeout", 408, f"no request within {READ_TIMEOUT:g} s") from None
            if request is None:
                return  # connected and closed without a byte: a TCP health check
            method = request.method
            self._check_body(request)
            try:
                answer = self._route(request)
            except _Reject:
                raise
            except Exception as exc:  # a route failed: 500 for this request only
                self._error("internal", f"{type(exc).__name__}: {exc}", exc)
                answer = _text(500, "internal error: see the probe's log")
            await self._answer(stream, conn, answer, method)
        except _Reject as reject:
            self._error(reject.reason, reject.detail)
            if reject.status is not None and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                extra = (("Allow", ALLOW),) if reject.status == 405 else reject.extra
                answer = _text(reject.status, reason_text(reject.status), *extra)
                try:
                    with trio.move_on_after(ANSWER_TIMEOUT):
                        await self._answer(stream, conn, answer, method)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass  # the client is gone already: counted under its first reason
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._error("broken", f"{type(exc).__name__}: {exc}")

    async def _read_request(
        self, stream: trio.abc.Stream, conn: h11.Connection
    ) -> h11.Request | None:
        line = bytearray()  # the start of the request, until its first line ends
        line_done = False
        got = 0
        eof = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if eof:
                    raise _Reject("incomplete", None, f"closed after {got} bytes") from None
                status = exc.error_status_hint
                reason = "headers_too_large" if status == 431 else "bad_request"
                raise _Reject(reason, status, str(exc)) from None
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            if event is not h11.NEED_DATA:  # pragma: no cover - h11 starts with a Request
                raise _Reject("bad_request", 400, f"unexpected {type(event).__name__}")
            # Never more than MAX_HEAD bytes before the Request: h11 checks its limit only
            # on an incomplete head, and would parse a complete 1 MiB one in one buffer.
            room = MAX_HEAD - got
            if room <= 0:
                raise _Reject("headers_too_large", 431, f"request head over {MAX_HEAD} B")
            data = await stream.receive_some(min(RECEIVE_SIZE, room))
            got += len(data)
            eof = not data
            if not line_done:
                line += data[: MAX_REQUEST_LINE + 2 - len(line)]
                line_done = b"\n" in line
                if not line_done and len(line) > MAX_REQUEST_LINE + 1:
                    raise _Reject("uri_too_long", 414, f"request line over {MAX_REQUEST_LINE} B")
            conn.receive_data(bytes(data))

    @staticmethod
    def _check_body(request: h11.Request) -> None:
        for name, value in request.headers:
            if name == b"transfer-encoding" or (
                name == b"content-length" and int(value) > MAX_BODY
            ):
                detail = f"a request body ({name.decode()}: {value[:20]!r})"
                raise _Reject("body_too_large", 413, detail)

    async def _answer(
        self, stream: trio.abc.Stream, conn: h11.Connection, answer: _Answer, method: bytes
    ) -> None:
        """Send ``answer`` (no body for HEAD), half-close, and drain what the client sent."""
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(answer.body))),
            ("Connection", "close"),
            *answer.extra,
        ]
        out = bytearray(
            conn.send(
                h11.Response(
                    status_code=answer.status,
                    headers=headers,
                    reason=HTTPStatus(answer.status).phrase.encode(),
                )
            )
            or b""
        )
        if method != b"HEAD":
            out += conn.send(h11.Data(data=answer.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
        # Lingering close: unread request bytes would make close() send RST, and a client
        # may then lose the answer before reading it.
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        drained = 0
        with trio.move_on_after(ANSWER_TIMEOUT):
            while drained < DRAIN_LIMIT:
                chunk = await stream.receive_some(RECEIVE_SIZE)
                if not chunk:
                    break
                drained += len(chunk)


def _header(request: h11.Request, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case), None when absent (h11 lower-cases names)."""
    return next((value for key, value in request.headers if key == name), None)


def reason_text(status: int) -> str:
    """The reason phrase of ``status`` (for the plain-text error bodies)."""
    return {
        400: "bad request",
        401: "unauthorized: sign the request with SharedSecret (or send the bearer token)",
        404: "not found: try /metrics, /status or /rules",
        405: f"method not allowed: {ALLOW}",
        408: "request timeout",
        413: "request bodies are not accepted",
        414: "request line too long",
        431: "request headers too large",
        500: "internal error",
        503: "too many connections",
    }.get(status, "error")


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    status: Callable[[], dict[str, Any]],
    rules: RulesArchive | None = None,
    auth: EndpointAuth | None = None,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``/metrics``, ``/status`` and (given ``rules``) ``/rules`` until cancelled.

    Raises:
        OSError: the address cannot be bound (before ``task_status.started``).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    address = listeners[0].socket.getsockname()[:2]
    logger.info("metrics on http://%s:%d/metrics", *address)
    if auth is None or not auth.secret:
        logger.warning(
            "no SharedSecret: /status is served unauthenticated to anyone who can reach "
            "http://%s:%d (and /rules is refused)",
            *address,
        )
    endpoint = Endpoint(metrics, status, rules, auth)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, endpoint.handle, listeners)
        task_status.started(address)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
