"""``probepair status``, ``takeover`` and ``release`` against a real pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    PairSide,
    Timings,
    loopback_pair,
    probe_env,
    probepair_cmd,
    start_probe,
    wait_metric,
)

pytestmark = pytest.mark.e2e


async def _cli(side: PairSide, peer: PairSide, *args: str, secret: bool = True) -> str:
    """Run a probepair command as an operator would, in the probe's directory (with the
    probe's SharedSecretFile, unless not ``secret``)."""
    cmd = probepair_cmd(*args, "--name", side.name, "--mode", side.mode,
                        "--peerhost", peer.host, "--peerport", str(peer.heartbeat_port),
                        "--metricsport", str(peer.metrics_port),
                        # the props a probe runs with: its secret signs the /status request
                        *(["--sharedsecretfile", str(side.cwd / "secret")]
                          if secret and args[0] == "status" else []))
    with trio.fail_after(30):
        result = await trio.run_process(cmd, cwd=side.cwd, capture_stdout=True,
                                        capture_stderr=True, check=False,
                                        env=probe_env(side.cwd))
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_status_shows_both_sides_and_takeover_release_switch_roles(tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, timings), cwd=m.cwd)
        slave = await start_probe(nursery, s.args(m, timings), cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        await wait_metric(slave, 'probepair_role{role="slave-standby"}', 1, timeout=10)

        table = await _cli(m, s, "status")
        print(table)
        lines = {line[:18].strip(): line[18:].split() for line in table.splitlines()}
        assert lines["name"] == ["m", "s"]
        assert lines["role"] == ["master", "slave-standby"]
        assert lines["active"] == ["yes", "no"]
        assert "pair OK: one active (m)" in table

        assert (await _cli(s, m, "takeover")).startswith("s: takeover requested; now master")
        await wait_metric(master, ACTIVE, 0, timeout=5)
        both = json.loads(await _cli(s, m, "status", "--json"))
        assert both["local"]["active"] is True and both["local"]["epoch"] == 1
        assert both["peer"]["role"] == "slave-standby"

        assert "now slave-standby" in await _cli(s, m, "release")
        await wait_metric(master, ACTIVE, 1, timeout=5)
        nursery.cancel_scope.cancel()


def test_status_without_a_running_probe_says_so(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(probepair_cmd("status", "--name", "nobody"), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env=probe_env(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"probepair: {tmp_path}/nobody.sock: no probe is listening")
