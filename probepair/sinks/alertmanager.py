"""Alertmanager sink: batches of alerts POSTed to ``SinkUrl``/api/v2/alerts with httpx.

Mapping (the OMNIbus fields as Alertmanager's labels and annotations):

- labels: ``alertname`` (@AlertGroup, else ``probepair``), ``Node``, ``AlertKey``,
  ``Agent``, ``Manager``, ``Identifier``, ``severity`` (the OMNIbus name of @Severity:
  clear, indeterminate, warning, minor, major, critical); empty values are left out,
  as Alertmanager treats an empty label as an absent one.
- annotations: ``summary`` (@Summary) and ``EventKey``.
- ``startsAt`` is @FirstOccurrence (else now); ``endsAt`` is now for a resolution
  (@Type 2), which resolves the alert with those labels, else now +
  ``AlertmanagerResolve``: an alert not repeated within that time resolves by itself,
  a repeat extends it.

Alertmanager identifies an alert by the fingerprint of its labels, so a resend (after a
failover, or a spool replay) merges into the alert it already holds: harmless, never a
second notification. Delivery is acknowledged by a 2xx answer to the whole POST.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import httpx
import orjson
import trio

from probepair.config.redact import redact_credentials
from probepair.errors import SinkError
from probepair.events import Item
from probepair.sinks.http import JsonPoster

if TYPE_CHECKING:
    from probepair.config.props import Props

MAX_POST: Final = 1000  # alerts per request (~0.5 MB bodies)
SEVERITIES: Final = ("clear", "indeterminate", "warning", "minor", "major", "critical")
RESOLUTION: Final = 2  # @Type of a resolution event (OMNIbus)
LABELS: Final = ("Node", "AlertKey", "Agent", "Manager", "Identifier")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _label(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def severity_name(value: object) -> str:
    """The OMNIbus name of a Severity (0..5); ``indeterminate`` for anything else."""
    n = _number(value)
    return SEVERITIES[int(n)] if n is not None and 0 <= n < len(SEVERITIES) else "indeterminate"


def to_alert(payload: bytes, *, now: float, resolve_after: float) -> dict[str, object]:
    """One probepair alert (JSON) as an Alertmanager v2 ``postableAlert``.

    Raises:
        orjson.JSONDecodeError: ``payload`` is not JSON (never for the probe's own alerts).
    """
    fields = orjson.loads(payload)
    if not isinstance(fields, dict):
        fields = {}
    labels = {"alertname": _label(fields.get("AlertGroup")) or "probepair"}
    for name in LABELS:
        text = _label(fields.get(name))
        if text:
            labels[name] = text
    labels["severity"] = severity_name(fields.get("Severity"))
    annotations = {
        "summary": _label(fields.get("Summary")),
        "EventKey": _label(fields.get("EventKey")),
    }
    first = _number(fields.get("FirstOccurrence"))
    starts = min(first, now) if first is not None and first > 0 else now
    resolved = _number(fields.get("Type")) == RESOLUTION
    ends = now if resolved else now + resolve_after
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
    }


class AlertmanagerSink:
    """POSTs alerts to Alertmanager's v2 API at ``SinkUrl`` (e.g. ``http://host:9093``)."""

    def __init__(
        self,
        props: Props,
        transport: httpx.AsyncBaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``transport`` replaces the network, ``wall_clock`` the time (both for tests)."""
        if not props.SinkUrl:
            raise SinkError("alertmanager", "SinkType 'alertmanager' needs SinkUrl")
        self.url = props.SinkUrl.rstrip("/") + "/api/v2/alerts"
        self.name = f"alertmanager:{redact_credentials(props.SinkUrl)}"
        self.resolve_after = props.AlertmanagerResolve
        self._wall_clock = wall_clock
        self._poster = JsonPoster(self.name, transport, show_answer=True)

    async def open(self) -> None:
        await self._poster.open()
        await trio.lowlevel.checkpoint()

    async def deliver(self, items: list[Item]) -> list[bytes]:
        done: list[bytes] = []
        for i in range(0, len(items), MAX_POST):
            chunk = items[i : i + MAX_POST]
            now = self._wall_clock()  # an event timestamp, not a timer
            try:
                alerts = [to_alert(p, now=now, resolve_after=self.resolve_after) for _, p in chunk]
            except orjson.JSONDecodeError as exc:
                raise SinkError(self.name, f"not a JSON alert: {exc}") from None
            await self._poster.post(self.url, orjson.dumps(alerts))
            done.extend(k for k, _ in chunk)
            await trio.lowlevel.checkpoint()
        return done

    async def check(self) -> None:
        """An empty alert list to the v2 API: Alertmanager answers 200 when it takes
        alerts (its /-/ready says less: it does not go through the API)."""
        await self._poster.check(self.url)

    async def aclose(self) -> None:
        await self._poster.aclose()
