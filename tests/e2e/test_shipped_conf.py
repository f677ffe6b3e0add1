"""What the README tells an operator to install: the shipped props files, the systemd
unit, and the stdout sink the sinks table lists."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import free_port, probe_env, probepair_cmd, start_probe
from tests.servers import need

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROPS = sorted((ROOT / "conf").glob("*.props"))


@pytest.mark.parametrize("props", PROPS, ids=[p.name for p in PROPS])
def test_each_shipped_props_file_loads_and_its_dump_loads_back(props: Path,
                                                                tmp_path: Path) -> None:
    first = subprocess.run(probepair_cmd("--dumpprops", "--props", str(props)),
                           capture_output=True, text=True, check=False, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    dumped = tmp_path / "dumped.props"
    dumped.write_text(first.stdout)
    again = subprocess.run(probepair_cmd("--dumpprops", "--props", str(dumped)),
                           capture_output=True, text=True, check=False, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


async def test_the_local_props_file_starts_on_loopback_with_its_addresses_overridden(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        probe = await start_probe(
            nursery,
            ["--props", str(ROOT / "conf" / "local.props"), "--feedport", "0",
             "--metricsport", str(free_port(socket.SOCK_STREAM)),
             "--sinkfile", str(tmp_path / "alerts.jsonl"),
             "--saffilename", str(tmp_path / "local.saf")],
            cwd=tmp_path,
        )
        assert await probe.stop() == 0
    assert "Going Down" in (tmp_path / "alerts.jsonl").read_text()


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = need("systemd-analyze", "systemd")
    unit = (ROOT / "conf" / "systemd" / "probepair@.service").read_text()
    # verify checks that ExecStart= exists: point it at this checkout's probepair.
    exe = subprocess.run(["sh", "-c", "command -v probepair"], capture_output=True,
                         text=True, check=False).stdout.strip()
    if not exe:
        exe = str(Path(probepair_cmd()[0]).parent / "probepair")
    instance = tmp_path / "probepair@master.service"
    instance.write_text(unit.replace("/opt/probepair/.venv/bin/probepair", exe))
    result = subprocess.run([analyze, "verify", "--man=no", instance.name],
                            capture_output=True, text=True, check=False, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_stdout_sink_writes_one_json_alert_per_line(tmp_path: Path) -> None:
    # stdin holds the feed: the probe stops at its end and flushes. Every line on stdout
    # is an alert (the READY line goes to stderr with this sink).
    feed = b"".join(b"line %d\n" % i for i in range(3))
    result = subprocess.run(
        probepair_cmd("run", "--feedtype", "stdin", "--feedformat", "line", "--rulesfile", "",
                      "--sinktype", "stdout", "--name", "so"),
        input=feed, capture_output=True, check=False, cwd=tmp_path, env=probe_env(tmp_path),
        timeout=60)
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(x) for x in result.stdout.splitlines()]
    assert b"READY" in result.stderr
    lines = [a["Line"] for a in alerts if a.get("Manager") != "ProbeWatch"]
    assert lines == ["line 0", "line 1", "line 2"]
    assert all("EventKey" in a for a in alerts)
    assert alerts[-1]["Summary"] == "Going Down ..."


@pytest.mark.parametrize("props", PROPS, ids=[p.name for p in PROPS])
def test_a_shipped_postgres_url_across_the_network_verifies_the_server(props: Path) -> None:
    # sslmode prefer/allow/require lets a man in the middle ask for the password in
    # clear (or read the alerts); only verify-full checks whom we talk to.
    from urllib.parse import parse_qs, urlsplit

    from probepair.config.propsfile import read_props_file

    url = str(read_props_file(str(props)).get("SinkUrl", ""))
    if not url.startswith(("postgres://", "postgresql://")):
        return
    parts = urlsplit(url)
    if parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    assert parse_qs(parts.query).get("sslmode") == ["verify-full"], url
