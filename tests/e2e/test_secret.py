"""The pair's secret in real processes: refusals at start, never shown anywhere, and
AllowInsecureHeartbeats visible in the log, ``probepair_info`` and ``probepair status``."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    PAIR_SECRET,
    STANDBY,
    Timings,
    http_get,
    loopback_pair,
    probepair_cli,
    probepair_cmd,
    scrape,
    start_probe,
    wait_for_lines,
    wait_metric,
    write_secret_file,
)

pytestmark = pytest.mark.e2e

HINT = ("put the output of 'probepair secret' in a SharedSecretFile (the same on both "
        "probes), or set AllowInsecureHeartbeats: true to start anyway")
PLACEHOLDER = "CHANGE-ME-to-the-same-long-random-secret-on-both-hosts"
PEER = ["--peerhost", "127.0.0.1", "--peerport", "9", "--feedport", "0", "--rulesfile", ""]

# Every way a rules file can copy a property into an alert or the log.
LEAKY_RULES = """
@Secret = %SharedSecret
@SecretFile = %SharedSecretFile
@SinkUrl = %SinkUrl
@Identifier = $Line
@Summary = $Line
if (exists($Manager)) {
    @Manager = $Manager
    @Summary = $Summary
}
log(WARNING, "the rules read SharedSecret as " + %SharedSecret)
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(probepair_cmd(*args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)


def test_refusals_exit_2_with_one_line(tmp_path: Path) -> None:
    props = tmp_path / "m.props"
    props.write_text(f"Mode: master\nSharedSecret: '{PLACEHOLDER}'\n")
    loose = write_secret_file(tmp_path / "loose")
    loose.chmod(0o644)
    cases = [
        (["--mode", "master"], "command line: SharedSecret: Mode 'master' signs heartbeats "
         f"with it: expected a random secret of at least 32 bytes, got none; {HINT}"),
        (["--mode", "slave", "--sharedsecret", "e2e-secret"], "command line: SharedSecret: "
         "Mode 'slave' signs heartbeats with it: expected a random secret of at least 32 "
         f"bytes, got 10 bytes; {HINT}"),
        (["--props", str(props)], f"{props}: SharedSecret: Mode 'master' signs heartbeats "
         "with it: expected a random secret of at least 32 bytes, got a placeholder (it "
         f"contains 'CHANGE-ME'); {HINT}"),
        (["--mode", "master", "--sharedsecretfile", str(loose)], "command line: "
         f"SharedSecretFile: {str(loose)!r} has mode 0644, expected 0600 or stricter (no "
         f"access for group or others): chmod 600 {loose}"),
    ]
    for args, message in cases:
        result = _run(tmp_path, "run", *args, *PEER)
        assert (result.returncode, result.stderr.strip()) == (2, f"probepair: {message}")
        assert result.stdout == ""
        assert PAIR_SECRET not in result.stderr


async def test_the_secret_never_shows(tmp_path: Path) -> None:
    rules = tmp_path / "leaky.rules"
    rules.write_text(LEAKY_RULES)
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    # Every secret-bearing property: the pair's secret, and a SinkUrl with a password and
    # an sslpassword (the file sink never uses it, but dumpprops, %SinkUrl and logs see it).
    password, sslpassword = "pw-" + secrets.token_hex(8), "sslpw-" + secrets.token_hex(8)
    sink_url = f"postgresql://alerts:{password}@db.example:5432/alerts?sslpassword={sslpassword}"
    extra = ["--rulesfile", str(rules), "--messagelevel", "debug", "--sinkurl", sink_url]
    shown: list[str] = []
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, STANDBY, 1, timeout=10)
        for probe in (master, slave):
            await trio.to_thread.run_sync(_send, probe.address("feed"), b"hello")
        await wait_for_lines(m.sink, 2)  # "Running ..." and "hello"
        for probe in (master, slave):
            shown.append((await http_get(probe.address("metrics"), "/status")).decode())
            shown.append((await http_get(probe.address("metrics"), "/metrics")).decode())
        shown.append(await probepair_cli(m, s, "status", "--json"))
        shown.append(await probepair_cli(m, s, "status"))
        for probe in (master, slave):
            assert await probe.stop() == 0
    alerts = [json.loads(line) for line in m.sink.read_bytes().splitlines()]
    summaries = [a["Summary"] for a in alerts]
    assert summaries[0] == "Running ..." and summaries[-1] == "Going Down ..."
    assert "hello" in summaries
    assert {a["Secret"] for a in alerts} == {"<redacted>"}  # ProbeWatch events too
    assert {a["SecretFile"] for a in alerts} == {str(m.cwd / "secret")}
    for side in (m, s):
        shown.append(side.log.read_text())
        shown.append(side.sink.read_text() if side.sink.exists() else "")
        dump = _run(side.cwd, "--dumpprops",
                    *side.args(m if side is s else s, timings, extra=extra))
        assert "SinkUrl: '<redacted>'" in dump.stdout
        assert "\nSharedSecretFile: '" in dump.stdout
        shown.append(dump.stdout)
    assert "the rules read SharedSecret as <redacted>" in m.log.read_text()
    assert all(text for text in shown)
    assert {a["SinkUrl"] for a in alerts} == {
        "postgresql://alerts:***@db.example:5432/alerts?sslpassword=***"}
    for value in (PAIR_SECRET, password, sslpassword):
        assert [text for text in shown if value in text] == [], value


async def test_the_metrics_token_never_shows(tmp_path: Path) -> None:
    """MetricsAuth bearer: /metrics wants the token (401 without it or with another),
    and the token shows nowhere: log, /status, /metrics, status, --dumpprops."""
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    token = "tok-" + secrets.token_hex(16)
    token_file = m.cwd / "metrics.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    extra = ["--messagelevel", "debug", "--metricsauth", "bearer",
             "--metricstokenfile", str(token_file)]
    shown: list[str] = []
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=extra), cwd=m.cwd)
        address = master.address("metrics")
        with trio.fail_after(10):
            while ACTIVE + " 1.0" not in (text := (await http_get(
                    address, "/metrics", bearer=token)).decode()):
                await trio.sleep(0.05)
        shown.append(text)
        for wrong in ({}, {"bearer": "tok-" + secrets.token_hex(16)}):
            with pytest.raises(AssertionError, match="401"):
                await http_get(address, "/metrics", **wrong)  # type: ignore[arg-type]
        after = (await http_get(address, "/metrics", bearer=token)).decode()
        assert 'probepair_http_errors_total{reason="unauthorized"} 2.0' in after
        shown.append((await http_get(address, "/status")).decode())
        shown.append(await probepair_cli(m, s, "status", "--json"))
        assert await master.stop() == 0
    shown.append(m.log.read_text())
    dump = _run(m.cwd, "--dumpprops", *m.args(s, timings, extra=extra))
    assert f"MetricsTokenFile: '{token_file}'" in dump.stdout
    shown.append(dump.stdout)
    assert all(text for text in shown)
    assert [text for text in shown if token in text] == []


def _send(address: tuple[str, int], line: bytes) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(line, address)


async def test_allow_insecure_heartbeats_runs_and_says_so(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    # No secret at all (the option given last wins), allowed explicitly.
    extra = ["--sharedsecretfile", "", "--allowinsecureheartbeats", "true"]
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=extra), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, extra=extra), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, STANDBY, 1, timeout=10)
        info = [k for k in await scrape(master) if k.startswith("probepair_info{")]
        assert len(info) == 1 and 'allow_insecure_heartbeats="true"' in info[0]
        table = await probepair_cli(m, s, "status", secret=False)  # as the probes: none
        assert re.search(r"^insecure beats +ALLOWED +ALLOWED$", table, re.MULTILINE), table
        assert table.rstrip().splitlines()[-1] == (
            "WARNING: AllowInsecureHeartbeats on m, s: heartbeats and acks may be forged")
        nursery.cancel_scope.cancel()
    for side in (m, s):
        assert ("AllowInsecureHeartbeats is true and the secret is empty: anyone who can "
                "send to this probe's heartbeat port can forge heartbeats and acks"
                ) in side.log.read_text()
