"""Rules sync from the master: by command, by ``RulesSync pull``, and refusals."""

from __future__ import annotations

import json
import re
import socket
from functools import partial
from pathlib import Path

import pytest
import trio

from probepair.config.httpauth import SIGNATURE_HEADER, response_mac
from probepair.rules import load_rules
from probepair.rulesync.tree import pack, read_tree
from tests.e2e.procs import (
    ACTIVE,
    PAIR_SECRET,
    PairSide,
    ProbeProcess,
    Timings,
    free_port,
    http_get,
    kill9,
    loopback_pair,
    probe_env,
    probepair_cmd,
    scrape,
    start_probe,
    wait_for_lines,
    wait_metric,
)

pytestmark = pytest.mark.e2e

MAIN = """table sites = "sites.lookup"
default = "nowhere"

if (match($Manager, "ProbeWatch")) {
    @Manager = "ProbeWatch"
    @Summary = $Summary
    @Identifier = $Agent + ": " + $Summary
} else {
    include "lib/common.rules"
}
"""
STANDBY = 'probepair_role{role="slave-standby"}'
READY = "probepair_ready"


def write_rules(root: Path, version: str) -> Path:
    """A rules tree (main file, an include in a subdirectory, a lookup table)."""
    (root / "lib").mkdir(parents=True)
    (root / "main.rules").write_text(MAIN)
    (root / "lib" / "common.rules").write_text(
        f'@Summary = "{version}: " + $Line\n@Identifier = $Line\n'
        "@Location = lookup($Line, sites)\n"
    )
    (root / "sites.lookup").write_text(f"web1\t{version}-site\n")
    return root / "main.rules"


def rules_args(side: PairSide, peer: PairSide | None = None,
               rules_file: Path | None = None) -> list[str]:
    """RulesFile (default: in the side's own tree); the peer's metrics endpoint."""
    args = ["--rulesfile", str(rules_file or side.cwd / "rules" / "main.rules")]
    return args + (["--peermetricsport", str(peer.metrics_port)] if peer else [])


async def status_of(probe: ProbeProcess) -> dict[str, object]:
    return dict(json.loads(await http_get(probe.address("metrics"), "/status")))


async def wait_status(probe: ProbeProcess, key: str, value: object,
                      timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while (await status_of(probe)).get(key) != value:
            await trio.sleep(0.05)


async def sync_cmd(side: PairSide, peer: PairSide, *args: str,
                   rules_file: Path | None = None) -> tuple[int, str]:
    """``probepair sync`` as an operator runs it on the slave's host."""
    cmd = probepair_cmd("sync", "--name", side.name, "--mode", side.mode,
                        "--peerhost", peer.host, "--peerport", str(peer.heartbeat_port),
                        "--peermetricsport", str(peer.metrics_port),
                        "--sharedsecretfile", str(side.cwd / "secret"),
                        *rules_args(side, rules_file=rules_file), *args)
    with trio.fail_after(30):
        result = await trio.run_process(cmd, cwd=side.cwd, capture_stdout=True,
                                        capture_stderr=True, check=False,
                                        env=probe_env(side.cwd))
    return result.returncode, (result.stdout + result.stderr).decode()


async def summaries(sink: Path, count: int) -> list[str]:
    return [str(json.loads(line).get("Summary")) for line in await wait_for_lines(sink, count)]


async def wait_summary(sink: Path, summary: str, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while summary not in (await summaries(sink, 0)):
            await trio.sleep(0.05)


# What the slave's readiness names when v1 runs against the master's v2 (by file).
V1_V2 = ["rules file lib/common.rules", "rules file sites.lookup"]


def older_pair(tmp_path: Path) -> tuple[PairSide, PairSide]:
    m, s = loopback_pair(tmp_path)
    write_rules(m.cwd / "rules", "v2")
    write_rules(s.cwd / "rules", "v1")
    return m, s


async def test_a_slave_with_older_rules_syncs_them_by_command(tmp_path: Path) -> None:
    m, s = older_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings, extra=rules_args(s, m)), cwd=s.cwd)
        await wait_metric(slave, STANDBY, 1, timeout=10)
        await wait_status(slave, "desynchronised", V1_V2)
        assert (await scrape(slave))[READY] == 0
        # The standby's self-event reaches its sink by gap fill (only it had the event).
        await wait_summary(s.sink, "Desynchronised: " + ", ".join(V1_V2))

        rc, out = await sync_cmd(s, m)
        assert rc == 0, out
        assert "installed rules tree" in out and "s: rules reloaded" in out
        assert (s.cwd / "rules.prev" / "lib" / "common.rules").read_text().startswith(
            '@Summary = "v1: "')
        await wait_metric(slave, READY, 1, timeout=10)
        assert (await status_of(slave))["rules"] == (await status_of(master))["rules"]
        await wait_metric(slave, "probepair_config_drift", 0, timeout=5)
        await wait_metric(master, "probepair_config_drift", 0, timeout=5)
        await wait_summary(s.sink, "Ready")
        rc, out = await sync_cmd(s, m)
        assert (rc, "rules already in sync" in out) == (0, True), out

        # The synced rules are the ones a takeover runs: the include and the table too.
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, timeout=10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"web1", slave.address("feed"))
        await wait_summary(s.sink, "v2: web1")
        alerts = [json.loads(x) for x in await wait_for_lines(s.sink, 1)]
        assert [a["Location"] for a in alerts if a["Summary"] == "v2: web1"] == ["v2-site"]
        nursery.cancel_scope.cancel()


async def test_a_slave_in_the_omnibus_layout_syncs_and_its_other_files_stay(
        tmp_path: Path) -> None:
    """As ``$OMNIHOME/probes/<arch>/``: RulesFile beside the props, log, spool, secret."""
    m, s = loopback_pair(tmp_path)
    write_rules(m.cwd / "rules", "v2")
    rules = s.cwd / "syslog.rules"
    rules.write_text('include "include/old.rules"\n')
    (s.cwd / "include").mkdir()
    (s.cwd / "include" / "old.rules").write_text('@Summary = "v1: " + $Line\n')
    (s.cwd / "syslog.props").write_text("Mode: slave\n")
    (s.cwd / "syslog.saf").write_bytes(b"\x00a spool of another run\xff")
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        slave = await start_probe(
            nursery, s.args(m, timings, extra=rules_args(s, m, rules_file=rules)), cwd=s.cwd)
        with trio.fail_after(10):  # named by file once the master's /status answered
            while "rules file include/old.rules" not in (
                    await status_of(slave))["desynchronised"]:
                await trio.sleep(0.05)
        others = {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
                  for p in (s.cwd / "syslog.props", s.cwd / "syslog.saf", s.cwd / "secret")}

        rc, out = await sync_cmd(s, m, rules_file=rules)
        assert rc == 0, out
        assert "installed rules tree" in out and "s: rules reloaded" in out
        await wait_metric(slave, READY, 1, timeout=10)
        assert (await status_of(slave))["rules"] == (await status_of(master))["rules"]
        assert rules.read_text() == MAIN
        assert (s.cwd / "lib" / "common.rules").read_text().startswith('@Summary = "v2: "')
        assert not (s.cwd / "include" / "old.rules").exists()  # dropped by the new tree
        prev = tmp_path / "s.prev"
        assert (prev / "include" / "old.rules").read_text() == '@Summary = "v1: " + $Line\n'
        assert (prev / "syslog.rules").read_text() == 'include "include/old.rules"\n'
        assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
                for p in (s.cwd / "syslog.props", s.cwd / "syslog.saf", s.cwd / "secret")
                } == others
        assert s.log.exists() and s.sink.exists()
        nursery.cancel_scope.cancel()


async def test_rules_sync_pull_makes_a_standby_slave_ready_by_itself(tmp_path: Path) -> None:
    m, s = older_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        slave = await start_probe(
            nursery,
            s.args(m, timings, extra=[*rules_args(s, m), "--rulessync", "pull"]),
            cwd=s.cwd,
        )
        await wait_metric(slave, 'probepair_rules_syncs_total{result="success"}', 1, timeout=10)
        await wait_metric(slave, READY, 1, timeout=10)
        assert (await status_of(slave))["rules"] == (await status_of(master))["rules"]
        assert (s.cwd / "rules" / "sites.lookup").read_text() == "web1\tv2-site\n"
        assert (s.cwd / "rules.prev" / "sites.lookup").read_text() == "web1\tv1-site\n"
        metrics = await scrape(slave)
        assert metrics['probepair_rules_syncs_total{result="refused"}'] == 0
        # (the RulesFile watcher may see the new RulesFile before the pull's own reload: 1 or 2)
        assert metrics['probepair_rules_reloads_total{result="success"}'] >= 1
        nursery.cancel_scope.cancel()


async def serve_fake_peer(status: dict[str, object], archive: bytes, *, secret: str = PAIR_SECRET,
                          task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """A metrics endpoint that says its rules differ and serves ``archive`` as /rules.

    With ``secret`` it signs its answers as a probe does (a holder of the secret, to test
    what the archive checks refuse); with '' it cannot (anyone else on the network).
    """

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ")[1]
            body = json.dumps(status).encode() if path == b"/status" else archive
            nonce = re.search(rb"nonce=([0-9a-f]{32})", request)
            signed = b""
            if secret and nonce:
                mac = response_mac(secret.encode(), nonce[1].decode(), 200, body)
                signed = f"{SIGNATURE_HEADER}: {mac}\r\n".encode()
            await stream.send_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                                  + str(len(body)).encode() + b"\r\n" + signed + b"\r\n" + body)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def refused_by_slave(nursery: trio.Nursery, s: PairSide, m: PairSide,
                           timings: Timings, fake_port: int) -> ProbeProcess:
    """The slave, pulling rules from a fake peer on ``fake_port``, once it has refused
    what that peer offers."""
    slave = await start_probe(
        nursery,
        s.args(m, timings, extra=[*rules_args(s), "--rulessync", "pull",
                                  "--peermetricsport", str(fake_port)]),
        cwd=s.cwd,
    )
    await wait_metric(slave, 'probepair_rules_syncs_total{result="refused"}', 1, timeout=10)
    return slave


async def test_tampered_or_unsigned_archives_are_refused_and_counted(tmp_path: Path) -> None:
    m, s = older_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        genuine = await http_get(master.address("metrics"), "/rules")
        header, body = genuine.split(b"\n", 2)[:2], genuine.split(b"\n", 2)[2]
        # The master's signature over a body changed in transit.
        tampered = b"\n".join(header) + b"\n" + body.replace(b'"main":"main.rules"',
                                                             b'"main":"evil.rules"')
        assert tampered != genuine
        settings = (await status_of(master))["settings_digest"]  # the pair's: only rules differ
        fake_status = {"rules": "f" * 64, "settings_digest": settings}
        fake_port = await nursery.start(serve_fake_peer, fake_status, tampered)
        slave = await refused_by_slave(nursery, s, m, timings, fake_port)
        metrics = await scrape(slave)
        assert (metrics[READY], metrics['probepair_rules_syncs_total{result="success"}']) == (0, 0)
        assert not (s.cwd / "rules.prev").exists()
        assert "v1" in (s.cwd / "rules" / "lib" / "common.rules").read_text()

        url = f"http://127.0.0.1:{fake_port}/rules"
        rc, out = await sync_cmd(s, m, "--peer-url", url)
        assert rc == 1 and "signature does not match: tampered with" in out, out
        unsigned_port = await nursery.start(serve_fake_peer, fake_status, body)
        rc, out = await sync_cmd(s, m, "--peer-url", f"http://127.0.0.1:{unsigned_port}/rules")
        assert rc == 1 and "not a probepair rules archive (unsigned" in out, out
        # A server without the secret cannot even answer: its answers are not signed.
        impostor_port = await nursery.start(partial(serve_fake_peer, fake_status, genuine,
                                                    secret=""))
        rc, out = await sync_cmd(s, m, "--peer-url", f"http://127.0.0.1:{impostor_port}/rules")
        assert rc == 1 and "the answer is not signed with SharedSecret" in out, out
        assert "v1" in (s.cwd / "rules" / "lib" / "common.rules").read_text()

        # Availability first: a desynchronised slave takes over, and says so.
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, timeout=10)
        with trio.fail_after(10):
            while not [x for x in await summaries(s.sink, 0)
                       if x.startswith("Became active")
                       and f"(desynchronised: {', '.join(V1_V2)})" in x]:
                await trio.sleep(0.05)
        assert (f"took over while desynchronised from the master ({', '.join(V1_V2)})"
                in s.log.read_text())
        nursery.cancel_scope.cancel()


async def test_an_old_signed_archive_is_refused_no_rollback(tmp_path: Path) -> None:
    """The master runs v2; a server with the secret offers the v1 archive it once served."""
    m, s = loopback_pair(tmp_path)
    write_rules(m.cwd / "rules", "v2")
    old_root = write_rules(tmp_path / "old" / "rules", "v1")
    write_rules(s.cwd / "rules", "v0")
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        settings = str((await status_of(master))["settings_digest"])
        old = read_tree(str(old_root), load_rules(old_root).files)
        old_archive = pack(old, PAIR_SECRET.encode(), settings)  # as /rules served it then
        fake_status = {"rules": old.digest, "settings_digest": settings}
        fake_port = await nursery.start(serve_fake_peer, fake_status, old_archive)
        slave = await refused_by_slave(nursery, s, m, timings, fake_port)
        assert (await scrape(slave))['probepair_rules_syncs_total{result="success"}'] == 0
        assert "v0" in (s.cwd / "rules" / "lib" / "common.rules").read_text()
        assert not (s.cwd / "rules.prev").exists()
        assert "is not the one the master's latest heartbeat announces" in s.log.read_text()
        # By command, against the real master's endpoint: only its current tree installs.
        rc, out = await sync_cmd(s, m)
        assert rc == 0, out
        assert "v2" in (s.cwd / "rules" / "lib" / "common.rules").read_text()
        nursery.cancel_scope.cancel()


async def test_unsigned_requests_to_status_and_rules_are_refused(tmp_path: Path) -> None:
    m, s = older_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings, extra=rules_args(m, s)), cwd=m.cwd)
        for path in ("/status", "/rules"):
            with pytest.raises(AssertionError, match="401"):
                await http_get(master.address("metrics"), path, secret="")
            with pytest.raises(AssertionError, match="401"):
                await http_get(master.address("metrics"), path, secret="x" * 64)
        await http_get(master.address("metrics"), "/metrics", secret="")  # open
        metrics = await scrape(master)
        assert metrics['probepair_http_errors_total{reason="unauthorized"}'] == 4
        # The slave's signed requests still work: it syncs by itself.
        slave = await start_probe(
            nursery,
            s.args(m, timings, extra=[*rules_args(s, m), "--rulessync", "pull"]),
            cwd=s.cwd,
        )
        await wait_metric(slave, 'probepair_rules_syncs_total{result="success"}', 1, timeout=10)
        assert (await scrape(master))['probepair_http_errors_total{reason="unauthorized"}'] == 4
        nursery.cancel_scope.cancel()


async def test_rules_are_not_served_without_a_secret(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", "v1")
    port = free_port(socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--name", "lone", "--feedport", "0", "--feedformat", "line", "--rulesfile",
             str(rules), "--sinkfile", str(tmp_path / "a.jsonl"), "--metricsport", str(port)],
            cwd=tmp_path,
        )
        with pytest.raises(AssertionError, match="403"):
            await http_get(probe.address("metrics"), "/rules")
        nursery.cancel_scope.cancel()
