"""Targets onto sinks: Table fields, genevent alerts with derived keys through the
gate, per-target SQLite tables, and ``rules check``/``rules run`` for them."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from probepair.config import props
from probepair.errors import RulesCompileError
from probepair.events import Event, KeyMaker, derived_key, key_of
from probepair.metrics import Metrics
from probepair.ops.rulestool import check_command, run_command
from probepair.pipeline.alerts import serialise
from probepair.pipeline.processor import Processor
from probepair.rules import load_rules
from probepair.sinks.base import MAX_TARGET_TABLES
from probepair.sinks.file import FileSink
from probepair.sinks.sqlite import SqliteSink

RULES = """\
DefaultAlerts = registertarget(%Server, "", "alerts.status")
VmStatus = registertarget(%Server, "", "custom.vmstatus")
@Node = $Token1
@Summary = $Line
@Identifier = $Token1
if (match($Token2, "vm")) {
    settarget(VmStatus)
    @VmName = $Token3
}
if (match($Token2, "gen")) {
    genevent(VmStatus, @Node, $Token1, @VmName, "generated", @Identifier, "gen:" + $Token1)
}
"""


class HoldingGate:
    """Holds the keys in ``held``; records every key it was asked about, in order."""

    def __init__(self, held: set[bytes]) -> None:
        self.held = held
        self.seen: list[bytes] = []

    def event(self, key: bytes, payload: bytes, now: float = 0.0) -> bool:
        self.seen.append(key)
        return key not in self.held

    flushing = False  # never flushes: nothing waits behind it

    def batch_event(self) -> tuple[object, float]:
        return self.event, 0.0

    def delivered(self, keys: list[bytes]) -> None:
        pass

    def request_mode(self, mode: object) -> None:
        pass


def _processor(
    tmp_path: Path, metrics: Metrics, wall_clock: Callable[[], float], gate: object
) -> Processor:
    path = tmp_path / "t.rules"
    path.write_text(RULES)
    p = props.load([("test", {"FeedPort": 0, "FeedFormat": "line", "RulesFile": str(path)})])
    return Processor(p, load_rules(path), gate, metrics, wall_clock)  # type: ignore[arg-type]


def test_genevent_alerts_get_derived_keys_and_pass_the_gate_first(
    tmp_path: Path, metrics: Metrics, wall_clock: Callable[[], float]
) -> None:
    raws = [b"h1 gen x", b"h2 vm vm7", b"h3 plain"]
    events = [Event(raw, key_of(raw), 1.0) for raw in raws]
    gen_key = derived_key(events[0].key, 0)
    gate = HoldingGate(held={events[2].key})
    out = _processor(tmp_path, metrics, wall_clock, gate).process(events)
    assert gate.seen == [gen_key, events[0].key, events[1].key, events[2].key]
    assert [key for key, _ in out] == [gen_key, events[0].key, events[1].key]
    alerts = [orjson.loads(payload) for _, payload in out]
    assert alerts[0] == {
        "Node": "h1",
        "VmName": "generated",
        "Identifier": "gen:h1",
        "Table": "custom.vmstatus",
        "EventKey": gen_key.hex(),
    }
    assert "Table" not in alerts[1]
    assert alerts[2]["Table"] == "custom.vmstatus"
    assert alerts[2]["VmName"] == "vm7"


def test_derived_keys_differ_from_payload_keys_and_each_other() -> None:
    key = key_of(b"event")
    keys = {key, derived_key(key, 0), derived_key(key, 1), key_of(b"event", 1)}
    assert len(keys) == 4
    assert derived_key(key, 0) == derived_key(key_of(b"event"), 0)  # both probes agree


async def test_sqlite_writes_each_target_table(tmp_path: Path) -> None:
    db_path = tmp_path / "alerts.db"
    sink = SqliteSink(props.load([("test", {"SinkDatabase": str(db_path)})]))
    k1, k2, k3, k4 = (key_of(b"%d" % i) for i in range(4))
    items = [
        (k1, serialise({"Identifier": "a", "Node": "n1", "Summary": "status"}, k1)),
        (k2, serialise({"Identifier": "vm1", "VmName": "v", "Cpu": 3, "Table": "custom.vmstatus"}, k2)),
        (k3, serialise({"Identifier": "vm1", "VmName": "v2", "Mem": 1.5, "Table": "custom.vmstatus"}, k3)),
        (k4, serialise({"Identifier": "b", "Summary": "odd", "Table": "not a table!"}, k4)),
    ]  # fmt: skip
    try:
        assert await sink.deliver(items) == [k1, k2, k3, k4]
        assert await sink.deliver(items[1:2]) == [k2]  # a resend changes nothing
    finally:
        await sink.aclose()
    db = sqlite3.connect(db_path)
    try:
        status = db.execute("SELECT Identifier FROM alerts_status ORDER BY Serial").fetchall()
        vm = db.execute(
            "SELECT Identifier, VmName, Cpu, Mem, EventKey FROM custom_vmstatus"
        ).fetchall()
    finally:
        db.close()
    assert status == [("a",), ("b",)]
    assert vm == [("vm1", "v2", 3, 1.5, k3.hex())]


async def test_file_sink_lines_carry_the_table(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    sink = FileSink(props.load([("test", {"SinkFile": str(path)})]))
    key = key_of(b"x")
    await sink.open()
    try:
        await sink.deliver([(key, serialise({"A": 1, "Table": "custom.t"}, key))])
    finally:
        await sink.aclose()
    assert orjson.loads(path.read_bytes()) == {"A": 1, "Table": "custom.t", "EventKey": key.hex()}


def test_rules_run_prints_generated_alerts_first(tmp_path: Path) -> None:
    path = tmp_path / "t.rules"
    path.write_text(RULES)
    out, err = io.BytesIO(), io.StringIO()
    code = run_command(
        str(path), "line", io.BytesIO(b"h1 gen x\n"), out, err, props={"Server": "NCOMS"},
        wall_clock=lambda: 1000.0, hostname="h",
    )  # fmt: skip
    assert code == 0, err.getvalue()
    key = KeyMaker().key(b"h1 gen x", 1000.0)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["EventKey"] for line in lines] == [derived_key(key, 0).hex(), key.hex()]


def test_check_prints_files_includes_and_targets(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "cases.inc").write_text('case "b":\n    @B = 1\n')
    (tmp_path / "inc" / "tables.inc").write_text('table t = {{"k", "v"}}\n')
    main = tmp_path / "main.rules"
    main.write_text(
        'T = registertarget(%Server, "", "alerts.status")\n'
        'V = registertarget(%Server, "", "custom.v", "custom.vdetails")\n'
        'include "inc/tables.inc"\n'
        "switch ($a) {\n"
        '    case "a":\n'
        "        settarget(V)\n"
        '    include "inc/cases.inc"\n'
        "}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(main), out, err) == 0, err.getvalue()
    inc = tmp_path / "inc"
    assert out.getvalue() == (
        f"{main}: OK (8 statements, 1 tables, 2 includes, 2 targets)\n"
        f"  {main}: 6 statements, 0 tables, 2 includes\n"
        f"    line 3: include 'inc/tables.inc' -> {inc / 'tables.inc'}\n"
        f"    line 7: include 'inc/cases.inc' -> {inc / 'cases.inc'}\n"
        f"  {inc / 'tables.inc'}: 1 statements, 1 tables, 0 includes\n"
        f"  {inc / 'cases.inc'}: 1 statements, 0 tables, 0 includes\n"
        f"  target T: table alerts.status (default), details alerts.details, at {main}:1:1\n"
        f"  target V: table custom.v, details custom.vdetails, at {main}:2:1\n"
    )


def test_no_rule_can_name_a_table_from_event_text(tmp_path: Path) -> None:
    """Table comes only from a registertarget() name: assigning @Table (from a token or
    in genevent) is a compile error at its line and column, so no event picks a table."""
    cases = {
        '@Table = $Token1\n': (1, 1),
        'T = registertarget(%Server, "", "custom.t")\n'
        'genevent(T, @Node, "n", @Table, $Token2)\n': (2, 25),
    }
    for text, (line, col) in cases.items():
        path = tmp_path / "table.rules"
        path.write_text(text)
        with pytest.raises(RulesCompileError) as err:
            load_rules(path)
        assert (err.value.line, err.value.col) == (line, col), text
        assert "@Table is the alert's target table" in str(err.value)
        assert str(path) in str(err.value)


async def test_sqlite_target_tables_are_bounded(tmp_path: Path) -> None:
    """Past MAX_TARGET_TABLES distinct tables, alerts go to alerts_status: the tables a
    process creates are bounded whatever the alerts name."""
    db_path = tmp_path / "alerts.db"
    sink = SqliteSink(props.load([("test", {"SinkDatabase": str(db_path)})]))
    n = MAX_TARGET_TABLES + 3
    items = [
        (k, serialise({"Identifier": f"i{i}", "Table": f"custom.t{i}"}, k))
        for i, k in enumerate(key_of(b"%d" % i) for i in range(n))
    ]
    try:
        assert len(await sink.deliver(items)) == n
    finally:
        await sink.aclose()
    db = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        status = db.execute("SELECT Identifier FROM alerts_status ORDER BY Serial").fetchall()
    finally:
        db.close()
    assert len({t for t in tables if t.startswith("custom_")}) == MAX_TARGET_TABLES
    assert status == [(f"i{i}",) for i in range(MAX_TARGET_TABLES, n)]
