"""The alertmanager sink: the mapping, and delivery to a real Alertmanager on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
import trio

from probepair.config import props
from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.pipeline.alerts import serialise
from probepair.sinks import make_sink
from probepair.sinks.alertmanager import AlertmanagerSink, severity_name, to_alert
from tests import servers
from tests.servers import Alertmanager

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def alert(n: int, **fields: object) -> Item:
    key = key_of(b"event %d" % n)
    base = {"Node": "web1", "AlertKey": "disk", "AlertGroup": "fs", "Agent": "Syslog",
            "Manager": "probepair", "Identifier": f"web1 disk fs {n}", "Summary": f"event {n}",
            "Severity": 4, "Type": 1}
    return key, serialise({**base, **fields}, key)


def make(**values: object) -> props.Props:
    return props.load([("test", values)])


def test_mapping_of_a_problem() -> None:
    key, payload = alert(1, FirstOccurrence=NOW - 60)
    assert to_alert(payload, now=NOW, resolve_after=300.0) == {
        "labels": {"alertname": "fs", "Node": "web1", "AlertKey": "disk", "Agent": "Syslog",
                   "Manager": "probepair", "Identifier": "web1 disk fs 1", "severity": "major"},
        "annotations": {"summary": "event 1", "EventKey": key.hex()},
        "startsAt": "2023-11-14T22:12:20.000Z",
        "endsAt": "2023-11-14T22:18:20.000Z",
    }


def test_mapping_of_a_resolution_and_of_sparse_alerts() -> None:
    _, payload = alert(2, Type=2, Severity=1, FirstOccurrence=NOW + 5)
    resolved = to_alert(payload, now=NOW, resolve_after=300.0)
    assert resolved["startsAt"] == resolved["endsAt"] == "2023-11-14T22:13:20.000Z"
    sparse = to_alert(orjson.dumps({"Summary": "x", "Severity": "9"}), now=NOW,
                      resolve_after=60.0)
    assert sparse["labels"] == {"alertname": "probepair", "severity": "indeterminate"}
    assert sparse["annotations"] == {"summary": "x", "EventKey": ""}
    assert [severity_name(s) for s in (0, 1, 2, 3, "4", 5.0, 6, -1, None, True)] == [
        "clear", "indeterminate", "warning", "minor", "major", "critical",
        "indeterminate", "indeterminate", "indeterminate", "indeterminate"]


async def test_posts_batches_and_reports_failures() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200 if len(requests) != 2 else 400, text="bad alert\n")

    sink = AlertmanagerSink(make(SinkType="alertmanager", SinkUrl="http://am.example:9093/"),
                            transport=httpx.MockTransport(handler), wall_clock=lambda: NOW)
    try:
        items = [alert(1), alert(2)]
        assert await sink.deliver(items) == [items[0][0], items[1][0]]
        with pytest.raises(SinkError, match=r"^sink alertmanager:http://am\.example:9093/: "
                                            r"server answered 400: 'bad alert'$"):
            await sink.deliver([alert(3)])
    finally:
        await sink.aclose()
    assert str(requests[0].url) == "http://am.example:9093/api/v2/alerts"
    assert [a["labels"]["Identifier"] for a in orjson.loads(requests[0].content)] == [
        "web1 disk fs 1", "web1 disk fs 2"]


def test_needs_a_url() -> None:
    with pytest.raises(SinkError, match=r"^sink alertmanager: SinkType 'alertmanager' "
                                        r"needs SinkUrl$"):
        AlertmanagerSink(make())


@pytest.fixture(scope="module")
def am() -> Iterator[Alertmanager]:
    with servers.alertmanager() as server:
        yield server


def held(am: Alertmanager, tag: str) -> list[dict[str, object]]:
    """The alerts Alertmanager reports as not resolved whose Identifier starts with tag."""
    return [a for a in am.alerts()
            if str(a["labels"].get("Identifier", "")).startswith(tag)]  # type: ignore[attr-defined]


async def test_real_alertmanager_holds_resolves_and_merges_resends(am: Alertmanager) -> None:
    sink = make_sink(make(SinkType="alertmanager", SinkUrl=am.url))
    tag = key_of(b"run").hex()
    problems = [alert(n, Identifier=f"{tag} p{n}") for n in range(5)]
    clear = alert(9, Identifier=f"{tag} clear", Type=2, Severity=1)
    try:
        with trio.fail_after(10):
            await sink.deliver([*problems, clear])
            await sink.deliver(problems[:2])  # a failover resend: merged, not added
    finally:
        await sink.aclose()
    got = await trio.to_thread.run_sync(held, am, tag)
    # Each problem once (the resends merged by fingerprint); the resolution is resolved,
    # so Alertmanager does not list it among the alerts it holds.
    by_id = {str(a["labels"]["Identifier"]): a for a in got}  # type: ignore[index]
    assert len(got) == len(by_id) == 5
    assert sorted(by_id) == [f"{tag} p{n}" for n in range(5)]
    for n in range(5):
        a = by_id[f"{tag} p{n}"]
        assert a["status"]["state"] == "active"  # type: ignore[index]
        assert a["labels"]["severity"] == "major"  # type: ignore[index]
        assert a["annotations"]["EventKey"] == problems[n][0].hex()  # type: ignore[index]


@pytest.mark.parametrize(("level", "httpx_level"), [("info", "WARNING"), ("debug", "DEBUG")])
def test_http_requests_are_not_logged_at_info(level: str, httpx_level: str) -> None:
    import logging

    from probepair.cli import setup_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("httpx").level)
    try:
        setup_logging(make(MessageLevel=level))
        assert logging.getLevelName(logging.getLogger("httpx").getEffectiveLevel()) == httpx_level
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        root.setLevel(saved[0])
        for h in saved[1]:
            root.addHandler(h)
        logging.getLogger("httpx").setLevel(saved[2])
