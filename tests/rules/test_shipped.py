"""The shipped rules files: what syslog.rules makes of real-looking syslog lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from probepair.pipeline.tokenise import tokenise
from probepair.rules import load_rules

from .conftest import Recorder

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(scope="module")
def syslog_program():  # type: ignore[no-untyped-def]
    return load_rules(RULES / "syslog.rules")


def _run(program, line: bytes, rec: Recorder | None = None):  # type: ignore[no-untyped-def]
    rec = rec or Recorder()
    alert = program.run(tokenise("syslog", line), rec.ctx())
    assert rec.errors == []
    return alert


@pytest.mark.parametrize("path", sorted(RULES.glob("*.rules")), ids=lambda p: p.name)
def test_every_shipped_file_compiles(path: Path) -> None:
    assert load_rules(path).statements > 0


@pytest.mark.parametrize(
    ("pri", "severity"), [(0, 5), (1, 5), (2, 5), (3, 4), (4, 3), (5, 2), (6, 1), (7, 1), (None, 2)]
)
def test_severity_map(syslog_program, pri: int | None, severity: int) -> None:  # type: ignore[no-untyped-def]
    head = b"" if pri is None else b"<%d>" % (8 + pri)
    alert = _run(syslog_program, head + b"Nov 22 04:04:33 web1 app[1]: hello")
    assert alert["Severity"] == severity


def test_stock_fields_and_identifier(syslog_program) -> None:  # type: ignore[no-untyped-def]
    line = b"<38>Nov 22 04:04:33 web1 sshd[2211]: Failed password for invalid user admin from 203.0.113.9 port 5 ssh2"
    assert _run(syslog_program, line) == {
        "Manager": "syslogd",
        "Agent": "Syslog",
        "Class": 4000,
        "Type": 1,
        "Node": "web1",
        "NodeAlias": "web1",
        "AlertGroup": "ssh-auth",
        "AlertKey": "admin@203.0.113.9",
        "Severity": 3,
        "Summary": "Failed password for invalid user admin from 203.0.113.9 port 5 ssh2",
        "Identifier": "web1 admin@203.0.113.9 ssh-auth 1 Syslog syslogd",
    }


def test_link_down_and_up_are_problem_and_resolution(syslog_program) -> None:  # type: ignore[no-untyped-def]
    down = _run(syslog_program, b"<6>Nov 22 04:04:35 db2 kernel: eth0: Link is Down")
    up = _run(syslog_program, b"<6>Nov 22 04:04:36 db2 kernel: eth0: Link is Up 1000Mbps")
    assert (down["AlertKey"], down["Type"], down["Severity"]) == ("eth0", 1, 4)
    assert (up["AlertKey"], up["Type"], up["Severity"]) == ("eth0", 2, 1)


def test_noise_is_discarded(syslog_program) -> None:  # type: ignore[no-untyped-def]
    assert _run(syslog_program, b"<46>Nov 22 04:04:35 h syslogd: -- MARK --") is None
    assert (
        _run(
            syslog_program,
            b"<78>Nov 22 04:05:01 a CRON[9]: pam_unix(cron:session): session closed for user root",
        )
        is None
    )


def test_no_hostname_uses_the_probe_host(syslog_program) -> None:  # type: ignore[no-untyped-def]
    alert = _run(syslog_program, b"just some text")
    assert (alert["Node"], alert["AlertGroup"]) == ("probehost", "syslog")


@pytest.mark.parametrize(
    ("summary", "severity", "type_"),
    [("Running ...", 1, 2), ("Going Down ...", 5, 1), ("Mode changed to master", 2, 1)],
)
def test_probewatch_self_events(syslog_program, summary: str, severity: int, type_: int) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    alert = syslog_program.run(
        {"Manager": "ProbeWatch", "Summary": summary, "Node": "p1"}, rec.ctx()
    )
    assert alert == {
        "Manager": "ProbeWatch",
        "Agent": "Syslog",
        "Node": "p1",
        "AlertGroup": "probestat",
        "Severity": severity,
        "Type": type_,
        "AlertKey": "Syslog",
        "Summary": f"Syslog probe on p1: {summary}",
        "Identifier": f"p1 Syslog probestat {type_} Syslog ProbeWatch",
    }


def test_lookup_example_enriches() -> None:
    program = load_rules(RULES / "lookup-example.rules")
    alert = _run(
        program,
        b"<38>Nov 22 04:04:33 web1 sshd[1]: Accepted publickey for deploy from 10.1.1.1 port 2",
    )
    assert (alert["Location"], alert["Customer"], alert["AlertGroup"]) == (
        "london-dc1",
        "web-team",
        "ssh/ssh-auth",
    )
    other = _run(program, b"<13>Nov 22 04:04:33 zz myapp: hi")
    assert (other["Location"], other["Customer"], other["AlertGroup"]) == (
        "unknown site",
        "operations",
        "application/myapp",
    )


def test_mode_switch_example() -> None:
    program = load_rules(RULES / "mode-switch-example.rules")
    rec = Recorder()
    local = {"Manager": "syslogd", "FeedType": "file"}
    ctx = rec.ctx(local)
    line = b"<13>Nov 22 04:04:33 ops1 admin: probepair take over probehost"
    assert program.run(tokenise("syslog", line), ctx) is None
    assert ctx.assigned == {"Mode": "master"}
    assert rec.logs == [("WARNING", "switching to master on request from this host (file)")]
    ctx = rec.ctx(local)
    program.run(
        tokenise("syslog", b"<13>Nov 22 04:04:33 ops1 admin: probepair take over other"), ctx
    )
    assert ctx.assigned == {"Mode": "slave"}


@pytest.mark.parametrize("sender", ["127.0.0.1", "::1"])
def test_mode_switch_example_takes_a_request_from_this_hosts_loopback(sender: str) -> None:
    program = load_rules(RULES / "mode-switch-example.rules")
    rec = Recorder()
    ctx = rec.ctx({"Manager": "syslogd", "FeedType": "udp"})
    tokens = tokenise("syslog", b"<13>Nov 22 04:04:33 ops1 admin: probepair take over probehost")
    tokens.update(PeerAddress=sender, PeerPort="40000")  # what the udp feed sets
    assert program.run(tokens, ctx) is None
    assert ctx.assigned == {"Mode": "master"}
    assert rec.logs == [("WARNING", "switching to master on request from this host (udp)")]


@pytest.mark.parametrize("sender", ["10.0.0.5", "127.0.0.1.evil", ""])
def test_mode_switch_example_ignores_a_request_from_another_sender(sender: str) -> None:
    program = load_rules(RULES / "mode-switch-example.rules")
    rec = Recorder()
    ctx = rec.ctx({"Manager": "syslogd", "FeedType": "udp"})
    tokens = tokenise("syslog", b"<13>Nov 22 04:04:33 ops1 admin: probepair take over probehost")
    tokens.update(PeerAddress=sender, PeerPort="40000")
    assert program.run(tokens, ctx) is not None
    assert ctx.assigned == {}


@pytest.mark.parametrize("feed", ["udp", "tcp", "stdin"])
def test_mode_switch_example_ignores_a_line_from_the_network(feed: str) -> None:
    """A spoofed syslog line switches nothing: it is an ordinary event."""
    program = load_rules(RULES / "mode-switch-example.rules")
    rec = Recorder()
    ctx = rec.ctx({"Manager": "syslogd", "FeedType": feed})
    line = b"<13>Nov 22 04:04:33 ops1 admin: probepair take over probehost"
    alert = program.run(tokenise("syslog", line), ctx)
    assert ctx.assigned == {}
    assert alert is not None and "probepair take over probehost" in str(alert["Summary"])
