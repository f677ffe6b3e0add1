"""A pair of SNMP trap probes fed by net-snmp's own senders, and through kill -9.

- ``snmptrap`` v1, v2c and v3 authPriv and ``snmpinform`` v2c (UDP and TCP) and v3
  (authPriv, with its engine discovery) send to both probes of a loopback pair, as snmpd with two trap
  sinks does: every trap is delivered once, with mttrapd's elements; each inform is
  answered by each probe (the standby too) and not retried; a wrong v3 pass phrase is
  rejected and counted on both.
- rules/mttrapd.rules passes ``probepair rules check`` and turns a set of net-snmp
  traps into the expected alerts.
- A pair under 2,000 traps/s (Python sender, numbered traps) through 3 kill -9 cycles
  of the master, both writing one SQLite database (the key-aware sink): 0 lost, 0
  written twice (no Tally above 1).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
import trio

from tests import servers
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    loopback_pair,
    probepair_cmd,
    scrape,
    start_probe,
    wait_metric,
)
from tests.e2e.scenarios import kill_cycles
from tests.e2e.snmpsender import TrapFeeder, trap

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2,
                  ack_interval=0.1)
START_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0
SENDER_ENGINE = "0x8000000001020304"  # the v3 trap sender's engine (snmptrap -e)
USERS = f"""# SnmpUsersFile in mttrapd's form
createUser -e {SENDER_ENGINE} trapuser SHA trapauth123 AES trappriv123
createUser informer SHA-256 informauth123 AES informpriv123
"""
UPTIME = "4200"  # the same uptime in both copies of a trap: identical PDUs, one key


def snmp_args(side: PairSide, peer: PairSide, users: Path, extra: list[str]) -> list[str]:
    return side.args(peer, TIMINGS, extra=[
        "--feedtype", "snmp", "--snmpusersfile", str(users), "--nonameresolution", "true",
        *extra])


async def run_tool(*cmd: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        done = await trio.run_process(list(cmd), capture_stdout=True, capture_stderr=True,
                                      check=False)
    if ok:
        assert done.returncode == 0, (cmd, done.stderr)
    return done


def alerts(*paths: Path) -> list[dict[str, str]]:
    out = []
    for path in paths:
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return [a for a in out if a.get("Manager") != "ProbeWatch"]


LABEL_OID = ".1.3.6.1.4.1.8072.2.3.2.1"  # the varbind naming each test trap


def label(alert: dict[str, str]) -> str:
    """The value of the LABEL_OID varbind ($n where $OIDn is LABEL_OID)."""
    return next(alert[k[3:]] for k, v in alert.items() if k.startswith("OID") and v == LABEL_OID)


async def wait_alerts(paths: list[Path], count: int) -> list[dict[str, str]]:
    with trio.fail_after(DELIVERY_TIMEOUT):
        while len(found := alerts(*paths)) < count:
            await trio.sleep(0.05)
    return found


async def test_net_snmp_senders_to_both_probes_of_a_pair(tmp_path: Path) -> None:
    snmptrap = servers.need("snmptrap", "snmp")
    snmpinform = servers.need("snmpinform", "snmp")
    users = tmp_path / "users.conf"
    users.write_text(USERS)
    m, s = loopback_pair(tmp_path)
    targets = [f"127.0.0.1:{m.feed_port}", f"127.0.0.1:{s.feed_port}"]
    v3trap = ["-v", "3", "-e", SENDER_ENGINE, "-u", "trapuser", "-l", "authPriv", "-a", "SHA",
              "-A", "trapauth123", "-x", "AES", "-X", "trappriv123"]
    v3inform = ["-v", "3", "-u", "informer", "-l", "authPriv", "-a", "SHA-256",
                "-A", "informauth123", "-x", "AES", "-X", "informpriv123"]
    retry = ["-r", "2", "-t", "3"]  # a lost answer would show as a second copy
    sends = [
        [snmptrap, "-v", "1", "-c", "public", "{}", ".1.3.6.1.4.1.8072.2.3", "192.0.2.1",
         "6", "17", UPTIME, ".1.3.6.1.4.1.8072.2.3.2.1", "s", "v1-trap"],
        [snmptrap, "-v", "2c", "-c", "public", "{}", UPTIME, ".1.3.6.1.6.3.1.1.5.3",
         ".1.3.6.1.2.1.2.2.1.1.3", "i", "3", ".1.3.6.1.4.1.8072.2.3.2.1", "s", "v2c-trap"],
        [snmpinform, "-v", "2c", "-c", "public", *retry, "{}", UPTIME, ".1.3.6.1.6.3.1.1.5.4",
         ".1.3.6.1.2.1.2.2.1.1.3", "i", "3", ".1.3.6.1.4.1.8072.2.3.2.1", "s", "v2c-inform"],
        [snmptrap, *v3trap, "{}", UPTIME, ".1.3.6.1.4.1.8072.2.3.0.1",
         ".1.3.6.1.4.1.8072.2.3.2.1", "s", "v3-trap"],
        [snmpinform, *v3inform, *retry, "{}", UPTIME, ".1.3.6.1.4.1.8072.2.3.0.2",
         ".1.3.6.1.4.1.8072.2.3.2.1", "s", "v3-inform"],
        [snmpinform, "-v", "2c", "-c", "public", *retry, "tcp:{}", UPTIME,
         ".1.3.6.1.6.3.1.1.5.1", ".1.3.6.1.4.1.8072.2.3.2.1", "s", "tcp-inform"],
    ]
    async with trio.open_nursery() as nursery:
        both = ["--protocol", "ALL"]  # UDP and TCP (RFC 3430) on the same port
        master = await start_probe(nursery, snmp_args(m, s, users, both), cwd=m.cwd)
        slave = await start_probe(nursery, snmp_args(s, m, users, both), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        for cmd in sends:
            for target in targets:  # as snmpd does with two trap sinks: one after the other
                await run_tool(*[w.replace("{}", target) for w in cmd])
        # A wrong pass phrase: rejected (and counted) by both, nothing delivered.
        bad = [w.replace("trapauth123", "wrongpass123") for w in v3trap]
        for target in targets:
            await run_tool(snmptrap, *bad, target, UPTIME, ".1.3.6.1.4.1.8072.2.3.0.1",
                           ".1.3.6.1.4.1.8072.2.3.2.1", "s", "bad")
        found = await wait_alerts([m.sink, s.sink], len(sends))
        await trio.sleep(1.0)  # nothing more may come (a duplicate, the rejected one)
        metrics = [await scrape(p) for p in (master, slave)]
        assert await slave.stop() == 0
        assert await master.stop() == 0
    found = alerts(m.sink, s.sink)
    by_seq = {label(a): a for a in found}
    assert sorted(label(a) for a in found) == sorted(
        ["tcp-inform", "v1-trap", "v2c-inform", "v2c-trap", "v3-inform", "v3-trap"]), found
    assert by_seq["tcp-inform"]["Protocol"] == "TCP" and by_seq["v1-trap"]["Protocol"] == "UDP"
    v1 = by_seq["v1-trap"]
    assert (v1["SNMP_Version"], v1["enterprise"], v1["generic-trap"], v1["specific-trap"],
            v1["IPaddress"], v1["PeerIPaddress"], v1["Uptime"], v1["UpTime"], v1["community"]) == (
        "1", ".1.3.6.1.4.1.8072.2.3", "6", "17", "192.0.2.1", "127.0.0.1", "0:00:42", "4200",
        "public")
    v2 = by_seq["v2c-trap"]
    assert (v2["SNMP_Version"], v2["notify"], v2["enterprise"], v2["generic-trap"]) == (
        "2", ".1.3.6.1.6.3.1.1.5.3", ".1.3.6.1.6.3.1.1.5", "2")
    assert (v2["1"], v2["OID1"], v2["OID2"]) == ("3", ".1.3.6.1.2.1.2.2.1.1.3", LABEL_OID)
    v3 = by_seq["v3-trap"]
    assert (v3["SNMP_Version"], v3["securityLevel"], v3["securityName"],
            v3["securityEngineID"]) == ("3", "authPriv", "trapuser", SENDER_ENGINE[2:])
    assert by_seq["v3-inform"]["securityName"] == "informer"
    for probe in metrics:
        # Each probe got each trap once: informs were answered at the first try.
        assert probe['probepair_snmp_received_total{version="1"}'] == 1
        assert probe['probepair_snmp_received_total{version="2"}'] == 3
        assert probe['probepair_snmp_received_total{version="3"}'] == 2
        assert probe["probepair_snmp_informs_answered_total"] == 3
        assert probe['probepair_snmp_rejected_total{reason="wrong_digest"}'] == 1
        assert probe['probepair_snmp_reports_total{reason="discovery"}'] >= 1


async def test_mttrapd_rules_check_and_alerts_from_net_snmp_traps(tmp_path: Path) -> None:
    snmptrap = servers.need("snmptrap", "snmp")
    check = await run_tool(*probepair_cmd("rules", "check", str(ROOT / "rules" / "mttrapd.rules")))
    assert b"OK" in check.stdout
    m, _s = loopback_pair(tmp_path)
    users = tmp_path / "users.conf"
    users.write_text(USERS)
    args = [
        "--name", "std", "--mode", "standard", "--feedtype", "snmp", "--feedaddress", "127.0.0.1",
        "--feedport", str(m.feed_port), "--nonameresolution", "true", "--trapstat", "1",
        "--rulesfile", str(ROOT / "rules" / "mttrapd.rules"), "--manager", "mttrapd",
        "--sinkfile", str(m.sink), "--messagelog", str(m.log),
    ]
    target = f"127.0.0.1:{m.feed_port}"
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, args, cwd=m.cwd)
        for trap in (
            ["-v", "1", "-c", "public", target, ".1.3.6.1.4.1.8072", "192.0.2.5", "0", "0", UPTIME],
            ["-v", "2c", "-c", "public", target, UPTIME, ".1.3.6.1.6.3.1.1.5.3",
             ".1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
            ["-v", "2c", "-c", "public", target, UPTIME, ".1.3.6.1.6.3.1.1.5.4",
             ".1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
            ["-v", "2c", "-c", "public", target, UPTIME, ".1.3.6.1.4.1.8072.2.3.0.1",
             ".1.3.6.1.4.1.8072.2.3.2.1", "s", "fan tray 2"],
        ):
            await run_tool(snmptrap, *trap)
        found = await wait_alerts([m.sink], 4)
        assert await probe.stop() == 0
    got = [(a["Summary"], a["Severity"], a.get("AlertKey", ""), a["Identifier"]) for a in found]
    assert got == [
        ("Cold Start", 4, "", "192.0.2.5 mttrapd 0 0"),
        ("Link Down", 5, "7", "127.0.0.1 mttrapd 2 0 7"),
        ("Link Up", 2, "7", "127.0.0.1 mttrapd 2 0 7"),
        ("Enterprise:.1.3.6.1.4.1.8072.2.3  Generic Trap:6  Specific Trap:1  fan tray 2", 1, "",
         "127.0.0.1 mttrapd 6 1"),
    ]
    assert {a["Manager"] for a in found} == {"mttrapd"}
    # The flood-control include ran (TrapStat 1): its first report, a ProbeWatch alert.
    every = [json.loads(line) for line in m.sink.read_text().splitlines()]
    reports = [a for a in every if a.get("AlertGroup") == "Trap Flood"]
    assert len(reports) == 1 and reports[0]["Summary"].endswith("0 dropped")


RATE = 2000  # traps per second to each probe
CYCLES = 3


def db_counts(db: Path, feeder: TrapFeeder) -> tuple[int, int, set[int]]:
    """(rows of this run, rows with Tally > 1, sequence numbers missing)."""
    with sqlite3.connect(db, timeout=10) as conn:
        rows = conn.execute("SELECT Identifier, Tally FROM alerts_status WHERE Identifier LIKE ?",
                            (f"{feeder.tag}-%",)).fetchall()
    seen = {int(ident.rsplit("-", 1)[1]) for ident, _ in rows}
    return len(rows), sum(1 for _, tally in rows if tally > 1), set(range(feeder.sent)) - seen


async def test_a_trap_pair_through_three_kill9_cycles_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    m, s = loopback_pair(tmp_path)
    users = tmp_path / "users.conf"
    users.write_text(USERS)
    rules = tmp_path / "seq.rules"
    rules.write_text('@Identifier = $1\n@Summary = $1\n@Node = $PeerIPaddress\n@Severity = 2\n')
    db = tmp_path / "alerts.db"
    extra = ["--rulesfile", str(rules), "--sinktype", "sqlite", "--sinkdatabase", str(db)]
    feeder = TrapFeeder([("127.0.0.1", m.feed_port), ("127.0.0.1", s.feed_port)], rate=RATE)

    async def start(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
        return await start_probe(nursery, snmp_args(side, peer, users, extra), cwd=side.cwd)

    async with trio.open_nursery() as nursery:
        master = await start(nursery, m, s)
        slave = await start(nursery, s, m)
        await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
        await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
        nursery.start_soon(feeder.run)
        await feeder.wait_traffic(0.5)
        cycles = await kill_cycles(lambda: start(nursery, m, s), master, slave, feeder,
                                   CYCLES, TIMINGS)
        master, took = cycles.master, cycles.takeovers
        feeder.stop()
        with trio.fail_after(DELIVERY_TIMEOUT):
            while (await trio.to_thread.run_sync(db_counts, db, feeder))[2]:
                await trio.sleep(0.2)
        assert await slave.stop() == 0
        assert await master.stop() == 0
    rows, inflated, missing = db_counts(db, feeder)
    print(f"\nsnmp pair, {RATE} traps/s, {CYCLES} kill -9 cycles: sent {feeder.sent}, rows {rows}, "
          f"missing {len(missing)}, Tally > 1: {inflated}, takeovers "
          f"{', '.join(f'{t:.2f}' for t in took)} s")
    assert sorted(missing) == []
    assert rows == feeder.sent
    assert inflated == 0


async def test_drop_list_blocks_a_host_with_probewatch_events(tmp_path: Path) -> None:
    """A rules file blocks the sender (drop_list_add): its next traps are dropped and
    counted, the probe says "mttrapd on 127.0.0.1 is blocked", and "is unblocked" as it
    stops (mttrapd's clean-up of the drop list)."""
    m, _s = loopback_pair(tmp_path)
    rules = tmp_path / "block.rules"
    rules.write_text(
        'if (match($Manager, "ProbeWatch")) { @Summary = $Summary @Manager = "ProbeWatch" }\n'
        'else {\n  @Identifier = $1\n  @Summary = $1\n'
        '  if (match($1, "t-00000002")) { $x = drop_list_add($PeerIPaddress) }\n'
        '  @Drops = read_drop_count($PeerIPaddress)\n}\n')
    args = ["--name", "std", "--mode", "standard", "--feedtype", "snmp",
            "--feedaddress", "127.0.0.1", "--feedport", str(m.feed_port),
            "--nonameresolution", "true", "--rulesfile", str(rules), "--sinkfile", str(m.sink),
            "--messagelog", str(m.log), "--metricsport", str(m.metrics_port)]
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, args, cwd=m.cwd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for seq in range(3):
                sock.sendto(trap("t", seq), ("127.0.0.1", m.feed_port))
            await wait_alerts([m.sink], 3)
            for seq in range(3, 8):
                sock.sendto(trap("t", seq), ("127.0.0.1", m.feed_port))
        await wait_metric(probe, "probepair_snmp_dropped_total", 5, 10)
        assert await probe.stop() == 0
    every = [json.loads(line) for line in m.sink.read_text().splitlines()]
    assert [a["Summary"] for a in every if a.get("Manager") != "ProbeWatch"] == [
        "t-00000000", "t-00000001", "t-00000002"]
    watch = [a["Summary"] for a in every if a.get("Manager") == "ProbeWatch"]
    assert "mttrapd on 127.0.0.1 is blocked" in watch
    assert watch.index("mttrapd on 127.0.0.1 is unblocked") > watch.index(
        "mttrapd on 127.0.0.1 is blocked")
    assert watch[-1] == "Going Down ..."
