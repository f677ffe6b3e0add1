"""Latency from a datagram's send to its line in the sink, at everyday rates.

bench/udppace.c sends evenly paced single datagrams, each stamped with its send time
(CLOCK_MONOTONIC). The probe's file sink writes into a named pipe (FIFO) that this
script reads, so a line is seen the moment the probe's write(2) returns; the latency of
each line is the read time minus its stamp (the pipe is enlarged to 1 MiB, so the
probe's write never waits for this reader). Prints p50, p99 and max per rate, for a
standard probe and for the active side (master) of a loopback pair.

Latency percentiles are wall-clock figures: on a machine other work is loading, the
scheduler delays the probe, the sender and this reader, and p99/max show it. Run it
more than once and read the spread. Goal (issue 13): p99 <= BatchLatency + 5 ms.

    .venv/bin/python bench/latency.py [--seconds 5] [--rates 1000,5000,20000]
                                      [--batch-latency MS] [--runs standard,pair]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cost import (
    PAIR_SECRET,
    Proc,
    compile_pace,
    free_ports,
    probe_cmd,
    running,
    start,
    wait_active,
    wait_bound,
)
from throughput import ROOT, write_lines

STAMP = re.compile(rb" t=(\d+)")
SETTLE = 1.0  # seconds after start-up before sending
TAIL = 1.0  # seconds to wait for the last lines after the sender is done
PIPE_SIZE = 1 << 20  # bytes: Linux's default pipe-max-size


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def collect(fifo_fd: int, sender: subprocess.Popen[bytes]) -> list[float]:
    """Latencies in ms of every stamped line read from the FIFO until the sender is
    done and the pipe has been quiet for TAIL seconds."""
    sel = selectors.DefaultSelector()
    sel.register(fifo_fd, selectors.EVENT_READ)
    latencies: list[float] = []
    rest = b""
    quiet_since: float | None = None
    while True:
        chunk = b""
        if sel.select(timeout=0.05):
            try:
                chunk = os.read(fifo_fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:  # no writer (yet, or any more): poll reports hang-up
                time.sleep(0.01)
        if chunk:
            seen = time.monotonic_ns()
            quiet_since = None
            data = rest + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                m = STAMP.search(line)
                if m is not None:
                    latencies.append((seen - int(m.group(1))) / 1e6)
        elif sender.poll() is not None:
            now = time.monotonic()
            if quiet_since is None:
                quiet_since = now
            elif now - quiet_since > TAIL:
                return latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="sending time per rate")
    ap.add_argument("--rates", default="1000,5000,20000")
    ap.add_argument("--batch-latency", type=float, default=None, metavar="MS")
    ap.add_argument("--runs", default="standard,pair")
    ap.add_argument("--rules", default=str(ROOT / "rules" / "syslog.rules"))
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="probepair-latency-"))
    results: list[tuple[str, float, int, list[float]]] = []
    try:
        pace = compile_pace(work)
        lines = work / "lines.txt"
        write_lines(lines)
        for run in args.runs.split(","):
            fifo = work / f"sink-{run}.fifo"
            os.mkfifo(fifo)
            # Open the reading end first (non-blocking), so the probe's open() for
            # writing finds a reader and returns at once.
            fifo_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            # A batch of 200 lines is ~80 KiB: with the default 64 KiB pipe the probe's
            # write(2) would wait for this reader, which a regular file never makes it do.
            with contextlib.suppress(OSError):
                fcntl.fcntl(fifo_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            procs: list[Proc] = []
            port, hb_m, hb_s, feed_m, feed_s, metrics_port = free_ports(6)
            if run == "standard":
                metrics_port = 0
                procs.append(start("probepair", probe_cmd(
                    port, fifo, f"lat{port}", args.rules, args.batch_latency, []),
                    port, fifo, work))
            elif run == "pair":
                for label, mode, feed, hb, peer in (("master", "master", feed_m, hb_m, hb_s),
                                                    ("slave", "slave", feed_s, hb_s, hb_m)):
                    out = fifo if label == "master" else work / f"slave-{feed}.jsonl"
                    extra = ["--mode", mode, "--peerhost", "127.0.0.1", "--peerport", str(peer),
                             "--listenaddress", "127.0.0.1", "--listenport", str(hb),
                             "--sharedsecret", PAIR_SECRET]
                    if label == "master":
                        extra += ["--metricsport", str(metrics_port)]
                    procs.append(start(label, probe_cmd(
                        feed, out, f"lat-{label}{feed}", args.rules, args.batch_latency, extra),
                        feed, out, work))
            else:
                raise SystemExit(f"unknown run {run!r}: expected standard or pair")
            try:
                with running(procs):
                    wait_bound(procs, work)
                    if metrics_port:
                        wait_active(metrics_port)
                    time.sleep(SETTLE)
                    for rate in rates:
                        n = int(rate * args.seconds)
                        sender = subprocess.Popen(
                            [str(pace), str(n), str(rate), str(lines),
                             *(str(p.port) for p in procs)],
                            stdout=subprocess.DEVNULL)
                        lat = sorted(collect(fifo_fd, sender))
                        results.append((run, rate, n, lat))
                        print(f"# {run} {rate:,.0f}/s: p50 {percentile(lat, 0.5):.2f} ms "
                              f"p99 {percentile(lat, 0.99):.2f} ms", file=sys.stderr)
            finally:
                os.close(fifo_fd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latency = "unset" if args.batch_latency is None else f"{args.batch_latency:g} ms"
    print(f"send -> sink line, evenly paced single datagrams, {args.seconds:g} s per rate, "
          f"BatchLatency {latency}")
    print(f"{'run':<10}{'rate/s':>8}{'lines':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for run, rate, n, lat in results:
        print(f"{run:<10}{rate:>8,.0f}{len(lat):>9,d}{percentile(lat, 0.5):>9.2f}"
              f"{percentile(lat, 0.99):>9.2f}{(lat[-1] if lat else float('nan')):>9.2f}"
              + ("" if len(lat) == n else f"  (sent {n:,d})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
