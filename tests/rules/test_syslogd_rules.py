"""rules/syslogd.rules on FeedFormat omnibus: the alerts IBM's syslogd probe makes of
real lines (sshd, kernel, cron, a Cisco %LINK-3-UPDOWN), and ``probepair rules run
--format omnibus`` on the line of issue 23."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from probepair.events import Event
from probepair.ops.rulestool import run_command
from probepair.pipeline.omnibus import OmnibusTokeniser
from probepair.rules import Program, load_rules

from .conftest import Recorder

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "syslogd.rules"
ARRIVAL = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC).timestamp()
SSHD = b"<38>Nov 22 10:00:00 myhost sshd[123]: Failed password for root from 10.1.2.3 port 22 ssh2"


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def program() -> Program:
    return load_rules(RULES)


def nov22(h: int, m: int, s: int) -> str:
    return str(int(datetime(2026, 11, 22, h, m, s, tzinfo=UTC).timestamp()))


def alert_of(program: Program, raw: bytes, source: tuple[str, int] | None = None) -> dict:
    rec = Recorder()
    tokens = OmnibusTokeniser().tokens(Event(raw, b"k" * 8, ARRIVAL, source=source))
    alert = program.run(tokens, rec.ctx({"Manager": "syslogd"}))
    assert rec.errors == []
    assert alert is not None
    return alert


def test_sshd_failed_password(program: Program) -> None:
    alert = alert_of(program, SSHD, source=("10.0.0.5", 514))
    assert alert == {
        "Manager": "syslogd", "Class": 200, "Node": "myhost",
        "Summary": "Failed password for root from 10.1.2.3 port 22 ssh2",
        "Agent": "sshd", "Severity": 3, "Type": 1,
        "Identifier": "@myhost -> Failed password for root from 10.1.2.3 port 22 ssh2",
        "AlertGroup": "security", "AlertKey": "10.1.2.3",
        "FirstOccurrence": nov22(10, 0, 0), "LastOccurrence": nov22(10, 0, 0),
        "NodeAlias": "10.0.0.5",
    }


def test_kernel_out_of_memory(program: Program) -> None:
    raw = b"<3>Nov 22 10:00:01 db1 kernel: [12345.678901] Out of memory: Killed process 4242 (java)"
    alert = alert_of(program, raw)
    assert (alert["Node"], alert["Agent"], alert["Severity"], alert["AlertKey"]) == (
        "db1", "Linux kernel", 5, "4242")
    assert alert["Summary"] == "Out of memory: Killed process 4242 (java)"
    assert alert["Identifier"] == (
        "@db1 -> [12345.678901] Out of memory: Killed process 4242 (java)")
    assert alert["FirstOccurrence"] == alert["LastOccurrence"] == nov22(10, 0, 1)
    assert "NodeAlias" not in alert  # a file or stdin feed: no sender


def test_cron_job(program: Program) -> None:
    raw = b"<78>Nov 22 10:05:00 web1 CRON[4321]: (root) CMD (run-parts /etc/cron.hourly)"
    alert = alert_of(program, raw)
    assert alert["Summary"] == "(root) CMD (run-parts /etc/cron.hourly)"
    assert (alert["Node"], alert["Agent"], alert["AlertKey"], alert["Severity"]) == (
        "web1", "cron", "root", 1)
    assert alert["Identifier"] == "@web1 -> (root) CMD (run-parts /etc/cron.hourly)"
    assert alert["FirstOccurrence"] == nov22(10, 5, 0)


@pytest.mark.parametrize(
    "raw",
    [
        # With the device's sequence number and time stamp (service timestamps log)
        b"<187>Nov 22 10:06:00 rtr1 123: Nov 22 10:06:00.123: %LINK-3-UPDOWN: "
        b"Interface GigabitEthernet0/1, changed state to down",
        # Without them
        b"<187>Nov 22 10:06:00 rtr1 %LINK-3-UPDOWN: Interface GigabitEthernet0/1, "
        b"changed state to down",
    ],
)
def test_cisco_link_down(program: Program, raw: bytes) -> None:
    alert = alert_of(program, raw)
    summary = "LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down"
    assert alert["Summary"] == summary
    assert (alert["Node"], alert["Agent"], alert["Severity"], alert["Type"]) == (
        "rtr1", "Cisco", 4, 1)
    assert (alert["AlertKey"], alert["AlertGroup"]) == ("GigabitEthernet0/1", "LINK")
    assert alert["Identifier"] == f"@rtr1 -> GigabitEthernet0/1 {summary}"
    assert alert["FirstOccurrence"] == nov22(10, 6, 0)


def test_cisco_link_up_is_a_resolution(program: Program) -> None:
    raw = (b"<189>Nov 22 10:07:00 rtr1 124: Nov 22 10:07:00.001: %LINEPROTO-5-UPDOWN: "
           b"Line protocol on Interface GigabitEthernet0/1, changed state to up")
    alert = alert_of(program, raw)
    assert (alert["Severity"], alert["Type"], alert["AlertKey"]) == (1, 2, "GigabitEthernet0/1")


def test_unknown_program_takes_the_senders_severity_and_repeats_are_discarded(
    program: Program,
) -> None:
    alert = alert_of(program, b"<26>Nov 22 10:08:00 nas1 smartd[77]: Device: /dev/sda, FAILED")
    assert (alert["Agent"], alert["Severity"]) == ("smartd", 5)  # syslog crit
    rec = Recorder()
    raw = b"<13>Nov 22 10:09:00 nas1 smartd[77]: last message repeated 3 times"
    tokens = OmnibusTokeniser().tokens(Event(raw, b"k" * 8, ARRIVAL))
    assert program.run(tokens, rec.ctx()) is None


def test_probewatch_events(program: Program) -> None:
    rec = Recorder()
    fields = {"Manager": "ProbeWatch", "Summary": "Running ...", "Node": "p1", "Agent": "pp"}
    alert = program.run(fields, rec.ctx(), fields)
    assert alert is not None
    assert (alert["Severity"], alert["Type"], alert["Summary"]) == (
        1, 2, "pp probe on p1: Running ...")


def test_rules_run_format_omnibus_on_the_issue_line() -> None:
    out, err = io.BytesIO(), io.StringIO()
    code = run_command(str(RULES), "omnibus", io.BytesIO(SSHD + b"\n"), out, err,
                       props={"Manager": "syslogd"}, wall_clock=lambda: ARRIVAL,
                       hostname="probehost")
    assert code == 0, err.getvalue()
    [alert] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert alert["Summary"] == "Failed password for root from 10.1.2.3 port 22 ssh2"
    assert alert["FirstOccurrence"] == nov22(10, 0, 0)
    assert alert["Node"] == "myhost"


def test_the_cli_gives_summary_and_first_occurrence() -> None:
    """The issue's command line, as a user runs it (a subprocess, this worktree's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"}
    result = subprocess.run(
        [sys.executable, "-m", "probepair", "rules", "run", str(RULES), "--format", "omnibus"],
        input=SSHD + b"\n", capture_output=True, env=env, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    alert = json.loads(result.stdout)
    assert alert["Summary"] and alert["FirstOccurrence"]
    assert alert["Summary"] == "Failed password for root from 10.1.2.3 port 22 ssh2"
