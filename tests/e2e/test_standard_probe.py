"""A real ``probepair run`` process: UDP in, JSON lines out, clean stop, exit codes."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from tests.e2e.procs import probe_env, probepair_cmd, start_probe, wait_for_lines

pytestmark = pytest.mark.e2e

RULES = Path(__file__).resolve().parents[2] / "rules" / "syslog.rules"


def _send_udp(address: tuple[str, int], lines: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line, address)


async def test_udp_lines_reach_the_file_sink_and_sigterm_loses_nothing(tmp_path: Path) -> None:
    sink = tmp_path / "alerts.jsonl"
    log = tmp_path / "probe.log"
    lines = [b"<13>Oct 11 22:14:15 web1 app[7]: event number %d" % i for i in range(2000)]
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--feedport", "0", "--rulesfile", "", "--sinkfile", str(sink), "--name", "t1",
             "--messagelevel", "info", "--messagelog", str(log)],
            cwd=tmp_path,
        )
        for i in range(0, len(lines), 100):
            _send_udp(probe.address("feed"), lines[i : i + 100])
            await trio.sleep(0.005)  # a paced sender; loopback UDP drops a burst into a full buffer
        await wait_for_lines(sink, len(lines))
        assert await probe.stop() == 0
    alerts = [json.loads(x) for x in sink.read_bytes().splitlines()]
    watch = [a["Summary"] for a in alerts if a.get("Manager") == "ProbeWatch"]
    assert watch == ["Running ...", "Going Down ..."]  # first and last: see probe.py
    assert alerts[0]["Summary"] == "Running ..." and alerts[-1]["Summary"] == "Going Down ..."
    alerts = [a for a in alerts if a.get("Manager") != "ProbeWatch"]
    assert [a["Message"] for a in alerts] == [f"event number {i}" for i in range(2000)]
    assert alerts[0]["Hostname"] == "web1"
    assert alerts[0]["Program"] == "app"
    assert len({a["EventKey"] for a in alerts}) == 2000


async def test_sigterm_in_mid_flood_delivers_everything_accepted(tmp_path: Path) -> None:
    # SIGTERM while events are still on their way through the probe: every event it
    # accepted (its own count, logged as it exits) is in the sink, in order.
    sink = tmp_path / "alerts.jsonl"
    log = tmp_path / "probe.log"
    lines = [b"flood %d" % i for i in range(20000)]
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--feedport", "0", "--feedformat", "line", "--rulesfile", "",
             "--sinkfile", str(sink), "--name", "t2", "--messagelevel", "info",
             "--messagelog", str(log)],
            cwd=tmp_path,
        )
        for i in range(0, len(lines), 500):
            _send_udp(probe.address("feed"), lines[i : i + 500])
            if i == len(lines) // 2:
                probe.signal(signal.SIGTERM)
            await trio.lowlevel.checkpoint()
        assert await probe.stop() == 0
    drained = re.findall(r"drained: (\d+) events received, (\d+) alerts delivered, (\d+) spool",
                         log.read_text())
    assert len(drained) == 1, log.read_text()
    received, delivered, spooled = (int(x) for x in drained[0])
    got = [a["Line"] for a in map(json.loads, sink.read_bytes().splitlines())
           if a.get("Manager") != "ProbeWatch"]
    print(f"\nSIGTERM mid-flood: {received} accepted, {len(got)} in the sink")
    assert spooled == 0 and received > 0
    assert len(got) == received and delivered == received + 2  # + Running, Going Down
    assert len(set(got)) == received  # each once
    sent = [x.decode() for x in lines]
    assert set(got) <= set(sent)


async def test_stdin_feed_stops_at_end_of_input_and_flushes(tmp_path: Path) -> None:
    sink = tmp_path / "out.jsonl"
    data = "".join(f"line {i} of input\n" for i in range(500)).encode()
    with trio.fail_after(60):
        result = await trio.run_process(
            probepair_cmd("run", "--feedtype", "stdin", "--feedformat", "line", "--rulesfile", "",
                          "--sinkfile", str(sink), "--storeandforward", "false"),
            stdin=data, capture_stdout=True, capture_stderr=True, cwd=tmp_path, check=False,
            env=probe_env(tmp_path),
        )
    assert result.returncode == 0, result.stderr.decode()
    alerts = [json.loads(x) for x in sink.read_bytes().splitlines()]
    alerts = [a for a in alerts if a.get("Manager") != "ProbeWatch"]
    assert [a["Line"] for a in alerts] == [f"line {i} of input" for i in range(500)]
    assert alerts[3]["Token2"] == "3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beatinterval", "-1"],
         "probepair: command line: BeatInterval: expected a positive number of seconds, got '-1'"),
        (["--mode", "primary"],
         "probepair: command line: Mode: expected one of master, slave, standard, got 'primary'"),
        (["--peerport", "70000"],
         "probepair: command line: PeerPort: expected an integer between 0 and 65535, got '70000'"),
        (["--mode", "slave", "--peerhost", "h"],
         "probepair: command line: PeerPort: Mode 'slave' needs the peer's port"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = subprocess.run(probepair_cmd("run", *args), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert "Traceback" not in result.stderr


def test_unknown_property_in_props_file_names_file_and_property(tmp_path: Path) -> None:
    props = tmp_path / "bad.props"
    props.write_text("# OMNIbus style\nBeatIntervall : 3\n")
    result = subprocess.run(probepair_cmd("--dumpprops", "--props", str(props)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"probepair: {props}: BeatIntervall: unknown property (did you mean 'BeatInterval'?)"
    )


def test_dumpprops_shows_failover_properties_and_round_trips(tmp_path: Path) -> None:
    first = subprocess.run(probepair_cmd("--dumpprops", "--beatinterval", "0.2"),
                           capture_output=True, text=True, timeout=60, check=True).stdout
    names = [line.split(":")[0] for line in first.splitlines() if not line.startswith("#")]
    assert {"Mode", "PeerHost", "PeerPort"} <= set(names)
    assert "BeatInterval: 0.2 # FLOAT (" in first
    saved = tmp_path / "dumped.props"
    saved.write_text(first)
    again = subprocess.run(probepair_cmd("--dumpprops", "--props", str(saved)),
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert again == first


def test_python_dash_m_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "probepair", "--version"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.startswith("probepair ")


async def test_sigint_is_a_clean_stop_too(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        probe = await start_probe(nursery, ["--feedport", "0", "--rulesfile", "",
                                            "--sinkfile", str(tmp_path / "a.jsonl")], cwd=tmp_path)
        probe.signal(signal.SIGINT)
        assert await probe.stop() == 0
