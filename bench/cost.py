"""CPU cost per event at everyday rates: probepair beside rsyslog, in the same run.

Real syslog traffic arrives spread out, one datagram at a time. A C sender
(bench/udppace.c) sends evenly paced single datagrams at 1k, 5k and 20k events/s, each
datagram to every process under test at the same moment:

- run "standard": one standard probe (UDP syslog feed, the shipped rules/syslog.rules,
  file sink) and rsyslog (imudp -> omfile, JSON template, as bench/throughput.py);
- run "pair": a loopback master and slave (default timings, a shared secret) and
  rsyslog again, so each ratio has its own rsyslog from the same seconds.

For each process it prints the CPU time per event (user + system from /proc/PID/stat,
over the sending window plus a short tail) and the share of one core, and the ratio to
rsyslog in the same run. CPU time per event is robust to other load on the machine;
wall-clock figures are not. Target (issue 13): <= 1.5x rsyslog; the pair's slave <=
its master.

    .venv/bin/python bench/cost.py [--seconds 8] [--rates 1000,5000,20000]
                                   [--batch-latency MS] [--runs standard,pair]
                                   [--sink-sync batch|interval|off]

``--batch-latency`` passes ``--batchlatency MS`` to the probes (leave it out to run a
probepair without that property, e.g. an older checkout through PYTHONPATH);
``--sink-sync`` likewise passes ``--sinksync`` (unset: the default, batch).
Needs gcc and rsyslog (apt-get install rsyslog).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from throughput import (
    HERE,
    ROOT,
    count_lines,
    cpu_seconds,
    rsyslog_conf,
    wait_port_bound,
    write_lines,
)

SETTLE = 1.0  # seconds after start-up before measuring (start-up CPU is not per event)
TAIL = 0.5  # seconds after the last datagram: batched events reach the sink meanwhile
PAIR_READY = 20.0  # seconds for the master to become active
PAIR_SECRET = secrets.token_hex(32)  # a probe in a pair wants >= 32 random bytes


@dataclass
class Proc:
    label: str
    popen: subprocess.Popen[bytes]
    port: int
    out: Path
    cpu0: float = 0.0
    lines0: int = 0


def free_ports(n: int) -> list[int]:
    """``n`` different free ports (held open together, so none is handed out twice)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def compile_pace(work: Path) -> Path:
    pace = work / "udppace"
    subprocess.run(["gcc", "-O2", "-o", str(pace), str(HERE / "udppace.c")], check=True)
    return pace


def probe_cmd(port: int, out: Path, name: str, rules: str, latency: float | None,
              extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "probepair", "run", "--feedport", str(port),
           "--sinkfile", str(out), "--storeandforward", "false", "--rulesfile", rules,
           "--name", name, *extra]
    if latency is not None:
        cmd += ["--batchlatency", f"{latency:g}"]
    return cmd


def start(label: str, cmd: list[str], port: int, out: Path, cwd: Path) -> Proc:
    with (cwd / f"{label}-{port}.log").open("wb") as log:
        popen = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    return Proc(label, popen, port, out)


def wait_bound(procs: list[Proc], cwd: Path) -> None:
    """Wait until every process has bound its feed port; on failure show its log."""
    for p in procs:
        try:
            wait_port_bound(p.port)
        except SystemExit:
            log = (cwd / f"{p.label}-{p.port}.log").read_text(errors="replace")
            raise SystemExit(f"{p.label} did not bind {p.port} (exit {p.popen.poll()}):\n"
                             + log[-2000:]) from None


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def wait_active(metrics_port: int) -> None:
    end = time.monotonic() + PAIR_READY
    while time.monotonic() < end:
        if metric(metrics_port, "probepair_active") == 1.0:
            return
        time.sleep(0.1)
    raise SystemExit(f"master (metrics port {metrics_port}) not active within {PAIR_READY}s")


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()


def measure(procs: list[Proc], pace: Path, lines: Path, rate: float, seconds: float
            ) -> list[tuple[str, float, float, int]]:
    """(label, µs CPU per event, share of a core, lines written) for each process."""
    n = int(rate * seconds)
    for p in procs:
        p.cpu0 = cpu_seconds(p.popen.pid)
        p.lines0 = count_lines(p.out)
    t0 = time.monotonic()
    subprocess.run([str(pace), str(n), str(rate), str(lines), *(str(p.port) for p in procs)],
                   capture_output=True, check=True)
    time.sleep(TAIL)
    elapsed = time.monotonic() - t0
    rows = []
    for p in procs:
        cpu = cpu_seconds(p.popen.pid) - p.cpu0
        rows.append((p.label, 1e6 * cpu / n, cpu / elapsed, count_lines(p.out) - p.lines0))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="sending time per rate")
    ap.add_argument("--rates", default="1000,5000,20000")
    ap.add_argument("--batch-latency", type=float, default=None, metavar="MS")
    ap.add_argument("--runs", default="standard,pair")
    ap.add_argument("--sink-sync", default=None, choices=("batch", "interval", "off"))
    ap.add_argument("--rules", default=str(ROOT / "rules" / "syslog.rules"))
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(rsyslogd).exists():
        raise SystemExit("rsyslogd not found: apt-get install rsyslog")
    work = Path(tempfile.mkdtemp(prefix="probepair-cost-"))
    results: list[tuple[str, float, list[tuple[str, float, float, int]]]] = []
    try:
        pace = compile_pace(work)
        lines = work / "lines.txt"
        write_lines(lines)
        sync = [] if args.sink_sync is None else ["--sinksync", args.sink_sync]
        for run in args.runs.split(","):
            procs: list[Proc] = []
            rs_port, port, hb_m, hb_s, feed_m, feed_s, metrics_port = free_ports(7)
            rs_out = work / f"rsyslog-{rs_port}.jsonl"
            conf = rsyslog_conf(work, rs_port, rs_out)
            if run == "standard":
                metrics_port = 0
                out = work / f"probe-{port}.jsonl"
                procs.append(start("probepair", probe_cmd(
                    port, out, f"cost{port}", args.rules, args.batch_latency, sync),
                    port, out, work))
            elif run == "pair":
                for label, mode, feed, hb, peer in (("master", "master", feed_m, hb_m, hb_s),
                                                    ("slave", "slave", feed_s, hb_s, hb_m)):
                    out = work / f"{label}-{feed}.jsonl"
                    extra = ["--mode", mode, "--peerhost", "127.0.0.1", "--peerport", str(peer),
                             "--listenaddress", "127.0.0.1", "--listenport", str(hb),
                             "--sharedsecret", PAIR_SECRET]
                    if label == "master":
                        extra += ["--metricsport", str(metrics_port)]
                    procs.append(start(label, probe_cmd(
                        feed, out, f"cost-{label}{feed}", args.rules, args.batch_latency,
                        [*sync, *extra]),
                        feed, out, work))
            else:
                raise SystemExit(f"unknown run {run!r}: expected standard or pair")
            procs.append(start("rsyslog", [rsyslogd, "-n", "-f", str(conf), "-i",
                                           str(work / f"rs-{rs_port}.pid")], rs_port, rs_out, work))
            with running(procs):
                wait_bound(procs, work)
                if metrics_port:
                    wait_active(metrics_port)
                time.sleep(SETTLE)
                for rate in rates:
                    rows = measure(procs, pace, lines, rate, args.seconds)
                    results.append((run, rate, rows))
                    print(f"# {run} {rate:,.0f}/s: " + ", ".join(
                        f"{label} {us:.1f} µs" for label, us, _, _ in rows), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latency = "unset" if args.batch_latency is None else f"{args.batch_latency:g} ms"
    latency += f", SinkSync {args.sink_sync or 'unset'}"
    print(f"evenly paced single datagrams, {args.seconds:g} s per rate, BatchLatency {latency}")
    print(f"{'run':<10}{'rate/s':>8}  {'who':<10}{'µs CPU/event':>13}{'core %':>8}"
          f"{'written':>9}{'x rsyslog':>11}")
    for run, rate, rows in results:
        rs = next(us for label, us, _, _ in rows if label == "rsyslog")
        for label, us, share, written in rows:
            ratio = f"{us / rs:>11.2f}" if label != "rsyslog" and rs else ""
            print(f"{run:<10}{rate:>8,.0f}  {label:<10}{us:>13.1f}{100 * share:>8.1f}"
                  f"{written:>9,d}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
