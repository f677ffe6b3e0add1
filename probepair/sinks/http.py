"""HTTP sink: POSTs batches as JSON arrays to ``SinkUrl`` with httpx.

Each alert carries its ``EventKey``; the request carries an ``Idempotency-Key`` header
derived from the batch's event keys, so a retried batch is recognisable server-side.
A 2xx response acknowledges the batch; anything else is a SinkError (retried by the
runner with back-off, spooled meanwhile).
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TYPE_CHECKING

import httpx
import trio

from probepair._version import __version__
from probepair.config.redact import redact_credentials
from probepair.errors import SinkError
from probepair.events import Item

if TYPE_CHECKING:
    from probepair.config.props import Props

REQUEST_TIMEOUT = 10.0  # seconds for one POST
MAX_POST = 1000  # alerts per request, to keep bodies around 0.5 MB


class JsonPoster:
    """The httpx client of a sink that POSTs JSON: opened on first use, closed bounded.

    Args:
        name: the sink's name, for SinkError.
        transport: replaces the network (tests pass an ``httpx.MockTransport``).
        show_answer: put the start of a non-2xx answer's body into the error.
    """

    def __init__(
        self, name: str, transport: httpx.AsyncBaseTransport | None, *, show_answer: bool
    ) -> None:
        self.name = name
        self._transport = transport
        self._show_answer = show_answer
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=REQUEST_TIMEOUT,
                transport=self._transport,
                headers={"User-Agent": f"probepair/{__version__}"},
            )

    async def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """POST ``body`` as JSON; returns on a 2xx answer.

        Raises:
            SinkError: the request failed or the server answered anything else.
        """
        await self.open()
        assert self._client is not None
        try:
            resp = await self._client.post(
                url, content=body, headers={"Content-Type": "application/json", **(headers or {})}
            )
        except httpx.HTTPError as exc:
            raise SinkError(self.name, f"request failed: {exc!r}") from None
        if not 200 <= resp.status_code < 300:
            detail = f": {resp.text.strip()[:200]!r}" if self._show_answer else ""
            raise SinkError(self.name, f"server answered {resp.status_code}{detail}")

    async def check(self, url: str) -> None:
        """POST an empty JSON array (no alert) to ``url``: a 2xx says a delivery would
        be taken now.

        Raises:
            SinkError: as ``post``.
        """
        await self.post(url, b"[]")

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with trio.move_on_after(2, shield=True):
                await client.aclose()


class HttpSink:
    def __init__(self, props: Props, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``transport`` replaces the network (tests pass an ``httpx.MockTransport``)."""
        if not props.SinkUrl:
            raise SinkError("http", "SinkType 'http' needs SinkUrl")
        self.url = props.SinkUrl
        self.name = f"http:{redact_credentials(self.url)}"
        self._poster = JsonPoster(self.name, transport, show_answer=False)

    async def open(self) -> None:
        await self._poster.open()

    async def deliver(self, items: list[Item]) -> list[bytes]:
        done: list[bytes] = []
        for i in range(0, len(items), MAX_POST):
            chunk = items[i : i + MAX_POST]
            body = b"[" + b",".join([p for _, p in chunk]) + b"]"
            keys = [k for k, _ in chunk]
            idem = blake2b(b"".join(keys), digest_size=16).hexdigest()
            await self._poster.post(self.url, body, {"Idempotency-Key": idem})
            done.extend(keys)
            await trio.lowlevel.checkpoint()
        return done

    async def check(self) -> None:
        await self._poster.check(self.url)

    async def aclose(self) -> None:
        await self._poster.aclose()
