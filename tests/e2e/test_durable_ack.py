"""An acked alert is durable (issue 21): under ``SinkSync batch`` the master's file sink
fsyncs a batch before any ack datagram names one of its keys, so the standby only ever
forgets alerts that a power loss of the master could not take.

A power loss cannot be simulated here (dropping the page cache needs the host), so the
proof is the master's syscall trace: for every key in every ack datagram it sent, the
``write(2)`` that put the key's line in the file had returned before an ``fsync`` of that
file began, and that fsync returned before the datagram left (``tests/e2e/synctrace.py``).
Then a kill -9 of the master right after its acks, and every acked key is in the file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import trio

from tests.e2e.faults import FAST
from tests.e2e.feeder import Feeder
from tests.e2e.procs import STANDBY, loopback_pair, start_probe, wait_metric
from tests.e2e.sinkcheck import read_keys
from tests.e2e.synctrace import check_trace


@pytest.mark.skipif(shutil.which("strace") is None and os.environ.get("CI") != "true",
                    reason="strace not installed (.ci/setup installs it)")
async def test_every_acked_alert_was_fsynced_before_its_ack_and_survives_a_kill9(
        tmp_path: Path) -> None:
    strace = shutil.which("strace")
    assert strace is not None, "strace is missing: .ci/setup installs it"
    m, s = loopback_pair(tmp_path)
    trace_path = tmp_path / "master.trace"
    wrap = [strace, "-f", "-qq", "-xx", "-s", "1048576", "-o", str(trace_path),
            "-e", "trace=openat,write,fsync,fdatasync,sendto,sendmsg"]
    feeder = Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=500)
    async with trio.open_nursery() as nursery:
        master = await start_probe(nursery, m.args(s, FAST, extra=["--sinksync", "batch"]),
                                   cwd=m.cwd, wrap=wrap)
        slave = await start_probe(nursery, s.args(m, FAST), cwd=s.cwd)
        await wait_metric(slave, STANDBY, 1, 20)
        await feeder.run(count=1500)
        # Every event acked: the standby holds none of them any more.
        await wait_metric(slave, "probepair_buffer_depth", 0, 20)
        probe_pid = int(trace_path.read_text().split(None, 1)[0])
        os.kill(probe_pid, signal.SIGKILL)  # the probe, not strace (it would detach)
        with trio.fail_after(10):
            await master.process.wait()
        await slave.stop()
    walk = check_trace(trace_path.read_text(), str(m.sink))
    acked = walk.acked
    assert walk.acks > 0 and walk.fsyncs > 0 and len(acked) >= 1400, walk
    lines = m.sink.read_bytes().splitlines()
    everything = {json.loads(line)["EventKey"] for line in lines if line.startswith(b"{")}
    assert acked <= everything  # every acked alert survived the kill (ProbeWatch too)
    in_file = set(read_keys(m.sink))
    assert feeder.keys() <= in_file | set(read_keys(s.sink))
