"""A closed failback window keeps a returning master pending; takeover still works."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import trio

from tests.e2e.procs import (
    ACTIVE,
    PairSide,
    Timings,
    http_get,
    kill9,
    loopback_pair,
    probe_env,
    probepair_cmd,
    scrape,
    start_probe,
    wait_metric,
)

pytestmark = pytest.mark.e2e
PENDING = 'probepair_role{role="master-pending"}'


def closed_window() -> list[str]:
    """A daily window (host local time) that opens in about 12 hours: closed now."""
    start = datetime.now() + timedelta(hours=12)
    return ["--failbackwindow", f"{start.minute} {start.hour} * * *",
            "--failbackwindowlength", "600"]


async def operator(side: PairSide, peer: PairSide, command: str) -> str:
    cmd = probepair_cmd(command, "--name", side.name, "--mode", side.mode,
                        "--peerhost", peer.host, "--peerport", str(peer.heartbeat_port))
    with trio.fail_after(30):
        result = await trio.run_process(cmd, cwd=side.cwd, capture_stdout=True,
                                        capture_stderr=True, check=False,
                                        env=probe_env(side.cwd))
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_a_master_back_outside_the_window_stays_pending_until_takeover(
        tmp_path: Path) -> None:
    m, s = loopback_pair(tmp_path)
    timings = Timings()
    m_args, s_args = m.args(s, timings, extra=closed_window()), s.args(m, timings,
                                                                        extra=closed_window())
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m_args, cwd=m.cwd)
        slave = await start_probe(nursery, s_args, cwd=s.cwd)
        await wait_metric(master, ACTIVE, 1, timeout=10)
        assert (await scrape(slave))["probepair_failback_window_open"] == 0
        await kill9(master)
        await wait_metric(slave, ACTIVE, 1, timeout=10)

        master = await start_probe(nursery, m_args, cwd=m.cwd)
        await wait_metric(master, PENDING, 1, timeout=10)
        heard = (await scrape(master))["probepair_heartbeats_received_total"]
        # Many beats of the returning master later, the slave still has the role.
        with trio.fail_after(10):
            while (await scrape(master))["probepair_heartbeats_received_total"] < heard + 10:
                await trio.sleep(0.1)
        assert (await scrape(slave))[ACTIVE] == 1 and (await scrape(master))[PENDING] == 1
        status = json.loads(await http_get(slave.address("metrics"), "/status"))
        assert status["failback_window_open"] is False
        assert 11 * 3600 < status["next_window_in_seconds"] <= 13 * 3600  # a DST change: 13

        assert "now master" in await operator(m, s, "takeover")
        await wait_metric(slave, ACTIVE, 0, timeout=5)
        await wait_metric(master, ACTIVE, 1, timeout=5)
        nursery.cancel_scope.cancel()
