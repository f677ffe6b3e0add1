"""An acked alert is durable (issue 21): under ``SinkSync batch`` the master's file sink
fsyncs a batch before any ack datagram names one of its keys, so the standby only ever
forgets alerts that a power loss of the master could not take.

A power loss cannot be simulated here (dropping the page cache needs the host), so the
proof is the master's syscall trace: for every key in every ack datagram it sent, the
``write(2)`` that put the key's line in the file was followed by a completed ``fsync`` of
that file before the datagram left. Then a kill -9 of the master right after its acks,
and every acked key is in the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import trio

from tests.e2e.faults import FAST
from tests.e2e.feeder import Feeder
from tests.e2e.procs import STANDBY, loopback_pair, start_probe, wait_metric
from tests.e2e.sinkcheck import read_keys

HEADER = 49  # the datagram header (probepair.failover.wire), then the ack body
ACK_BODY = 10  # serial u32 | pending u32 | count u16
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")


def _hex(text: str) -> bytes:
    """strace -xx's quoted string ``"\\x41\\x42"`` as bytes."""
    return bytes.fromhex(text.replace("\\x", ""))


def check_trace(trace: str, sink_path: str) -> tuple[int, set[str]]:
    """Walk the trace in order; the number of ack datagrams and the keys they carried.
    Fails if an acked key's line was not fsynced before the ack was sent."""
    sink_fds: set[str] = set()
    written: dict[str, int] = {}  # key -> index of the write that carried it
    pending: dict[str, dict[int, str]] = {}  # pid -> unfinished call (fsync on which fd)
    last_fsync = -1  # index of the last completed fsync of the sink file
    acks, acked = 0, set()
    for index, line in enumerate(trace.splitlines()):
        match = _CALL.match(line)
        if match is None:
            continue
        pid, resumed, call, rest = match.groups()
        name = resumed or call
        if name == "openat" and "= " in rest:
            path = re.search(r'"((?:\\x[0-9a-f]{2})+)"', rest)
            if path is not None and _hex(path.group(1)).decode() == sink_path:
                sink_fds.add(rest.rsplit("= ", 1)[1].split()[0])
        elif name in ("fsync", "fdatasync"):
            if "<unfinished ...>" in rest:
                pending.setdefault(pid, {})[0] = rest.split(",")[0].rstrip(")")
            else:
                fd = pending.get(pid, {}).pop(0, None) if resumed else rest.split(")")[0]
                if fd in sink_fds and re.search(r"= 0\s*$", rest):
                    last_fsync = index
        elif name == "write" and not resumed:
            fd, _, data = rest.partition(", ")
            if fd in sink_fds and data.startswith('"'):
                body = _hex(data[1 : data.index('"', 1)])
                for row in body.splitlines():
                    if row.startswith(b"{"):
                        written[json.loads(row)["EventKey"]] = index
        elif name in ("sendto", "sendmsg", "send") and not resumed:
            found = re.search(r'"((?:\\x[0-9a-f]{2})+)"', rest)
            if found is None:
                continue
            data = _hex(found.group(1))
            if data[:4] != b"PBPR" or data[5] != 2:
                continue  # not an ack datagram
            acks += 1
            count = int.from_bytes(data[HEADER + 8 : HEADER + ACK_BODY], "big")
            keys = data[HEADER + ACK_BODY : HEADER + ACK_BODY + 8 * count]
            for i in range(count):
                key = keys[8 * i : 8 * i + 8].hex()
                at = written.get(key)
                assert at is not None, f"acked {key} before any write of it (line {index})"
                assert at < last_fsync < index, (
                    f"ack at trace line {index} names {key}, written at {at}, "
                    f"but the last fsync completed at {last_fsync}"
                )
                acked.add(key)
    return acks, acked


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
    acks, acked = check_trace(trace_path.read_text(), str(m.sink))
    assert acks > 0 and len(acked) >= 1400, (acks, len(acked))
    lines = m.sink.read_bytes().splitlines()
    everything = {json.loads(line)["EventKey"] for line in lines if line.startswith(b"{")}
    assert acked <= everything  # every acked alert survived the kill (ProbeWatch too)
    in_file = set(read_keys(m.sink))
    assert feeder.keys() <= in_file | set(read_keys(s.sink))
