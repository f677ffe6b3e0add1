"""Throughput of one probe against rsyslog on the same flood, in the same run.

One probe (UDP syslog feed, the shipped rules/syslog.rules, file sink) and rsyslog
(imudp -> omfile with a JSON template) each receive the same N datagrams from a C
sender (bench/udpflood.c, sendmmsg) at full speed and at a paced rate. Prints events/s
written, kernel drops, the receive queue (mean and peak of 5 ms samples while sending,
in skb bytes: ~830 a datagram here) and the ratio probepair/rsyslog. Loopback only,
bounded in count.

    .venv/bin/python bench/throughput.py [--events 300000] [--rate 100000] [--batch-latency MS]

``--batch-latency`` passes ``--batchlatency MS`` to the probe (left out: the default).

Needs gcc (for the sender) and rsyslog (apt-get install rsyslog) for the comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROGRAMS = ["sshd", "kernel", "cron", "nginx", "postfix/smtpd", "systemd", "sudo", "dhclient"]
MESSAGES = [
    "Failed password for invalid user admin from 203.0.113.{i} port 51234 ssh2",
    "Accepted publickey for deploy from 198.51.100.{i} port 40022 ssh2: RSA SHA256:abcdef",
    "eth0: link up, 1000Mbps, full-duplex, lpa 0x45E1 sequence {i}",
    "(root) CMD (run-parts /etc/cron.hourly) job {i}",
    "connect from unknown[192.0.2.{i}]: warning: hostname does not resolve",
    "Started Session {i} of user alice; unit session-{i}.scope entered active state",
    "upstream timed out (110: Connection timed out) while reading response header {i}",
    "DHCPACK of 10.1.2.{i} from 10.1.2.1 (xid=0x5c1f{i})",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_lines(path: Path, count: int = 4000) -> None:
    out = []
    for i in range(count):
        sev = i % 8
        prog = PROGRAMS[i % len(PROGRAMS)]
        msg = MESSAGES[(i // 3) % len(MESSAGES)].format(i=i % 250)
        out.append(f"<{(4 << 3) | sev}>Nov 22 04:{i % 60:02d}:{(i * 7) % 60:02d} "
                   f"host{i % 17} {prog}[{1000 + i}]: {msg}")
    path.write_text("\n".join(out) + "\n")


def udp_drops(port: int) -> int:
    """Kernel drops of the UDP socket bound to 127.0.0.1:port (from /proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want:
            return int(cols[12])
    return 0


def udp_queued(port: int) -> int:
    """Bytes queued (skb truesize) in the socket bound to 127.0.0.1:port now."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want:
            return int(cols[4].partition(":")[2], 16)
    return 0


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_port_bound(port: int, timeout: float = 15.0) -> None:
    want = f"0100007F:{port:04X}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if want in Path("/proc/net/udp").read_text():
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing bound 127.0.0.1:{port} within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, start_cmd: list[str], port: int, out: Path, flood: Path, lines: Path,
            events: int, rate: float, cwd: Path) -> dict[str, float]:
    proc = subprocess.Popen(start_cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_port_bound(port)
        time.sleep(0.3)
        drops0 = udp_drops(port)
        before = count_lines(out)
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        sender = subprocess.Popen([str(flood), str(port), str(events), str(lines), str(rate)],
                                  stdout=subprocess.PIPE, text=True)
        queued = []  # the socket's receive queue, sampled while the sender runs
        while sender.poll() is None:
            queued.append(udp_queued(port))
            time.sleep(0.005)
        stdout, _ = sender.communicate()
        if sender.returncode:
            raise SystemExit(f"{flood} failed: {sender.returncode}")
        sent_out = stdout.split()
        sent, send_time = int(sent_out[0]), float(sent_out[1])
        last, last_t = count_lines(out), time.monotonic()
        while time.monotonic() - last_t < 1.0:  # until the output stops growing for 1 s
            time.sleep(0.05)
            n = count_lines(out)
            if n != last:
                last, last_t = n, time.monotonic()
            if n - before >= sent:
                break
        written = last - before
        elapsed = last_t - t0
        drops = udp_drops(port) - drops0
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"sent": sent, "send_rate": sent / send_time, "written": written,
            "rate": written / elapsed if elapsed > 0 else 0.0, "drops": drops,
            "lost_pct": 100.0 * (sent - written) / sent,
            "cpu_us": 1e6 * cpu / written if written else 0.0,
            "queue_mean": sum(queued) / len(queued) if queued else 0.0,
            "queue_max": max(queued, default=0)}


def rsyslog_conf(work: Path, port: int, out: Path) -> Path:
    conf = work / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{work}")
module(load="imudp" threads="1")
input(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="32m")
template(name="json" type="list" option.jsonf="on") {{
  property(outname="Node" name="hostname" format="jsonf")
  property(outname="AlertGroup" name="programname" format="jsonf")
  property(outname="Severity" name="syslogseverity" format="jsonf")
  property(outname="Facility" name="syslogfacility-text" format="jsonf")
  property(outname="Summary" name="msg" format="jsonf")
  property(outname="Timestamp" name="timereported" format="jsonf")
}}
action(type="omfile" file="{out}" template="json")
""")
    return conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rate", type=float, default=100_000, help="paced run rate (events/s)")
    ap.add_argument("--no-rsyslog", action="store_true", help="measure the probe only")
    ap.add_argument("--batch-latency", type=float, default=None, metavar="MS",
                    help="the probe's BatchLatency (default: the probe's own)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probepair-bench-"))
    try:
        flood = work / "udpflood"
        subprocess.run(["gcc", "-O2", "-o", str(flood), str(HERE / "udpflood.c")], check=True)
        lines = work / "lines.txt"
        write_lines(lines)
        rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        results = []
        for label, rate in (("full speed", 0.0), (f"paced {args.rate:,.0f}/s", args.rate)):
            port = free_port()
            out = work / f"probe-{port}.jsonl"
            cmd = [sys.executable, "-m", "probepair", "run", "--feedport", str(port),
                   "--sinkfile", str(out), "--storeandforward", "false",
                   "--rulesfile", str(ROOT / "rules" / "syslog.rules"), "--name", "bench"]
            if args.batch_latency is not None:
                cmd += ["--batchlatency", f"{args.batch_latency:g}"]
            p = measure("probepair", cmd, port, out, flood, lines, args.events, rate, work)
            r = None
            if Path(rsyslogd).exists() and not args.no_rsyslog:
                port = free_port()
                out = work / f"rsyslog-{port}.jsonl"
                conf = rsyslog_conf(work, port, out)
                cmd = [rsyslogd, "-n", "-f", str(conf), "-i", str(work / f"rs-{port}.pid")]
                r = measure("rsyslog", cmd, port, out, flood, lines, args.events, rate, work)
            results.append((label, p, r))
        print(f"{'run':<18}{'who':<11}{'sent/s':>11}{'written/s':>11}{'written':>9}"
              f"{'drops':>8}{'lost %':>8}{'cpu µs/ev':>10}{'queue KiB mean/max':>20}")
        for label, p, r in results:
            for who, m in (("probepair", p), ("rsyslog", r)):
                if m is None:
                    print(f"{label:<18}{who:<11}  (rsyslogd not installed)")
                    continue
                print(f"{label:<18}{who:<11}{m['send_rate']:>11,.0f}{m['rate']:>11,.0f}"
                      f"{m['written']:>9,.0f}{m['drops']:>8,.0f}{m['lost_pct']:>8.1f}"
                      f"{m['cpu_us']:>10.2f}"
                      f"{m['queue_mean'] / 1024:>12,.0f} / {m['queue_max'] / 1024:>5,.0f}")
            if r is not None and r["rate"]:
                print(f"{label:<18}{'ratio':<11}{'':>11}{p['rate'] / r['rate']:>11.2f}"
                      "  (probepair / rsyslog, events written per second)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
