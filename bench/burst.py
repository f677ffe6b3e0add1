"""Capacity of one probe without a sender competing for the CPU.

bench/throughput.py floods the probe while the C sender (and the kernel work it drives)
shares the 2 cores with it, so its full-speed figure swings with where the scheduler
puts things. Here the probe is stopped (SIGSTOP), the socket buffer is filled, the probe
is continued and the time until all queued datagrams are written is measured: events/s
of the drain, and the probe's CPU µs per event. Repeated; prints best and median.

    .venv/bin/python bench/burst.py [--rounds 6] [--events 40000]

Needs gcc (for bench/udpflood.c). Uses the shipped rules/syslog.rules and a file sink.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import (
    HERE,
    ROOT,
    count_lines,
    cpu_seconds,
    free_port,
    udp_drops,
    wait_port_bound,
    write_lines,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--events", type=int, default=40_000, help="sent per round (the kernel "
                    "queues what fits in SO_RCVBUF and counts the rest as drops)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probepair-burst-"))
    try:
        flood = work / "udpflood"
        subprocess.run(["gcc", "-O2", "-o", str(flood), str(HERE / "udpflood.c")], check=True)
        lines = work / "lines.txt"
        write_lines(lines)
        port = free_port()
        out = work / "probe.jsonl"
        cmd = [sys.executable, "-m", "probepair", "run", "--feedport", str(port),
               "--sinkfile", str(out), "--storeandforward", "false",
               "--rulesfile", str(ROOT / "rules" / "syslog.rules"), "--name", f"burst{port}"]
        proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rates = []
        try:
            wait_port_bound(port)
            time.sleep(0.5)
            for _ in range(args.rounds):
                before = count_lines(out)
                os.kill(proc.pid, signal.SIGSTOP)
                drops0 = udp_drops(port)
                subprocess.run([str(flood), str(port), str(args.events), str(lines), "400000"],
                               capture_output=True, check=True)
                queued = args.events - (udp_drops(port) - drops0)
                cpu0 = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                os.kill(proc.pid, signal.SIGCONT)
                while count_lines(out) - before < queued and time.monotonic() - t0 < 10:
                    time.sleep(0.002)
                elapsed = time.monotonic() - t0
                cpu = cpu_seconds(proc.pid) - cpu0
                rates.append(queued / elapsed)
                print(f"queued {queued:7,d}  drained in {elapsed:6.3f} s  {queued / elapsed:9,.0f}/s"
                      f"  cpu {1e6 * cpu / queued:5.2f} µs/event")
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        rates.sort()
        print(f"best {rates[-1]:,.0f}/s  median {rates[len(rates) // 2]:,.0f}/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
